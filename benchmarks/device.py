"""One command for a device's figures: what to run in the few minutes a GPU machine is lent.

    python -m benchmarks.device --out benchmarks/results/device-h200      # on a GPU: ~5 min
    python -m benchmarks.device --out /tmp/device-cpu --quick             # CPU smoke test (CI runs it)

Writes ``device.json`` and ``device.md`` (a table) in --out, with:
- the paper encoder's training step (benchmarks.train_step: batches 32/64/128, speech2face.perf's fast
  path with and without torch.compile) as samples/s and % of the measured bf16 matmul peak;
- ``speech2face.audio.spectrogram`` clips/s on the device;
- VGG-Face embedding images/s (deterministic random weights: the speed does not depend on them);
- an end-to-end ``trainer.train`` (2 epochs; the second is the steady state) on synthetic Parquet data
  in the clips/ schema, with its own ``samples_per_s`` and ``data_wait_frac``.
--quick uses the tiny preset and small sizes, so it finishes in a few minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from PIL import Image

from benchmarks import train_step
from benchmarks.trainer_speed import run_trainer
from speech2face import audio
from speech2face import dataset as ds

# Synthetic clips: no landmarks, no speaker or media columns, no download columns
SYNTHETIC_LAYOUT = ds.Layout(store_landmarks=False, store_source=False, store_download=False)


def best_rate(items: int, function, repeats: int, device: torch.device) -> float:
    """Items per second of the best of ``repeats`` calls (after one warm-up call)."""
    function()
    best = float("inf")
    for _ in range(repeats):
        train_step.synchronize(device)
        started = time.perf_counter()
        function()
        train_step.synchronize(device)
        best = min(best, time.perf_counter() - started)
    return items / best


def spectrogram_rate(device: torch.device, clips: int, repeats: int) -> float:
    waves = torch.randn(clips, audio.NUM_SAMPLES, device=device) * 0.1
    return best_rate(clips, lambda: audio.spectrogram(waves), repeats, device)


def vggface_rate(device: torch.device, images: int, repeats: int) -> float:
    from speech2face.embedders.vggface import VGGFaceEmbedder

    embedder = VGGFaceEmbedder(allow_random=True, device=device)
    crops = np.random.default_rng(0).integers(0, 256, (images, 224, 224, 3), dtype=np.uint8)
    return best_rate(images, lambda: embedder.embed(crops), repeats, device)


def write_synthetic_data(out: Path, clips: int, feature_dim: int, rows_per_file: int | None = None) -> None:
    """``clips`` random clips in the clips/ schema (train, plus a val tenth) and a manifest trainer.train reads."""
    rng = np.random.default_rng(0)
    waves = (rng.standard_normal((clips, audio.NUM_SAMPLES)) * 3000).astype(np.int16)
    jpeg = io.BytesIO()
    Image.fromarray(np.zeros((224, 224, 3), np.uint8)).save(jpeg, format="JPEG")
    splits = [ds.VAL if i % 10 == 0 else ds.TRAIN for i in range(clips)]
    features = rng.standard_normal((clips, feature_dim)).astype(np.float32)
    columns = {
        ds.CLIP_ID: [f"synth{i:06d}_0.000_6.000" for i in range(clips)],
        ds.YTID: [f"synth{i:06d}" for i in range(clips)],
        ds.START: [0.0] * clips,
        ds.END: [6.0] * clips,
        ds.X: [0.5] * clips,
        ds.Y: [0.5] * clips,
        ds.SPLIT: splits,
        ds.WAVEFORM: ds.tensor_array(waves),
        ds.FACE_JPEG: [jpeg.getvalue()] * clips,
        ds.FACE_BOX: [[0, 224, 224, 0]] * clips,
        ds.FRAME_TIME: [0.0] * clips,
        ds.FACE_FEATURE: ds.tensor_array(features),
        ds.EMBEDDER: ["synthetic"] * clips,
        ds.DURATION_S: [6.0] * clips,
        ds.CPU_S: [dict.fromkeys(ds.CPU_STAGES, 0.0)] * clips,
    }
    (out / "clips").mkdir(parents=True)
    table = pa.table(columns, schema=ds.clip_schema(feature_dim, SYNTHETIC_LAYOUT))
    step = rows_per_file or clips
    for index, start in enumerate(range(0, clips, step)):
        pq.write_table(table.slice(start, step), out / "clips" / f"synthetic-{index:04d}.parquet")
    embedder = ds.EmbedderRecord(name="synthetic", dim=feature_dim, weights_sha256="synthetic")
    per_split = {ds.TRAIN: splits.count(ds.TRAIN), ds.VAL: splits.count(ds.VAL)}
    ds.Manifest(embedder, SYNTHETIC_LAYOUT, ds.Counts(clips=clips, per_split=per_split)).write(str(out))


def trainer_epochs(work: Path, preset: str, clips: int, batch_size: int, use_gpu: bool) -> dict:
    """Two epochs of the real trainer.train CLI on synthetic data; its own throughput figures.

    The second epoch is the steady state; the first also pays for cuDNN's algorithm search, any
    torch.compile and filling Ray's object store (--cache-data).
    """
    data = work / "data"
    write_synthetic_data(data, clips, feature_dim=4096, rows_per_file=512)
    flags = [
        "--preset",
        preset,
        "--epochs",
        "2",
        "--batch-size",
        str(batch_size),
        "--cache-data",
        *(["--use-gpu"] if use_gpu else []),
    ]
    first, second = run_trainer(str(data), flags)
    return {
        "clips": clips,
        "batch_size": batch_size,
        "samples_per_s": second["samples_per_s"],
        "data_wait_frac": second["data_wait_frac"],
        "epoch_s": second["epoch_s"],
        "first_epoch": {key: first[key] for key in ("samples_per_s", "data_wait_frac", "epoch_s")},
    }


def markdown(report: dict) -> str:
    lines = [
        f"# Device benchmark: {report['machine']['device_name']}",
        "",
        f"`{report['command']}`, {report['machine']['date']}; matmul peak bf16 "
        f"{report['step']['peak_tflops']['bf16']:.1f} TFLOP/s, fp32 {report['step']['peak_tflops']['fp32']:.1f}.",
        "",
        "| what | batch | samples/s | % of peak |",
        "|---|---:|---:|---:|",
    ]
    for row in report["step"]["results"]:
        lines.append(
            f"| train step {report['step']['preset']} `{row['name']}` | {row['batch_size']} | "
            f"{row['samples_per_s']:.2f} | {row['percent_of_peak']:.1f} % |"
        )
    lines.append(
        f"| spectrogram | {report['spectrogram_rate']['clips']} | {report['spectrogram_rate']['clips_per_s']:.0f} | |"
    )
    lines.append(f"| VGG-Face embed | {report['vggface']['images']} | {report['vggface']['images_per_s']:.1f} | |")
    epoch = report["trainer"]
    for label, row in (("epoch 1", epoch["first_epoch"]), ("epoch 2", epoch)):
        lines.append(
            f"| `trainer.train` {label} ({epoch['clips']} clips) | {epoch['batch_size']} | "
            f"{row['samples_per_s']:.2f} | data wait {100 * row['data_wait_frac']:.1f} % |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="directory for device.json and device.md")
    parser.add_argument("--quick", action="store_true", help="tiny preset and small sizes (CPU smoke test)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    device, out = torch.device(args.device), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    quick = args.quick or device.type == "cpu"
    preset = "tiny" if quick else "paper"
    report = {"command": " ".join(["python -m benchmarks.device", *(argv if argv is not None else sys.argv[1:])])}

    def save() -> None:  # after each part: a machine lent for minutes may be taken back before the end
        report["machine"]["load_average_at_end"] = os.getloadavg()
        (out / "device.json").write_text(json.dumps(report, indent=2))

    with tempfile.TemporaryDirectory() as work:

        def step(batches: str, variants: str) -> None:
            step_json = Path(work) / "step.json"
            train_step.main(
                [
                    "--preset",
                    preset,
                    "--batch-sizes",
                    batches,
                    "--variants",
                    variants,
                    "--no-keras",
                    "--device",
                    str(device),
                    "--steps",
                    "1" if quick else "5",
                    "--warmup",
                    "1",
                    "--json",
                    str(step_json),
                ]
            )
            result = json.loads(step_json.read_text())
            if "step" in report:
                report["step"]["results"] += result["results"]
            else:
                report["step"], report["machine"] = result, result["machine"]
            save()

        step("2" if quick else "32,64,128", "fast")
        clips = 8 if quick else 256
        report["spectrogram_rate"] = {"clips": clips, "clips_per_s": spectrogram_rate(device, clips, 3)}
        images = 2 if quick else 128
        report["vggface"] = {"images": images, "images_per_s": vggface_rate(device, images, 2 if quick else 5)}
        save()
        print(
            f"# spectrogram {report['spectrogram_rate']['clips_per_s']:.0f} clips/s, VGG-Face "
            f"{report['vggface']['images_per_s']:.1f} images/s",
            flush=True,
        )
        report["trainer"] = trainer_epochs(
            Path(work),
            preset,
            clips=40 if quick else 4096,
            batch_size=4 if quick else 64,
            use_gpu=device.type == "cuda",
        )
        save()
        if not quick:  # last: compiling takes a minute or more per shape, so only at the middle batch size
            step("64", "fast+compile,trainer")
    (out / "device.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
