"""Training throughput with 1, 2, ... Ray Train workers (DDP), and the scaling efficiency.

Each worker runs the voice encoder's training step (speech2face.perf's fast path, L2norm loss, fused
Adam) on its own synthetic batch for a fixed number of steps; gradients are all-reduced every step
(gloo on CPU, NCCL on GPU). Throughput = all workers' samples / wall time of the timed steps;
efficiency(N) = (throughput(N) / N) / throughput(1). Self-contained: no dataset, a local Ray.

On CPU every worker gets --cpus-per-worker cores (torch threads), so N workers use N times the
cores of one. With GPUs (--use-gpu) each worker gets one GPU; on a machine with one GPU only N = 1
can run, so the efficiency needs a multi-GPU node or a cluster: under `ray job submit` (RAY_ADDRESS
set) it uses the cluster's nodes (RESULTS.md says how).

    python -m benchmarks.scaling --preset tiny --workers 1,2 --steps 20 --warmup 3
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time


def train_loop_per_worker(config: dict) -> None:
    """One DDP worker: ``warmup`` untimed steps, then ``steps`` timed ones; reports its wall time."""
    import ray.train
    import ray.train.torch
    import torch
    import torch.distributed as dist

    from speech2face.losses import l2norm_loss
    from speech2face.models import VoiceEncoder
    from speech2face.perf import fast_adam_kwargs, fast_path

    device = ray.train.torch.get_device()
    rank = ray.train.get_context().get_world_rank()
    torch.manual_seed(rank)
    model, autocast = fast_path(VoiceEncoder(config["preset"]), device)
    model = ray.train.torch.prepare_model(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.5, 0.999), eps=1e-4, **fast_adam_kwargs(device))
    spectrograms = torch.randn(config["batch_size"], config["num_frames"], 257, 2, device=device)
    targets = torch.randn(config["batch_size"], 4096, device=device)

    def step() -> None:
        with autocast():
            loss = l2norm_loss(model(spectrograms), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(config["warmup"]):
        step()
    dist.barrier()
    start = time.perf_counter()
    for _ in range(config["steps"]):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    dist.barrier()
    elapsed = time.perf_counter() - start
    world = ray.train.get_context().get_world_size()
    metrics = {"elapsed_s": elapsed, "samples": world * config["batch_size"] * config["steps"],
               "torch_threads": torch.get_num_threads(), "world_size": world}  # fmt: skip
    # Train V2 keeps only metrics reported with a checkpoint, so rank 0 attaches a tiny one.
    with tempfile.TemporaryDirectory() as directory:
        checkpoint = None
        if rank == 0:
            with open(os.path.join(directory, "metrics.json"), "w") as file:
                json.dump(metrics, file)
            checkpoint = ray.train.Checkpoint.from_directory(directory)
        ray.train.report(metrics, checkpoint=checkpoint)


def measure(workers: int, args, storage_path: str) -> dict:
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    resources = {"GPU": 1} if args.use_gpu else {"CPU": args.cpus_per_worker}
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={
            "preset": args.preset,
            "batch_size": args.batch_size,
            "num_frames": args.num_frames,
            "steps": args.steps,
            "warmup": args.warmup,
        },  # fmt: skip
        scaling_config=ray.train.ScalingConfig(
            num_workers=workers, use_gpu=args.use_gpu, resources_per_worker=resources
        ),  # fmt: skip
        torch_config=TorchConfig(backend="nccl" if args.use_gpu else "gloo"),
        run_config=ray.train.RunConfig(name=f"scaling_{workers}", storage_path=storage_path),
    )
    metrics = trainer.fit().metrics
    return {"workers": workers, **metrics, "samples_per_s": metrics["samples"] / metrics["elapsed_s"]}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="tiny", choices=["paper", "tiny"])
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    parser.add_argument("--batch-size", type=int, default=2, help="per worker")
    parser.add_argument("--num-frames", type=int, default=598)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--cpus-per-worker", type=int, default=1)
    parser.add_argument("--use-gpu", action="store_true", help="one GPU per worker, NCCL")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a private local Ray, no token auth
    import ray

    counts = [int(n) for n in args.workers.split(",")]
    if os.environ.get("RAY_ADDRESS"):  # under `ray job submit` on a cluster: use its nodes
        ray.init(address=os.environ["RAY_ADDRESS"])
    else:  # a private local Ray with just the CPUs the largest run reserves (GPUs are detected); its own
        # dashboard, which Ray Train's placement-group cleaner asks whether the run's controller lives
        ray.init(num_cpus=max(counts) * (1 if args.use_gpu else args.cpus_per_worker))
    results, load_start = [], os.getloadavg()
    try:
        with tempfile.TemporaryDirectory() as storage_path:
            for workers in counts:
                results.append(measure(workers, args, storage_path))
    finally:
        ray.shutdown()
    base = next((r["samples_per_s"] / r["workers"] for r in results if r["workers"] == 1), None)
    print(f"# {args.preset} preset, batch {args.batch_size}/worker, {args.steps} timed steps, "
          f"{'1 GPU' if args.use_gpu else f'{args.cpus_per_worker} CPU'} per worker, "
          f"load average {load_start} -> {os.getloadavg()}")  # fmt: skip
    print(f"{'workers':>7} {'samples/s':>10} {'per worker':>10} {'efficiency':>10}")
    for row in results:
        row["efficiency"] = row["samples_per_s"] / row["workers"] / base if base else None
        efficiency = f"{row['efficiency']:>9.0%}" if base else f"{'-':>10}"
        per_worker = row["samples_per_s"] / row["workers"]
        print(f"{row['workers']:>7} {row['samples_per_s']:>10.2f} {per_worker:>10.2f} {efficiency}")
    if args.json:
        with open(args.json, "w") as file:
            json.dump({"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "args": vars(args),
                       "load_average_start": load_start, "load_average_end": os.getloadavg(),
                       "results": results}, file, indent=2)  # fmt: skip


if __name__ == "__main__":
    main()
