"""The training-step benchmark runs, and its FLOP count is the model's (no timing assertions)."""

import json
import os
import subprocess
import sys

import yaml

from speech2face.dataset import RANDOM_WEIGHTS, Manifest
from tests.support.cli import ROOT, read_metrics


def test_the_one_command_device_run_works_on_cpu(background_device_run, small_corpus):
    """benchmarks.device --quick, as make test's smoke test of the GPU machine's command: the figures, then the
    demo's job with VGG-Face features (random weights) on the session's small corpus, Serve, the CUDA tests.
    It runs in the background on a Ray of its own (tests/conftest.py)."""
    result, _ = background_device_run.result()
    out = background_device_run.out
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads((out / "device.json").read_text())
    parts = report["parts"]
    for name, part in parts.items():  # one line each, in order
        assert f"[device] {name}: {part['status']}, {part['seconds']:.1f} s" in result.stdout
    assert {name for name, part in parts.items() if part["status"] != "ok"} == {"cuda tests"}
    assert parts["cuda tests"]["status"] == "skipped" and "needs a CUDA GPU" in parts["cuda tests"]["why"]
    assert {row["name"] for row in report["step"]["results"]} == {"fast"}
    assert report["spectrogram_rate"]["clips_per_s"] > 0 and report["vggface"]["images_per_s"] > 0
    for epoch in (report["trainer"], report["trainer"]["first_epoch"]):
        assert epoch["samples_per_s"] > 0 and 0 <= epoch["data_wait_frac"] < 1

    system = out / "system"
    manifest = Manifest.read(str(system / "data"))
    csvs = [small_corpus.directory / name for name in ("avspeech_train.csv", "avspeech_test.csv")]
    rows = sum(len(path.read_text().splitlines()) for path in csvs)
    assert parts["preprocess"]["clips"] == manifest.counts.clips == rows and parts["preprocess"]["clips_per_s"] > 0
    assert (manifest.embedder.name, manifest.embedder.dim, manifest.embedder.weights_sha256) == (
        "vggface",
        4096,
        RANDOM_WEIGHTS,
    )
    assert "train_distill" in read_metrics(system / "runs" / "demo")[0]  # the 4096-D path has fc8: distillation ran
    assert parts["train"]["samples_per_s"] > 0 and parts["sweep"]["trials"] == 1
    assert 0 <= parts["evaluate"]["recall_at_10"] <= 1 and parts["draw faces"]["queries"] > 0
    serve = parts["serve"]  # `serve run` of the repository's serve_config.yaml, with the job's run and data
    assert serve["feature_dim"] == 4096 and serve["request_ms"] > 0 and serve["gpu_replica"] is False
    assert serve["gallery"] == str(system / "data")
    deployed = yaml.safe_load((system / "logs" / "serve_config.yaml").read_text())
    repository = yaml.safe_load((ROOT / "serve_config.yaml").read_text())
    assert deployed["applications"][0]["import_path"] == repository["applications"][0]["import_path"]
    table = (out / "device.md").read_text()
    assert "| `trainer.train` epoch 2 (16 clips) |" in table and "| serve | ok |" in table


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
