"""The files an encoder run leaves in <storage>/<name>/, rewritten by rank 0 after every epoch.

metrics.csv and TensorBoard's events (trainer.runtime.run_files), curves.png, and model.safetensors +
model.json holding the best epoch's weights (see ``best_epoch``).
"""

from __future__ import annotations

from speech2face import plots, storage
from speech2face.inference import save_model
from trainer.encoder.config import TrainConfig
from trainer.runtime.run_files import weights_info, write_history


def best_epoch(history: list[dict]) -> dict:
    """Highest val R@10; ties (R@10 saturates on a small val gallery) go to the lower mean rank of the
    true face, which counts every query's rank (steadier than a small gallery's R@1 or R@5, and closer
    to retrieval than the val loss), then the lower val loss, then the earlier epoch."""
    inf = float("inf")
    return max(
        history,
        key=lambda row: (
            row.get("val_r10", 0.0),
            -row.get("val_mean_rank", inf),
            -row.get("val_loss", inf),
            -row["epoch"],
        ),
    )


def write_epoch(run_uri: str, history: list[dict], model, config: TrainConfig, loop_config: dict) -> None:
    write_history(run_uri, history)
    storage.write_bytes(storage.join(run_uri, "curves.png"), plots.curves_png(history, title=config.name))
    best = best_epoch(history)
    if best is history[-1]:
        info = weights_info(best, loop_config, config.name)
        save_model(model, storage.join(run_uri, "model.safetensors"), info)


def epoch_line(row: dict, epochs: int) -> str:
    parts = [f"[train] epoch {row['epoch']}/{epochs}", f"train_loss {row['train_loss']:.4f}"]
    if "val_loss" in row:
        parts.append(f"val_loss {row['val_loss']:.4f}")
        parts.append("val R@1/5/10 " + "/".join(f"{100 * row[f'val_r{k}']:.1f}" for k in (1, 5, 10)) + " %")
        parts.append(f"(gallery {row['val_gallery']})")
    parts.append(
        f"{row['epoch_s']:.1f} s ({row['samples_per_s']:.1f} samples/s, data wait {100 * row['data_wait_frac']:.0f} %)"
    )
    return "  ".join(parts)
