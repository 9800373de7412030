"""The step benchmarks run, and their FLOP counts are the model's (no timing assertions)."""

import json

from benchmarks.train_step import count_step_flops, main
from speech2face.models import PRESETS, feature_shapes


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
    main(
        [
            "--preset",
            "tiny",
            "--batch-sizes",
            "1",
            "--steps",
            "1",
            "--warmup",
            "0",
            "--variants",
            "fp32,fast,trainer",
            "--no-keras",
            "--json",
            str(out),
        ]
    )
    report = json.loads(out.read_text())
    assert [row["name"] for row in report["results"]] == ["fp32", "fast", "trainer"]
    for row in report["results"]:
        assert row["flops_per_step"] == analytic_step_flops("tiny", 1)
        assert row["step_s"] > 0 and row["samples_per_s"] > 0 and row["tflops"] > 0
    assert report["peak_tflops"]["fp32"] > 0 and report["peak_tflops"]["bf16"] > 0
    assert "fast" in capsys.readouterr().out


def test_the_demo_shaped_step_counts_its_own_flops(tmp_path):
    out = tmp_path / "bench.json"
    main(
        [
            "--preset",
            "tiny",
            "--batch-sizes",
            "2",
            "--frames",
            "300",
            "--out-dim",
            "128",
            "--loss",
            "l2norm",
            "--steps",
            "1",
            "--warmup",
            "0",
            "--variants",
            "trainer",
            "--no-keras",
            "--json",
            str(out),
        ]
    )
    (row,) = json.loads(out.read_text())["results"]
    assert (
        row["flops_per_step"]
        == count_step_flops("tiny", 2, 300, 128, "l2norm")
        < count_step_flops("tiny", 2, 598, 4096, "paper")
    )
    assert row["samples_per_s"] > 0


def test_the_decoder_step_benchmark_runs_the_trainers_step(tmp_path):
    from benchmarks import decoder_step

    out = tmp_path / "decoder.json"
    report = decoder_step.main(
        ["--presets", "tiny", "--batch-sizes", "2", "--steps", "1", "--warmup", "0", "--json", str(out)]
    )
    assert [(row["preset"], row["flow_size"]) for row in report["results"]] == [("tiny", 32), ("tiny", None)]
    assert all(row["samples_per_s"] > 0 for row in report["results"])
    assert json.loads(out.read_text())["results"] == report["results"]
