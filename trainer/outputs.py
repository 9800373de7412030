"""The files a run leaves in <storage>/<name>/, rewritten by rank 0 after every epoch.

metrics.csv (every epoch so far, restored from the checkpoint on resume), curves.png, TensorBoard
event files under tensorboard/, and model.safetensors + model.json holding the best epoch's weights
(see ``best_epoch``). All go through speech2face.storage, so local
directories and s3:// behave the same.
"""

from __future__ import annotations

import csv
import io
import os
import sys
import tempfile
import types

from speech2face import storage
from trainer import plots
from trainer.config import TrainConfig
from trainer.model_io import save_model

_tensorboard: dict = {}  # per process: the SummaryWriter, its local dir and the last epoch logged


def best_epoch(history: list[dict]) -> dict:
    """Highest val R@10; ties (R@10 saturates on a small val gallery) go to the lower mean rank of the
    true face, which counts every query's rank (steadier than a small gallery's R@1 or R@5, and closer
    to retrieval than the val loss), then the lower val loss, then the earlier epoch."""
    inf = float("inf")
    return max(history, key=lambda row: (row.get("val_r10", 0.0), -row.get("val_mean_rank", inf),
                                         -row.get("val_loss", inf), -row["epoch"]))  # fmt: skip


def metrics_csv(history: list[dict]) -> bytes:
    columns = list(dict.fromkeys(key for row in history for key in row))
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns)
    writer.writeheader()
    writer.writerows(history)
    return text.getvalue().encode()


def _summary_writer():
    if "writer" not in _tensorboard:
        # TensorBoard's TF-free stub (its "no_tensorflow" switch): importing TensorFlow costs ~6 s and
        # much memory per worker, and writing scalars does not need it.
        if "tensorflow" not in sys.modules:
            sys.modules.setdefault("tensorboard.compat.notf", types.ModuleType("tensorboard.compat.notf"))
        from torch.utils.tensorboard import SummaryWriter

        directory = tempfile.mkdtemp(prefix="speech2face-tb-")
        _tensorboard.update(writer=SummaryWriter(directory), dir=directory, last_epoch=0)
    return _tensorboard["writer"]


def log_tensorboard(run_uri: str, history: list[dict]) -> None:
    writer = _summary_writer()
    for row in history:
        if row["epoch"] > _tensorboard["last_epoch"]:
            for key, value in row.items():
                if key not in ("epoch", "finished_at") and isinstance(value, (int, float)):
                    writer.add_scalar(key, value, row["epoch"])
            _tensorboard["last_epoch"] = row["epoch"]
    writer.flush()
    for name in os.listdir(_tensorboard["dir"]):  # upload: SummaryWriter writes local files only
        with open(os.path.join(_tensorboard["dir"], name), "rb") as file:
            storage.write_bytes(storage.join(run_uri, "tensorboard", name), file.read())


def write_epoch(run_uri: str, history: list[dict], model, config: TrainConfig, loop_config: dict) -> None:
    storage.write_bytes(storage.join(run_uri, "metrics.csv"), metrics_csv(history))
    storage.write_bytes(storage.join(run_uri, "curves.png"), plots.curves_png(history, title=config.name))
    log_tensorboard(run_uri, history)
    best = best_epoch(history)
    if best is history[-1]:
        info = {"epoch": best["epoch"], "embedder": loop_config["embedder"], "run": config.name,
                "val": {k: v for k, v in best.items() if k.startswith("val_")}}  # fmt: skip
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
