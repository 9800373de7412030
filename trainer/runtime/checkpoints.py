"""Ray Train checkpoints of a training loop: every stateful object's state_dict plus the loop's own state.

Shared by the voice encoder's loop and the face decoder's: ``objects`` maps a file stem to anything
with state_dict()/load_state_dict() (model, optimizer, scheduler, grad scaler). So are the epoch's
bookkeeping helpers below (batch wait times, losses averaged over workers).
"""

from __future__ import annotations

import json
import os
import time

import ray.train
import torch
import torch.distributed as dist


def restore(objects: dict) -> dict:
    """Loads ``ray.train.get_checkpoint()`` into ``objects``; returns the loop state (epoch 0 if none)."""
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return {"epoch": 0, "global_step": 0, "history": []}
    with checkpoint.as_directory() as directory:
        for name, target in objects.items():
            target.load_state_dict(
                torch.load(os.path.join(directory, f"{name}.pt"), map_location="cpu", weights_only=True)
            )
        with open(os.path.join(directory, "state.json")) as file:
            return json.load(file)


def save(directory: str, objects: dict, state: dict, config_json: str) -> None:
    for name, source in objects.items():
        torch.save(source.state_dict(), os.path.join(directory, f"{name}.pt"))
    with open(os.path.join(directory, "state.json"), "w") as file:
        json.dump(state, file)
    with open(os.path.join(directory, "config.json"), "w") as file:
        file.write(config_json)


def timed(batches):
    """Yields (seconds blocked waiting for the batch, batch)."""
    iterator = iter(batches)
    while True:
        started = time.perf_counter()
        try:
            batch = next(iterator)
        except StopIteration:
            return
        yield time.perf_counter() - started, batch


def mean_over_workers(sums: dict, count: int, device: torch.device, reduce: bool = True) -> tuple[dict, int]:
    """Per-row means of the summed losses over every worker's rows (``reduce``), and the rows counted.

    The sums stay on ``device``: NCCL all-reduces only GPU tensors (gloo, on CPU, any).
    """
    names = sorted(sums) or ["total"]
    totals = torch.stack(
        [
            torch.as_tensor(value, dtype=torch.float64, device=device)
            for value in (count, *(sums.get(name, 0.0) for name in names))
        ]
    )
    if reduce and dist.is_available() and dist.is_initialized():
        dist.all_reduce(totals)
    total_count, *values = totals.tolist()
    return {name: value / max(total_count, 1) for name, value in zip(names, values, strict=True)}, int(total_count)
