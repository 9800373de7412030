"""One command for what a lent GPU machine must run in its few minutes: the device's figures, then the whole
system on it (benchmarks.device_system).

    python -m benchmarks.device --out $OUT/device --corpus .gpu/corpus --speech .gpu/speech.wav   # on a GPU
    python -m benchmarks.device --out /tmp/device-cpu --quick             # CPU smoke test (`make test` runs it)

docs/gpu.md says how to carry what a bare GPU image lacks. Prints one line per part (ok, failed with the
error's last line, or skipped with why, and its seconds) and rewrites ``device.json`` after each, so a
lease that ends mid-run still leaves figures; ``device.md`` (tables) at the end. The system runs first, then
the figures:
- the paper encoder's training step (benchmarks.train_step: batches 32 and 64, speech2face.perf's fast
  path with and without torch.compile) as samples/s and % of the measured bf16 matmul peak;
- ``speech2face.audio.spectrogram`` clips/s on the device;
- VGG-Face embedding images/s (deterministic random weights: the speed does not depend on them);
- an end-to-end ``trainer.train`` (2 epochs; the second is the steady state) on synthetic Parquet data
  in the clips/ schema, with its own ``samples_per_s`` and ``data_wait_frac``.
The system: `make demo`'s job with every GPU switch on (VGG-Face features with random weights, GPU feature
actors, --use-gpu training, sweep and decoder, GPU batch inference), a Serve replica on the GPU answering
a real-speech request, and ``pytest -m cuda``. --quick: the tiny preset, small sizes and 1-epoch runs.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from PIL import Image

from benchmarks import device_system, train_step
from benchmarks.device_system import PartSkipped
from benchmarks.trainer_speed import run_trainer
from demo.run import LOCAL_RAY_CPUS
from demo.steps import start_demo_ray
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
    machine = report.get("machine", {})
    lines = [f"# Device benchmark: {machine.get('device_name', report['device'])}", "",
             f"`{report['command']}`, {machine.get('date', '')}.", ""]  # fmt: skip
    if "step" in report:
        peak = report["step"]["peak_tflops"]
        lines += [f"Matmul peak bf16 {peak['bf16']:.1f} TFLOP/s, fp32 {peak['fp32']:.1f}.", "",
                  "| what | batch | samples/s | % of peak |", "|---|---:|---:|---:|"]  # fmt: skip
        for row in report["step"]["results"]:
            lines.append(f"| train step {report['step']['preset']} `{row['name']}` | {row['batch_size']} | "
                         f"{row['samples_per_s']:.2f} | {row['percent_of_peak']:.1f} % |")  # fmt: skip
    if "spectrogram_rate" in report:
        rate = report["spectrogram_rate"]
        lines.append(f"| spectrogram | {rate['clips']} | {rate['clips_per_s']:.0f} | |")
    if "vggface" in report:
        lines.append(f"| VGG-Face embed | {report['vggface']['images']} | {report['vggface']['images_per_s']:.1f} | |")
    if "trainer" in report:
        epoch = report["trainer"]
        for label, row in (("epoch 1", epoch["first_epoch"]), ("epoch 2", epoch)):
            lines.append(f"| `trainer.train` {label} ({epoch['clips']} clips) | {epoch['batch_size']} | "
                         f"{row['samples_per_s']:.2f} | data wait {100 * row['data_wait_frac']:.1f} % |")  # fmt: skip
    lines += ["", "| part | status | seconds | figures or error |", "|---|---|---:|---|"]
    for name, part in report["parts"].items():
        lines.append(f"| {name} | {part['status']} | {part['seconds']:.1f} | {_detail(part)} |")
    return "\n".join(lines) + "\n"


def _detail(part: dict) -> str:
    if part["status"] != "ok":
        return part["why"]
    return ", ".join(f"{key} {value}" for key, value in part.items() if key not in ("status", "seconds"))


@dataclass
class Part:
    name: str
    action: Callable[[], dict | None]  # returns the part's figures
    needs: tuple[str, ...] = ()  # parts that must have succeeded first


def run_parts(parts: list[Part], report: dict, save: Callable[[], None]) -> bool:
    """Runs every part, whatever failed before (except what it needs), saving the report after each; True if
    none failed."""
    status = {}
    for part in parts:
        started, missing = time.monotonic(), [name for name in part.needs if status.get(name) != "ok"]
        if missing:
            entry = {"status": "skipped", "why": f"needs {', '.join(missing)}"}
        else:
            try:
                entry = {"status": "ok", **(part.action() or {})}
            except PartSkipped as skipped:
                entry = {"status": "skipped", "why": str(skipped)}
            except Exception as error:  # noqa: BLE001 - a part's failure is reported; the next parts still run
                traceback.print_exc()
                entry = {"status": "failed", "why": f"{type(error).__name__}: {error}".strip().splitlines()[-1]}
        entry["seconds"] = round(time.monotonic() - started, 1)
        report["parts"][part.name], status[part.name] = entry, entry["status"]
        save()
        print(f"[device] {part.name}: {entry['status']}, {entry['seconds']:.1f} s"
              + (f" ({detail})" if (detail := _detail(entry)) else ""), flush=True)  # fmt: skip
    return "failed" not in status.values()


def figure_parts(report: dict, work: Path, device: torch.device, quick: bool) -> list[Part]:
    preset = "tiny" if quick else "paper"

    def step(batches: str, variants: str) -> dict:
        step_json = work / "step.json"
        train_step.main(["--preset", preset, "--batch-sizes", batches, "--variants", variants, "--no-keras",
                         "--device", str(device), "--steps", "1" if quick else "5", "--warmup", "1",
                         "--json", str(step_json)])  # fmt: skip
        result = json.loads(step_json.read_text())
        if "step" in report:
            report["step"]["results"] += result["results"]
        else:
            report["step"], report["machine"] = result, result["machine"] | report["machine"]
        return {f"{row['name']} b{row['batch_size']} samples/s": round(row["samples_per_s"], 2)
                for row in result["results"]}  # fmt: skip

    def spectrogram() -> dict:
        clips = 8 if quick else 256
        report["spectrogram_rate"] = {"clips": clips, "clips_per_s": spectrogram_rate(device, clips, 3)}
        return {"clips_per_s": round(report["spectrogram_rate"]["clips_per_s"])}

    def vggface() -> dict:
        images = 2 if quick else 128
        report["vggface"] = {"images": images, "images_per_s": vggface_rate(device, images, 2 if quick else 5)}
        return {"images_per_s": round(report["vggface"]["images_per_s"], 1)}

    def trainer() -> dict:
        report["trainer"] = trainer_epochs(work, preset, clips=16 if quick else 4096, batch_size=4 if quick else 64,
                                           use_gpu=device.type == "cuda")  # fmt: skip
        return {
            "samples_per_s": report["trainer"]["samples_per_s"],
            "data_wait_frac": report["trainer"]["data_wait_frac"],
        }

    # batch 128 was measured once (2026-12-04): 64 beats it per sample
    parts = [Part("train step", lambda: step("2" if quick else "32,64", "fast")), Part("spectrogram", spectrogram),
             Part("vggface", vggface), Part("trainer epochs", trainer)]  # fmt: skip
    if not quick:  # last: compiling takes a minute or more per shape, so only at the middle batch size
        parts.append(Part("train step compiled", lambda: step("64", "fast+compile,trainer")))
    return parts


def system_parts(out: Path, corpus: Path | None, speech: Path, quick: bool, use_gpu: bool) -> list[Part]:
    job = device_system.demo_job(out, corpus, quick, use_gpu)
    steps = device_system.job_parts(job)
    needs = {"preprocess": ("corpus",), "train": ("preprocess",), "sweep": ("preprocess",), "evaluate": ("train",),
             "train decoder": ("preprocess",), "draw faces": ("train", "train decoder")}  # fmt: skip
    parts = [Part(name, action, needs.get(name, ())) for name, action in steps]
    logs = job.logs
    parts.append(Part("serve", lambda: device_system.serve_request(job, speech, use_gpu, logs / "serve.log"),
                      ("train", "train decoder")))  # fmt: skip
    parts.append(Part("cuda tests", lambda: device_system.cuda_tests(logs / "cuda_tests.log")))
    return parts


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="directory for device.json, device.md and the system's outputs")
    parser.add_argument(
        "--quick", action="store_true", help="tiny preset, small sizes, 1-epoch runs (the CPU smoke test)"
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--parts", default="figures,system", help="figures, system, or both (default)")
    parser.add_argument("--corpus", type=Path, help="a demo corpus made elsewhere (python -m demo_corpus): "
                        "used instead of generating one, which needs espeak-ng")  # fmt: skip
    parser.add_argument("--speech", type=Path, default=device_system.SPEECH, help="a wav of real speech for Serve")
    args = parser.parse_args(argv)
    device, out = torch.device(args.device), Path(args.out).resolve()
    wanted = set(args.parts.split(","))
    if not wanted or wanted - {"figures", "system"}:
        parser.error(f"--parts takes figures, system or both, comma-separated; got {args.parts!r}")
    out.mkdir(parents=True, exist_ok=True)
    quick = args.quick or device.type == "cpu"
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "CPU"
    report = {"command": " ".join(["python -m benchmarks.device", *(argv if argv is not None else sys.argv[1:])]),
              "device": str(device), "parts": {},
              "machine": {"device_name": name, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                          "load_average_at_start": os.getloadavg()}}  # fmt: skip

    def save() -> None:  # after each part: a machine lent for minutes may be taken back before the end
        report["machine"]["load_average_at_end"] = os.getloadavg()
        (out / "device.json").write_text(json.dumps(report, indent=2))

    if "RAY_ADDRESS" not in os.environ:  # one Ray for every part's jobs (make test's smoke test joins its own)
        os.environ["RAY_ADDRESS"] = start_demo_ray(LOCAL_RAY_CPUS)  # the demo's: on 2 cores a trial needs more
    with tempfile.TemporaryDirectory() as work:
        # the system first: its GPU paths had never run on a GPU, the figures were taken before (RESULTS.md)
        parts = []
        if "system" in wanted:
            parts += system_parts(out / "system", args.corpus, args.speech, quick, use_gpu=device.type == "cuda")
        if "figures" in wanted:
            parts += figure_parts(report, Path(work), device, quick)
        ok = run_parts(parts, report, save)
    (out / "device.md").write_text(markdown(report))
    print(markdown(report))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
