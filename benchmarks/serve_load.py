"""Latency of the Serve API under concurrent clients: p50/p95 of POST /api/predict with a real speech file.

    python -m benchmarks.serve_load --url http://127.0.0.1:8000 --audio FILE --requests 64 --clients 1,8,32
    python -m benchmarks.serve_load ... --encoder RUN/model.safetensors    # first, the encoder alone by batch size

Start the service first (python -m serving.app ...). Bounded: exactly --requests requests at each level of
clients, each with a timeout. Also the mean batch size per encoder call, from each response's
``batch_size`` (how many requests shared its call). Writes the figures as JSON when --out is given.
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import requests


def predict(url: str, audio: Path, timeout_s: float = 120) -> tuple[requests.Response, float]:
    """One multipart upload to /api/predict: the response and its seconds."""
    started = time.perf_counter()
    with open(audio, "rb") as file:
        response = requests.post(f"{url}/api/predict", files={"file": (audio.name, file)}, timeout=timeout_s)
    return response, time.perf_counter() - started


def post_file(url: str, audio: Path, timeout_s: float = 120) -> tuple[int, float, int | None]:
    """(HTTP status, seconds, the batch the service encoded it in: None where it does not say) of one upload."""
    response, seconds = predict(url, audio, timeout_s)
    batch = response.json().get("batch_size") if response.status_code == 200 else None
    return response.status_code, seconds, batch


def run_load(url: str, audio: Path, requests_total: int, clients: int) -> dict:
    with ThreadPoolExecutor(clients) as pool:
        started = time.perf_counter()
        results = list(pool.map(lambda _: post_file(url, audio), range(requests_total)))
        wall = time.perf_counter() - started
    seconds = np.array([s for _, s, _ in results])
    batches = [b for _, _, b in results if b is not None]
    return {"requests": requests_total, "clients": clients, "statuses": [code for code, _, _ in results],
            "p50_ms": 1000 * float(np.percentile(seconds, 50)), "p95_ms": 1000 * float(np.percentile(seconds, 95)),
            "max_ms": 1000 * float(seconds.max()), "requests_per_s": requests_total / wall,
            # per encoder call: requests / calls, each request counting 1/b of the call of b it shared
            "mean_batch_size": len(batches) / sum(1 / b for b in batches) if batches else None,
            "max_batch_size": max(batches, default=None)}  # fmt: skip


def serve_batches(metrics_url: str) -> float:
    """Batches Ray Serve's own @serve.batch has run (its serve_batches_processed counter, every replica)."""
    text = requests.get(metrics_url, timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("ray_serve_batches_processed_total{"))  # fmt: skip


def encoder_seconds(model_path: str, audio: Path, batch_sizes: list[int], repeats: int = 5) -> dict:
    """Seconds per encoder call at each batch size, through the service's own code (inference.predict_features),
    here in this process: what a batch saves per clip on this device."""
    from speech2face import inference
    from speech2face.audio import load_audio

    model = inference.read_model(model_path)[0]
    wave = load_audio(str(audio))
    result = {}
    for size in batch_sizes:
        batch = np.stack([wave] * size)
        inference.predict_features(model, batch)  # warm-up
        started = time.perf_counter()
        for _ in range(repeats):
            inference.predict_features(model, batch)
        result[size] = (time.perf_counter() - started) / repeats
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.serve_load", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--url", default="http://127.0.0.1:8000", help="where serving.app listens")
    p.add_argument("--audio", type=Path, required=True, help="speech file every request uploads")
    p.add_argument("--requests", type=int, default=32, help="requests at each level of clients")
    p.add_argument("--clients", default="8", help="concurrent clients, or levels of them run in turn: 1,8,32")
    p.add_argument("--warmup", type=int, default=2, help="requests sent first and not counted")
    p.add_argument("--out", type=Path, help="write the figures as JSON here")
    p.add_argument(
        "--ray-metrics",
        help="Ray's metrics endpoint of the service's node (http://IP:PORT/metrics): "
        "also count the batches from Serve's own counter, for a service that does not say its batch",
    )
    p.add_argument("--settle-s", type=float, default=25, help="wait this long for Ray to export its counters")
    p.add_argument("--encoder", help="a model.safetensors: first time the encoder alone at batches of 1, 8, 32")
    args = p.parse_args(argv)
    encoder = None
    if args.encoder:
        encoder = encoder_seconds(args.encoder, args.audio, [1, 8, 32])
        for size, seconds in encoder.items():
            print(f"encoder alone, batch {size}: {1000 * seconds:.0f} ms a call, {1000 * seconds / size:.1f} ms a clip")
    for _ in range(args.warmup):
        post_file(args.url, args.audio)
    if args.ray_metrics:
        time.sleep(args.settle_s)  # the warm-up's batches are exported before the first count
    results, failed = [], False
    for clients in (int(level) for level in args.clients.split(",")):
        before = serve_batches(args.ray_metrics) if args.ray_metrics else None
        result = run_load(args.url, args.audio, args.requests, clients)
        if args.ray_metrics:
            time.sleep(args.settle_s)  # Ray exports every 10 s by default
            result["serve_batches"] = serve_batches(args.ray_metrics) - before
            result["mean_batch_size_by_serve"] = args.requests / result["serve_batches"]
        ok = sum(code == 200 for code in result["statuses"])
        batch = "" if result["mean_batch_size"] is None else (
            f", mean batch {result['mean_batch_size']:.2f} (max {result['max_batch_size']})")  # fmt: skip
        figures = (
            f"p50 {result['p50_ms']:.0f} ms, p95 {result['p95_ms']:.0f} ms, {result['requests_per_s']:.2f} requests/s"
        )
        if args.ray_metrics:
            by_serve = result["mean_batch_size_by_serve"]
            batch += f"; Serve's counter: {result['serve_batches']:.0f} batches, mean {by_serve:.2f}"
        print(f"{ok}/{args.requests} OK from {clients} clients: {figures}{batch}", flush=True)
        results.append(result)
        failed |= ok != args.requests
    if args.out:
        figures = {"loads": results, "encoder_seconds_per_call": encoder}
        args.out.write_text(json.dumps(figures, indent=2) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
