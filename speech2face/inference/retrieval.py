"""Retrieval protocol shared by validation and evaluation: who is in the gallery, and ranks.

``gallery_by="ytid"``: one face per video (the clip with the smallest key), so near-duplicate faces
of one speaker do not compete; every clip of that video is a query whose target is that face.
``gallery_by="clip"``: the seed's protocol, one gallery face per clip, each clip its own target.
"""

from __future__ import annotations

import numpy as np

from speech2face.dataset import YTID
from speech2face.metrics import RANKS, recall_from_ranks, target_ranks

BY_VIDEO, BY_CLIP = YTID, "clip"
GALLERY_MODES = (BY_VIDEO, BY_CLIP)


def gallery_indices(group_keys: np.ndarray, order_keys: np.ndarray, gallery_by: str) -> tuple[np.ndarray, np.ndarray]:
    """(gallery rows, target position in the gallery for each row).

    ``group_keys``: the video of each row (ytid or its key); ``order_keys``: a per-row value that
    picks the representative clip deterministically (smallest wins), e.g. the clip id or its key.
    """
    count = len(group_keys)
    if gallery_by == BY_CLIP:
        rows = np.arange(count)
        return rows, rows.copy()
    if gallery_by != BY_VIDEO:
        raise ValueError(f"gallery_by must be one of {GALLERY_MODES}, got {gallery_by!r}")
    order = np.lexsort((order_keys, group_keys))  # by video, then by order key
    sorted_groups = np.asarray(group_keys)[order]
    first = np.ones(count, dtype=bool)
    first[1:] = sorted_groups[1:] != sorted_groups[:-1]
    gallery_rows = order[first]
    _, group_index = np.unique(np.asarray(group_keys), return_inverse=True)
    # np.unique sorts groups, and gallery_rows are in the same (sorted-group) order
    return gallery_rows, group_index.reshape(-1)


def retrieval_ranks(predictions, faces, group_keys, order_keys, gallery_by: str = BY_VIDEO) -> tuple[np.ndarray, int]:
    """(rank of each query's true face, gallery size)."""
    gallery_rows, targets = gallery_indices(np.asarray(group_keys), np.asarray(order_keys), gallery_by)
    ranks = target_ranks(predictions, faces, targets, gallery_rows=gallery_rows)
    return ranks, len(gallery_rows)


def recall_metrics(ranks: np.ndarray, gallery_size: int, prefix: str = "val_", ks=(1, 5, 10)) -> dict[str, float]:
    return {f"{prefix}r{k}": value for k, value in recall_from_ranks(ranks, gallery_size, ks).items()}


__all__ = ["BY_CLIP", "BY_VIDEO", "GALLERY_MODES", "RANKS", "gallery_indices", "recall_metrics", "retrieval_ranks"]
