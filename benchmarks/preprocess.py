"""Per-stage cost of preprocessing on the demo corpus (loopback HTTP), and VGG-Face throughput.

Runs the real pipeline (yt-dlp, ffmpeg, dlib, the feature stage) into a fresh directory and prints:
CPU-seconds per clip per stage (measured inside each stage, ffmpeg subprocesses included), clips/s
end to end, the feature stage's busy share of the wall time, and VGG-Face images/s with achieved
TFLOP/s and % of the device's measured matmul peak (FLOPs counted from the model).

    python -m benchmarks.preprocess --speakers 40 --json /tmp/preprocess.json
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.train_step import machine_info, measure_peak_tflops, synchronize
from demo_corpus.corpus import CorpusConfig, generate_corpus
from demo_corpus.server import serve_directory, url_template
from pipelines import preprocess
from speech2face.dataset import RANDOM_WEIGHTS
from speech2face.embedders.vggface import VGGFaceEmbedder


def pipeline_costs(corpus_dir: str, embedder: str, out_dir: str) -> dict:
    with serve_directory(corpus_dir) as (_, base_url):
        started = time.perf_counter()
        summary = preprocess.run(preprocess.PreprocessConfig(
            csv=os.path.join(corpus_dir, "avspeech_train.csv"), out=out_dir, url_template=url_template(base_url),
            face_embedder=embedder, vggface_weights=RANDOM_WEIGHTS if embedder == "vggface" else None,
            cpus_per_actor=0.5))  # fmt: skip
        wall = time.perf_counter() - started
    cpu = summary.cpu_s_per_clip
    clips = summary.counts.clips
    return {
        "clips": clips,
        "failures": summary.counts.failures,
        "wall_s": round(wall, 1),
        "clips_per_s": round(clips / wall, 3),
        "cpu_s_per_clip": {stage: round(seconds, 3) for stage, seconds in cpu.items()},
        "cpu_s_per_clip_total": round(sum(cpu.values()), 3),
        # CPU seconds the feature stage spent, over the wall time: how busy it was kept (on CPU).
        "feature_stage_busy_share": round(cpu["feature"] * clips / wall, 3),
    }


def vggface_throughput(device: torch.device, batch_size: int, batches: int) -> dict:
    embedder = VGGFaceEmbedder(allow_random=True, device=device, batch_size=batch_size)
    crops = np.random.default_rng(0).integers(0, 256, (batch_size, 224, 224, 3), dtype=np.uint8)
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        embedder.model(embedder.model.preprocess(crops[:1], device=device))
    flops_per_image = counter.get_total_flops()
    embedder.embed(crops)  # warm-up
    synchronize(device)
    started = time.perf_counter()
    for _ in range(batches):
        embedder.embed(crops)
    synchronize(device)
    images_per_s = batch_size * batches / (time.perf_counter() - started)
    peak = measure_peak_tflops(device, torch.float32)
    achieved = images_per_s * flops_per_image / 1e12
    return {"device": str(device), "batch_size": batch_size, "gflop_per_image": round(flops_per_image / 1e9, 1),
            "images_per_s": round(images_per_s, 2), "tflops": round(achieved, 3),
            "fp32_peak_tflops": round(peak, 3), "percent_of_fp32_peak": round(100 * achieved / peak, 1)}  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", help="demo corpus directory (generated there if missing)")
    parser.add_argument("--speakers", type=int, default=40, help="speakers when generating the corpus")
    parser.add_argument(
        "--embedder",
        choices=["vggface", "dlib"],
        default="vggface",
        help="face embedder of the feature stage (vggface uses random stand-in weights)",
    )
    parser.add_argument("--vgg-batch-size", type=int, default=8)
    parser.add_argument("--vgg-batches", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="s2f-bench-") as work:
        corpus_dir = args.corpus or os.path.join(work, "corpus")
        config = CorpusConfig(speakers=args.speakers, test_speakers=max(1, args.speakers // 4))
        generate_corpus(corpus_dir, config, log=lambda message: None)
        results = {
            "machine": machine_info(torch.device(args.device)),
            "pipeline": pipeline_costs(corpus_dir, args.embedder, os.path.join(work, "out")),
            "vggface": vggface_throughput(torch.device(args.device), args.vgg_batch_size, args.vgg_batches),
        }
    print(json.dumps(results, indent=2))
    if args.json:
        with open(args.json, "w") as file:
            json.dump(results, file, indent=2)


if __name__ == "__main__":
    main()
