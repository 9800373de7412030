"""Training-step throughput of the face decoder, both presets, through trainer.train_decoder's own step.

One step = ``speech2face.perf.decoder_train_step`` (forward under the fast path's autocast, the
three losses, backward, Adam) on random features and real-shaped faces and landmarks. For each
preset it also times the same step with the warp's spline on every pixel (``flow_size=None``)
instead of the preset's coarse grid: the saving the coarse flow buys. Step times are the best of the
timed steps (the median is in the JSON), in one run, with the load average at start and end.

    python -m benchmarks.decoder_step --json benchmarks/results/decoder_step.json
    python -m benchmarks.decoder_step --presets tiny --batch-sizes 2 --steps 2 --warmup 1   # a smoke run
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import time

import torch

from benchmarks.train_step import machine_info, synchronize
from speech2face.decoder import DECODER_PRESETS, DecoderLossWeights, FaceDecoder
from speech2face.perf import choose_fast_path, decoder_train_step, fast_adam_kwargs

DEFAULT_BATCHES = {"tiny": 16, "paper": 4}


def time_step(preset: str, batch_size: int, flow_size, device, steps: int, warmup: int) -> dict:
    torch.manual_seed(0)
    spec = dataclasses.replace(DECODER_PRESETS[preset], flow_size=flow_size)
    decoder = FaceDecoder(128, spec).to(device)
    fast = choose_fast_path(device, "auto")
    fast.configure_process()  # as trainer.train_decoder's workers do
    optimizer = torch.optim.Adam(decoder.parameters(), lr=1e-3, **fast_adam_kwargs(device))
    scaler = torch.amp.GradScaler(device.type, enabled=False)
    side = spec.resolution
    features = torch.randn(batch_size, 128, device=device)
    faces = torch.rand(batch_size, 3, side, side, device=device)
    landmarks = (decoder.mean_shape + 0.02 * torch.randn(batch_size, 68, 2, device=device)).clamp(0, 1)
    times = []
    for index in range(warmup + steps):
        synchronize(device)
        started = time.perf_counter()
        decoder_train_step(decoder, decoder, optimizer, scaler, fast, features, faces, landmarks, DecoderLossWeights())
        synchronize(device)
        if index >= warmup:
            times.append(time.perf_counter() - started)
    best = min(times)
    return {"preset": preset, "batch_size": batch_size, "flow_size": flow_size, "step_s": best,
            "median_step_s": statistics.median(times), "samples_per_s": batch_size / best,
            "amp": str(fast.amp_dtype), "parameters": sum(p.numel() for p in decoder.parameters())}  # fmt: skip


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(prog="python -m benchmarks.decoder_step", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--presets", default="tiny,paper", help="comma-separated decoder presets")
    p.add_argument("--batch-sizes", help="comma-separated, one per preset (default: tiny 16, paper 4)")
    p.add_argument("--steps", type=int, default=10, help="timed steps per measurement")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--json", help="write the report here")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    presets = args.presets.split(",")
    batches = [DEFAULT_BATCHES[name] for name in presets]
    if args.batch_sizes:
        batches = [int(size) for size in args.batch_sizes.split(",")]
    report = {"machine": machine_info(device), "results": []}
    for preset, batch in zip(presets, batches, strict=True):
        for flow_size in (DECODER_PRESETS[preset].flow_size, None):
            row = time_step(preset, batch, flow_size, device, args.steps, args.warmup)
            report["results"].append(row)
            flow = "every pixel" if flow_size is None else f"{flow_size}x{flow_size} flow"
            print(
                f"{preset:6} batch {batch:3}  warp on {flow:12}  {1000 * row['step_s']:8.1f} ms/step  "
                f"{row['samples_per_s']:7.1f} samples/s  ({row['parameters'] / 1e6:.1f} M parameters)"
            )
    report["machine"]["load_average_at_end"] = os.getloadavg()
    print(f"# load average at start {report['machine']['load_average_at_start']}, at end {os.getloadavg()}")
    if args.json:
        with open(args.json, "w") as file:
            json.dump(report, file, indent=2)
    return report


if __name__ == "__main__":
    main()
