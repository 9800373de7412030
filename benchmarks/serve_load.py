"""Latency of the Serve API under concurrent clients: p50/p95 of POST /api/predict with a real speech file.

    python -m benchmarks.serve_load --url http://127.0.0.1:8000 --audio FILE --requests 32 --clients 8

Start the service first (python -m serving.app ...). Bounded: exactly --requests requests, each with a
timeout. Writes a JSON with every latency when --out is given.
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import requests


def post_file(url: str, audio: Path, timeout_s: float = 120) -> tuple[int, float]:
    """(HTTP status, seconds) of one multipart upload to /api/predict."""
    started = time.perf_counter()
    with open(audio, "rb") as file:
        response = requests.post(f"{url}/api/predict", files={"file": (audio.name, file)}, timeout=timeout_s)
    return response.status_code, time.perf_counter() - started


def run_load(url: str, audio: Path, requests_total: int, clients: int) -> dict:
    with ThreadPoolExecutor(clients) as pool:
        started = time.perf_counter()
        results = list(pool.map(lambda _: post_file(url, audio), range(requests_total)))
        wall = time.perf_counter() - started
    seconds = np.array([s for _, s in results])
    return {"requests": requests_total, "clients": clients, "statuses": [code for code, _ in results],
            "p50_ms": 1000 * float(np.percentile(seconds, 50)), "p95_ms": 1000 * float(np.percentile(seconds, 95)),
            "max_ms": 1000 * float(seconds.max()), "requests_per_s": requests_total / wall}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.serve_load", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--url", default="http://127.0.0.1:8000", help="where serving.app listens")
    p.add_argument("--audio", type=Path, required=True, help="speech file every request uploads")
    p.add_argument("--requests", type=int, default=32)
    p.add_argument("--clients", type=int, default=8, help="concurrent clients")
    p.add_argument("--warmup", type=int, default=2, help="requests sent first and not counted")
    p.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = p.parse_args(argv)
    for _ in range(args.warmup):
        post_file(args.url, args.audio)
    result = run_load(args.url, args.audio, args.requests, args.clients)
    ok = sum(code == 200 for code in result["statuses"])
    print(f"{ok}/{args.requests} OK from {args.clients} clients: p50 {result['p50_ms']:.0f} ms, "
          f"p95 {result['p95_ms']:.0f} ms, {result['requests_per_s']:.2f} requests/s")  # fmt: skip
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if ok == args.requests else 1


if __name__ == "__main__":
    raise SystemExit(main())
