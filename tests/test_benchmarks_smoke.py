"""The training-step benchmark runs, and its FLOP count is the model's (no timing assertions)."""

import json
import os
import subprocess
import sys

from benchmarks.train_step import count_step_flops, main
from speech2face.models import PRESETS, feature_shapes
from tests.cli import ROOT


def analytic_step_flops(preset: str, batch_size: int, num_frames: int = 598) -> int:
    """2 FLOPs per multiply-add: forward once; backward twice (weight and input gradients), except that
    conv1 needs no input gradient; the frozen fc8 runs on target and prediction, with input gradient only."""
    spec = PRESETS[preset]
    total, in_channels, time, freq = 0, 2, num_frames, 257
    layers = zip(spec.convs, feature_shapes(preset, num_frames), strict=True)
    for index, (conv, (pooled_time, out_freq)) in enumerate(layers):
        out_time = (time - conv.kernel) // conv.stride + 1
        forward = 2 * batch_size * out_time * out_freq * conv.channels * in_channels * conv.kernel**2
        total += forward * (2 if index == 0 else 3)
        in_channels, time, freq = conv.channels, pooled_time, out_freq
    for fan_in, fan_out in ((in_channels * freq, spec.fc_hidden), (spec.fc_hidden, 4096), (4096, 2622)):
        total += 3 * 2 * batch_size * fan_in * fan_out
    return total


def test_flop_count_is_the_models():
    paper = count_step_flops("paper", 1, 598, 4096, "paper")
    assert paper == analytic_step_flops("paper", 1)
    assert 530e9 < paper < 540e9  # "about 535 GFLOP per sample" for one training step
    assert count_step_flops("tiny", 3, 598, 4096, "paper") == analytic_step_flops("tiny", 3)


def test_train_step_benchmark_runs(tmp_path, capsys):
    out = tmp_path / "bench.json"
    main(["--preset", "tiny", "--batch-sizes", "1", "--steps", "1", "--warmup", "0",
          "--variants", "fp32,fast,trainer", "--no-keras", "--json", str(out)])  # fmt: skip
    report = json.loads(out.read_text())
    assert [row["name"] for row in report["results"]] == ["fp32", "fast", "trainer"]
    for row in report["results"]:
        assert row["flops_per_step"] == analytic_step_flops("tiny", 1)
        assert row["step_s"] > 0 and row["samples_per_s"] > 0 and row["tflops"] > 0
    assert report["peak_tflops"]["fp32"] > 0 and report["peak_tflops"]["bf16"] > 0
    assert "fast" in capsys.readouterr().out


def test_the_demo_shaped_step_counts_its_own_flops(tmp_path):
    out = tmp_path / "bench.json"
    main(["--preset", "tiny", "--batch-sizes", "2", "--frames", "300", "--out-dim", "128", "--loss", "l2norm",
          "--steps", "1", "--warmup", "0", "--variants", "trainer", "--no-keras", "--json", str(out)])  # fmt: skip
    (row,) = json.loads(out.read_text())["results"]
    assert row["flops_per_step"] == count_step_flops("tiny", 2, 300, 128, "l2norm") < count_step_flops(
        "tiny", 2, 598, 4096, "paper")  # fmt: skip
    assert row["samples_per_s"] > 0


def test_the_one_command_device_benchmark_runs_on_cpu(tmp_path, ray_address):
    """benchmarks.device --quick: every section, including a real 2-epoch trainer.train, in its report."""
    # its trainer.train joins the session's Ray (RAY_ADDRESS) instead of starting one
    result = subprocess.run([sys.executable, "-m", "benchmarks.device", "--out", str(tmp_path), "--quick"],
                            cwd=ROOT, capture_output=True, text=True, timeout=900,
                            env=os.environ | {"RAY_ADDRESS": ray_address})  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "device.json").read_text())
    assert {row["name"] for row in report["step"]["results"]} == {"fast"}
    assert report["spectrogram"]["clips_per_s"] > 0 and report["vggface"]["images_per_s"] > 0
    for epoch in (report["trainer"], report["trainer"]["first_epoch"]):
        assert epoch["samples_per_s"] > 0 and 0 <= epoch["data_wait_frac"] < 1
    table = (tmp_path / "device.md").read_text()
    assert "| `trainer.train` epoch 2 (40 clips) |" in table and "| spectrogram |" in table


def test_the_decoder_step_benchmark_runs_the_trainers_step(tmp_path):
    from benchmarks import decoder_step

    out = tmp_path / "decoder.json"
    report = decoder_step.main(["--presets", "tiny", "--batch-sizes", "2", "--steps", "1", "--warmup", "0",
                                "--json", str(out)])  # fmt: skip
    assert [(row["preset"], row["flow_size"]) for row in report["results"]] == [("tiny", 32), ("tiny", None)]
    assert all(row["samples_per_s"] > 0 for row in report["results"])
    assert json.loads(out.read_text())["results"] == report["results"]


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
