"""Preprocessing at AVSpeech scale (issue 12): the --dry-run planner on synthetic AVSpeech CSVs.

    python -m benchmarks.scale --rows 10000 100000 1000000 2600000 --out benchmarks/results/scale_dry_run.json

Each size: a synthetic CSV (valid 11-character ytids, 4 segments a video, AVSpeech's 3-10 s
segments), then `python -m pipelines.preprocess --dry-run` in a subprocess, as a user runs it: its
wall seconds and peak RSS (os.wait4). Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ALPHABET = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"))


def synthetic_csv(path: Path, rows: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    videos = -(-rows // 4)
    ytids = np.array(["".join(chars) for chars in ALPHABET[rng.integers(0, 64, (videos, 11))]])
    video = np.repeat(np.arange(videos), 4)[:rows]
    start = np.round(rng.uniform(0, 300, rows), 6)
    end = np.round(start + rng.uniform(3, 10, rows), 6)
    x, y = np.round(rng.uniform(0.2, 0.8, (2, rows)), 6)
    with open(path, "w") as file:
        for i in range(rows):
            file.write(f"{ytids[video[i]]},{start[i]},{end[i]},{x[i]},{y[i]}\n")


def measure_dry_run(csv: Path, out: Path) -> dict:
    command = [sys.executable, "-m", "pipelines.preprocess", "--csv", str(csv), "--out", str(out),
               "--face-embedder", "dlib", "--dry-run"]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    output = process.stdout.read().decode()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"dry run failed:\n{output[-3000:]}")
    return {"seconds": round(seconds, 2), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
            "last_line": output.strip().splitlines()[-1]}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.scale", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000, 1_000_000, 2_600_000])
    p.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = p.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        for rows in args.rows:
            csv = Path(scratch) / f"avspeech_{rows}.csv"
            synthetic_csv(csv, rows)
            result = {"rows": rows, **measure_dry_run(csv, Path(scratch) / "out")}
            print(f"{rows:>9} rows: {result['seconds']:7.1f} s, peak RSS {result['peak_rss_mb']:7.0f} MB", flush=True)
            results.append(result)
            csv.unlink()
    if args.out:
        args.out.write_text(json.dumps({"uptime": os.getloadavg(), "dry_run": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
