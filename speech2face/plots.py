"""PNG figures as bytes (so they can go to local or S3 storage): training curves and face grids."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from PIL import Image  # noqa: E402


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    return buffer.getvalue()


def curves_png(history: list[dict], title: str = "") -> bytes:
    """Loss (train and val) and val R@1/5/10 per epoch, side by side."""
    epochs = [row["epoch"] for row in history]
    figure, (loss_axis, recall_axis) = plt.subplots(1, 2, figsize=(10, 4))
    loss_axis.plot(epochs, [row["train_loss"] for row in history], "o-", label="train")
    if all("val_loss" in row for row in history):
        loss_axis.plot(epochs, [row["val_loss"] for row in history], "s-", label="val")
    loss_axis.set(xlabel="epoch", ylabel="loss", title="loss")
    loss_axis.legend()
    for k in (1, 5, 10):
        key = f"val_r{k}"
        if all(key in row for row in history):
            recall_axis.plot(epochs, [100 * row[key] for row in history], "o-", label=f"R@{k}")
    recall_axis.set(xlabel="epoch", ylabel="%", ylim=(0, 102), title="val recall")
    recall_axis.legend()
    for axis in (loss_axis, recall_axis):
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    figure.suptitle(title)
    figure.tight_layout()
    return _png(figure)


def rank_cdf_png(points: list[tuple[int, float]], gallery_size: int, title: str = "") -> bytes:
    """The share of queries whose true item ranks at or above each rank, against chance (rank / N)."""
    ranks = [rank for rank, _ in points]
    figure, axis = plt.subplots(figsize=(6, 4.5))
    axis.plot(ranks, [100 * share for _, share in points], "-", label="model")
    axis.plot([1, gallery_size], [100 / gallery_size, 100], "--", color="grey", label="chance")
    axis.set(xlabel=f"rank (gallery of {gallery_size})", ylabel="% of queries at or above it", ylim=(0, 101),
             xlim=(1, gallery_size), title=title)  # fmt: skip
    axis.legend()
    figure.tight_layout()
    return _png(figure)


def jpeg_image(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def face_grid_png(rows: list[dict], title: str = "") -> bytes:
    """One row per query: ``{"label": str, "faces": [(jpeg bytes, caption, is_true)]}``; true ones framed green."""
    columns = max(len(row["faces"]) for row in rows)
    figure, axes = plt.subplots(len(rows), columns, figsize=(1.9 * columns, 2.1 * len(rows)), squeeze=False)
    for axis_row, row in zip(axes, rows, strict=True):
        for column, axis in enumerate(axis_row):
            axis.set_xticks([])
            axis.set_yticks([])
            if column >= len(row["faces"]):
                axis.axis("off")
                continue
            jpeg, caption, is_true = row["faces"][column]
            axis.imshow(jpeg_image(jpeg))
            axis.set_xlabel(caption, fontsize=7)
            for spine in axis.spines.values():
                spine.set_color("limegreen" if is_true else "lightgrey")
                spine.set_linewidth(4 if is_true else 1)
        axis_row[0].set_ylabel(row["label"], fontsize=7)
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    return _png(figure)


def decoder_curves_png(history: list[dict], title: str = "") -> bytes:
    """The face decoder's loss parts per epoch, train (solid) and val (dashed)."""
    epochs = [row["epoch"] for row in history]
    figure, axis = plt.subplots(figsize=(6, 4))
    for part in ("total", "texture", "image", "landmarks", "feature"):
        for split, style in (("train", "o-"), ("val", "s--")):
            key = f"{split}_{part}"
            if all(key in row for row in history):
                axis.plot(epochs, [row[key] for row in history], style, label=key)
    axis.set(xlabel="epoch", ylabel="weighted loss", yscale="log", title="face decoder")
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axis.legend(fontsize=7)
    figure.suptitle(title)
    figure.tight_layout()
    return _png(figure)


def image_columns_png(columns: list[tuple[str, np.ndarray]], title: str = "") -> bytes:
    """Side-by-side columns of face images: ``[(heading, uint8 (N, H, W, 3))]``, row i of each column together."""
    rows = max(len(images) for _, images in columns)
    figure, axes = plt.subplots(rows, len(columns), figsize=(1.8 * len(columns), 1.8 * rows), squeeze=False)
    for column, (heading, images) in enumerate(columns):
        axes[0, column].set_title(heading, fontsize=8)
        for row in range(rows):
            axis = axes[row, column]
            axis.axis("off")
            if row < len(images):
                axis.imshow(images[row])
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    return _png(figure)
