"""The training-step benchmark runs, and its FLOP count is the model's (no timing assertions)."""

import json
import os
import subprocess
import sys

from tests.support.cli import ROOT


def test_the_one_command_device_benchmark_runs_on_cpu(tmp_path, ray_address):
    """benchmarks.device --quick: every section, including a real 2-epoch trainer.train, in its report."""
    # its trainer.train joins the session's Ray (RAY_ADDRESS) instead of starting one
    result = subprocess.run([sys.executable, "-m", "benchmarks.device", "--out", str(tmp_path), "--quick"],
                            cwd=ROOT, capture_output=True, text=True, timeout=900,
                            env=os.environ | {"RAY_ADDRESS": ray_address})  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "device.json").read_text())
    assert {row["name"] for row in report["step"]["results"]} == {"fast"}
    assert report["spectrogram_rate"]["clips_per_s"] > 0 and report["vggface"]["images_per_s"] > 0
    for epoch in (report["trainer"], report["trainer"]["first_epoch"]):
        assert epoch["samples_per_s"] > 0 and 0 <= epoch["data_wait_frac"] < 1
    table = (tmp_path / "device.md").read_text()
    assert "| `trainer.train` epoch 2 (40 clips) |" in table and "| spectrogram |" in table


def test_the_trainer_speed_benchmark_brackets_a_real_run_with_raw_steps(small_dataset, ray_address, tmp_path):
    """benchmarks.trainer_speed: raw steps, a real 2-epoch trainer.train, raw steps; figures from its metrics.csv."""
    out = tmp_path / "speed.json"
    result = subprocess.run([sys.executable, "-m", "benchmarks.trainer_speed", "--data", str(small_dataset),
                             "--epochs", "2", "--steps", "2", "--batch-size", "4", "--json", str(out)],
                            cwd=ROOT, capture_output=True, text=True, timeout=900,
                            env=os.environ | {"RAY_ADDRESS": ray_address})  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert [row["epoch"] for row in report["epochs"]] == [1, 2]
    assert report["trainer_samples_per_s"] == report["epochs"][1]["samples_per_s"] > 0
    assert report["raw_before"]["median"] > 0 and report["raw_after"]["median"] > 0
    assert 0 < report["trainer_vs_raw"] and "trainer / raw =" in result.stdout
    cpu = report["cpu_after_epoch_1"]  # the training worker was found among the processes and did the work
    assert cpu["worker_cpu_s"] > 0 and cpu["others_cpu_s"] >= 0 and 0 < cpu["seconds"]
