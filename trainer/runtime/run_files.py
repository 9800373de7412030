"""The files every run rewrites after each epoch (rank 0): metrics.csv and TensorBoard's event files.

All go through speech2face.storage, so local directories and s3:// behave the same.
"""

from __future__ import annotations

import csv
import io
import os
import sys
import tempfile
import types

from speech2face import storage
from speech2face.dataset import EMBEDDER

_tensorboard: dict = {}  # per process: the SummaryWriter, its local dir and the last epoch logged


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


def weights_info(row: dict, loop_config: dict, run_name: str) -> dict:
    """What a model or decoder file records of the epoch it holds: the features it learned, its val figures."""
    val = {k: v for k, v in row.items() if k.startswith("val_")}
    return {"epoch": row["epoch"], EMBEDDER: loop_config[EMBEDDER], "run": run_name, "val": val}


def write_history(run_uri: str, history: list[dict]) -> None:
    """metrics.csv (every epoch so far, restored from the checkpoint on resume) and TensorBoard's events."""
    storage.write_bytes(storage.join(run_uri, "metrics.csv"), metrics_csv(history))
    log_tensorboard(run_uri, history)
