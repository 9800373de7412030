"""trainer.train's samples/s against the raw training step, measured in one run (issue 14).

    python -m benchmarks.trainer_speed --data demo_output/data --json benchmarks/results/trainer_speed.json

One run, one after the other on the same machine: the raw step (``benchmarks.train_step``'s
"trainer" variant: the very functions the loop calls, from the int16 waveform on), then
``trainer.train`` with ``make demo``'s flags (preset tiny, batch 8, 300-frame crops, one worker of 2
CPUs, ``--cache-data``), then the raw step again. The raw steps before and after bracket the
machine's drift (on a shared 2-core machine single steps spread by +-15 %); the trainer's figure is
the median ``samples_per_s`` of its epochs after the first (which fills the cache and warms oneDNN
up), compared with the mean of the two raw medians. ``data_wait_frac`` is the trainer's own.

While the trainer runs, every process's CPU time is sampled from /proc once a second; from the
sample before epoch 1 ends to the one after the last epoch ends, the report splits it into the
training worker's and everything else's (Ray's own processes, the driver, anything else on the
machine): on a 2-core laptop, what the others take is what the worker's two compute threads cannot
have.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

from benchmarks import train_step
from benchmarks.procs import cpu_by_process
from speech2face.dataset import Manifest

ROOT = Path(__file__).resolve().parents[1]


def raw_samples_per_s(preset: str, batch_size: int, frames: int, out_dim: int, steps: int, warmup: int) -> dict:
    """The raw step's median and best samples/s (l2norm loss, as trainer.train's default weights)."""
    device = torch.device("cpu")
    timing = train_step.time_variant(preset, batch_size, train_step.parse_variant("trainer", device), steps, warmup,
                                     device, frames=frames, out_dim=out_dim, loss="l2norm")  # fmt: skip
    return {"median": batch_size / timing["median_step_s"], "best": batch_size / timing["step_s"],
            "step_times_s": timing["step_times_s"]}  # fmt: skip


def cpu_split(samples: list[tuple[float, dict]], start: float, end: float) -> dict | None:
    """CPU seconds of the training worker and of every other process from the last sample before
    ``start`` to the first after ``end``; None when no sampled interval spans them."""
    first = max((sample for sample in samples if sample[0] <= start), default=None, key=lambda sample: sample[0])
    last = min((sample for sample in samples if sample[0] >= end), default=None, key=lambda sample: sample[0])
    if first is None or last is None or last[0] <= first[0]:
        return None
    worker = others = 0.0
    for pid, (command, cpu) in last[1].items():
        used = cpu - first[1].get(pid, (command, 0.0))[1]
        if "RayTrainWorker" in command:
            worker += used
        else:
            others += used
    seconds = last[0] - first[0]
    return {"seconds": round(seconds, 1), "worker_cpu_s": round(worker, 1), "others_cpu_s": round(others, 1),
            "others_share_of_machine": round(others / (seconds * os.cpu_count()), 3)}  # fmt: skip


def run_trainer(data: str, flags: list[str]) -> list[dict]:
    """``python -m trainer.train --data DATA FLAGS`` in a scratch storage; its metrics.csv rows."""
    with tempfile.TemporaryDirectory() as runs:
        command = [sys.executable, "-m", "trainer.train", "--data", data, "--storage", runs, "--name", "bench", *flags]
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=1800)
        if result.returncode != 0:
            raise RuntimeError(f"trainer.train failed:\n{result.stderr[-3000:]}")
        with open(Path(runs) / "bench" / "metrics.csv") as file:
            return [{key: float(value) for key, value in row.items() if value} for row in csv.DictReader(file)]


def trainer_epochs(data: str, preset: str, batch_size: int, frames: int, epochs: int) -> tuple[list[dict], dict]:
    """metrics.csv rows of a real trainer.train run with make demo's flags, and its CPU split."""
    flags = ["--epochs", str(epochs), "--lr", "1e-3", "--preset", preset, "--num-workers", "1", "--cpus-per-worker",
             "2", "--batch-size", str(batch_size), "--crop-frames", str(frames), "--amp", "auto", "--seed", "0",
             "--cache-data"]  # fmt: skip
    samples, done = [], threading.Event()

    def sample():  # once a second: the sampling's own CPU stays well under 1 % of a core
        while not done.wait(1.0):
            samples.append((time.time(), cpu_by_process()))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        rows = run_trainer(data, flags)
    finally:
        done.set()
        sampler.join()
    return rows, cpu_split(samples, rows[0]["finished_at"], rows[-1]["finished_at"])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="preprocessed data (e.g. make demo's demo_output/data)")
    parser.add_argument("--preset", default="tiny", choices=["tiny", "paper"])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--crop-frames", type=int, default=300)
    parser.add_argument("--epochs", type=int, default=8, help="trainer epochs (the first is left out)")
    parser.add_argument("--steps", type=int, default=30, help="timed raw steps, before and after")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)
    if args.epochs < 2:
        parser.error("--epochs must be >= 2: the first epoch fills the cache and is left out")
    out_dim = Manifest.read(args.data).embedder.dim
    shape = (args.preset, args.batch_size, args.crop_frames, out_dim)
    report = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "load_before": os.getloadavg(), "args": vars(args)}
    print(f"# load average {report['load_before']}; raw step before", flush=True)
    before = raw_samples_per_s(*shape, args.steps, warmup=3)
    print(f"# raw step median {before['median']:.1f} samples/s; trainer.train, {args.epochs} epochs", flush=True)
    epochs, cpu = trainer_epochs(args.data, args.preset, args.batch_size, args.crop_frames, args.epochs)
    print("# raw step after", flush=True)
    after = raw_samples_per_s(*shape, args.steps, warmup=3)
    later = epochs[1:]
    speeds = [row["samples_per_s"] for row in later]
    trainer = statistics.median(speeds)
    raw = (before["median"] + after["median"]) / 2
    report |= {"raw_before": before, "raw_after": after, "epochs": epochs, "load_after": os.getloadavg(),
               "trainer_samples_per_s": trainer, "raw_samples_per_s": raw, "trainer_vs_raw": trainer / raw,
               "data_wait_frac_max": max(row["data_wait_frac"] for row in later), "cpu_after_epoch_1": cpu}  # fmt: skip
    print(f"raw step median before {before['median']:.1f}, after {after['median']:.1f} samples/s (best "
          f"{before['best']:.1f}, {after['best']:.1f})\ntrainer.train epochs 2-{args.epochs}: median {trainer:.1f} "
          f"samples/s (min {min(speeds):.1f}, max {max(speeds):.1f}), data_wait_frac at most "
          f"{report['data_wait_frac_max']:.3f}\ntrainer / raw = {100 * trainer / raw:.0f} %; load average "
          f"{report['load_before']} before, {report['load_after']} after")  # fmt: skip
    if cpu:
        print(f"after epoch 1 ({cpu['seconds']} s): the training worker used {cpu['worker_cpu_s']} CPU-s, every "
              f"other process {cpu['others_cpu_s']} ({100 * cpu['others_share_of_machine']:.0f} % of the "
              f"machine's {os.cpu_count()} CPUs)")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
