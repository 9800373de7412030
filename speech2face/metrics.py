"""Retrieval metrics: recall at K of the true face among a gallery, ranked by cosine similarity.

Query i (a predicted face feature) should retrieve gallery[targets[i]] (the clip's own face feature);
several queries may share one gallery item. Both sides are L2-normalised, so ranking by cosine
similarity equals the seed's ranking by distance of normalised vectors. Zero or non-finite rows are
an error: they have no direction, and a NaN prediction must not pass as a perfect hit.

Rank and ties (optimistic): rank = 1 + the number of gallery items whose similarity to the query is
strictly greater than the target's. Gallery rows that are exactly equal to the target after
normalisation (duplicates, and the target itself) never count: they tie with it exactly, whatever
rounding the matrix products make. So ranks lie in 1..N, and for K >= N the recall is 1.0 (the key K
is still reported, with the value at min(K, N), matching ``chance_recall``).

Memory: queries go in blocks and the gallery in chunks, so no (Q, N) matrix is ever built; a
100k x 100k evaluation holds one (block_size, gallery_chunk) similarity tile and three unit-length
row buffers (a query block, its targets, a gallery chunk), each allocated once and reused, and no copy
of either side that grows with Q or N (a gallery that is some rows of a bigger array is passed as
that array and the rows, and gathered a chunk at a time).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from statistics import NormalDist

import numpy as np
import torch

RANKS = (1, 5, 10, 25, 50, 75, 100)
NORM_EPS = 1e-12


def unit_vectors(rows: np.ndarray) -> np.ndarray:
    """Each row scaled to length 1 (a zero row stays zero)."""
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)


def _rows_of(x, name: str) -> torch.Tensor:
    """A (count, dim) array as a tensor, sharing memory where it can (numpy arrays and tensors)."""
    tensor = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    if tensor.ndim != 2 or tensor.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty (count, dim) array, got shape {tuple(tensor.shape)}")
    return tensor


class _UnitRows:
    """Rows of ``source`` scaled to unit length, written into one float32 buffer on ``device`` that every
    call reuses: the ranking's working memory stays a few such buffers whatever the split's size (a new
    array per chunk would be allocated and freed thousands of times, and the allocator keeps the churn).
    Zero or non-finite rows are refused, not ranked."""

    def __init__(self, source: torch.Tensor, name: str, device: torch.device, rows: int):
        self.source, self.name = source, name
        self.buffer = torch.empty((rows, source.shape[1]), dtype=torch.float32, device=device)

    def __call__(self, index, count: int, first_row: int = 0) -> torch.Tensor:
        """The ``count`` rows ``source[index]`` (a slice, or a tensor of row indices on the source's device),
        valid until the next call; errors name rows by ``first_row`` + their position."""
        rows = self.buffer[:count]
        if isinstance(index, torch.Tensor) and self.source.dtype == rows.dtype and self.source.device == rows.device:
            torch.index_select(self.source, 0, index, out=rows)
        else:
            rows.copy_(self.source[index])
        norms = torch.linalg.vector_norm(rows, dim=1, keepdim=True)
        # A NaN or zero row compares as "nothing beats the target" and would score a free hit.
        bad_rows = torch.nonzero(~torch.isfinite(norms[:, 0]) | (norms[:, 0] <= NORM_EPS))[:, 0] + first_row
        if len(bad_rows):
            raise ValueError(
                f"{self.name} rows {bad_rows[:10].tolist()} ({len(bad_rows)} of rows "
                f"{first_row}-{first_row + count - 1}) are zero or not finite, so they have no direction to rank "
                "by; drop those clips or fix the model/embedder that produced them"
            )
        return rows.div_(norms)


class _TargetCopies:
    """For query targets, every (query, gallery column) pair where the column is exactly equal to the
    target row after normalisation (the target itself included): those never beat the target.

    Rows are grouped by a digest of their unit vector's bytes, made a chunk at a time, so the gallery
    is never copied whole (a sort of the rows would be).
    """

    def __init__(self, gallery_unit_chunks, device: torch.device):
        digests = [hashlib.blake2b(row.tobytes(), digest_size=16).digest()
                   for chunk in gallery_unit_chunks for row in chunk.cpu().numpy()]  # fmt: skip
        keys = np.frombuffer(b"".join(digests), dtype=np.uint64).reshape(-1, 2)
        _, group = np.unique(keys, axis=0, return_inverse=True)
        group = torch.as_tensor(group.reshape(-1), device=device)
        self.group = group
        self.rows_by_group = torch.argsort(group, stable=True)  # gallery rows, grouped
        self.group_size = torch.bincount(group)
        self.group_start = torch.cumsum(self.group_size, 0) - self.group_size

    def __call__(self, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        groups = self.group[targets]
        sizes = self.group_size[groups]
        query_rows = torch.repeat_interleave(torch.arange(len(targets), device=targets.device), sizes)
        first_of_query = torch.repeat_interleave(torch.cumsum(sizes, 0) - sizes, sizes)
        position_in_group = torch.arange(len(query_rows), device=targets.device) - first_of_query
        columns = self.rows_by_group[self.group_start[groups][query_rows] + position_in_group]
        return query_rows, columns


def target_ranks(
    queries,
    gallery,
    targets,
    block_size: int = 1024,
    gallery_chunk: int = 1024,
    device: str | torch.device | None = None,
    gallery_rows=None,
) -> np.ndarray:
    """Rank (1 = best) of each query's true gallery item, as an int64 array of shape (Q,).

    ``queries`` (Q, D) and ``gallery`` (M, D) may be numpy arrays or torch tensors; ``targets`` (Q,)
    holds gallery item indices. The gallery is ``gallery[gallery_rows]`` where ``gallery_rows`` is
    given (N row indices), else all M rows. Computed in float32 on ``device`` (default: the queries').
    """
    if block_size < 1 or gallery_chunk < 1:
        raise ValueError(f"block_size and gallery_chunk must be >= 1, got {block_size} and {gallery_chunk}")
    if device is None:
        device = queries.device if isinstance(queries, torch.Tensor) else torch.device("cpu")
    device = torch.device(device)
    # Both sides are scaled to unit length a block or chunk at a time (a row gives the same unit vector
    # either way): whole unit copies would be two more arrays of the split's size on the driver. Each
    # query block scales the gallery chunks again, 1/block_size of the products' work.
    queries, gallery = _rows_of(queries, "queries"), _rows_of(gallery, "gallery")
    if queries.shape[1] != gallery.shape[1]:
        raise ValueError(
            f"queries have dim {queries.shape[1]} but gallery items have dim {gallery.shape[1]}; "
            "predict with an encoder whose out_dim matches the face features"
        )
    if gallery_rows is not None:
        gallery_rows = torch.as_tensor(np.asarray(gallery_rows), dtype=torch.long, device=gallery.device)
        if gallery_rows.ndim != 1 or not len(gallery_rows):
            raise ValueError(f"gallery_rows must be a non-empty list of row indices, got {tuple(gallery_rows.shape)}")
        if gallery_rows.min() < 0 or gallery_rows.max() >= len(gallery):
            raise ValueError(f"gallery_rows must index the gallery array's {len(gallery)} rows; got one outside")
    gallery_size = len(gallery) if gallery_rows is None else len(gallery_rows)

    def gallery_index(items):
        """Gallery items (a slice or index tensor of positions in the gallery) as rows of ``gallery``."""
        return items if gallery_rows is None else gallery_rows[items]

    gallery_unit = _UnitRows(gallery, "gallery", device, min(gallery_chunk, gallery_size))

    def gallery_chunks():
        for start in range(0, gallery_size, gallery_chunk):
            count = min(gallery_chunk, gallery_size - start)
            yield gallery_unit(gallery_index(slice(start, start + count)), count, first_row=start)

    target_index = torch.as_tensor(np.asarray(targets) if not isinstance(targets, torch.Tensor) else targets)
    if target_index.shape != (len(queries),) or target_index.is_floating_point():
        raise ValueError(
            f"targets must be {len(queries)} integer gallery indices (one per query), "
            f"got shape {tuple(target_index.shape)} of {target_index.dtype}"
        )
    target_index = target_index.to(device=device, dtype=torch.long)
    if len(target_index) and (target_index.min() < 0 or target_index.max() >= gallery_size):
        raise ValueError(f"targets must index the gallery, i.e. lie in [0, {gallery_size}); got an index outside")

    copies_of = _TargetCopies(gallery_chunks(), device)  # also refuses zero or non-finite gallery rows
    block_rows = min(block_size, len(queries))
    query_unit = _UnitRows(queries, "queries", device, block_rows)
    target_unit = _UnitRows(gallery, "gallery", device, block_rows)
    tile = torch.empty(block_rows * min(gallery_chunk, gallery_size), dtype=torch.float32, device=device)
    ranks = torch.empty(len(queries), dtype=torch.long, device=device)
    for start in range(0, len(queries), block_size):
        block = query_unit(slice(start, start + block_size), min(block_size, len(queries) - start), first_row=start)
        block_targets = target_index[start : start + len(block)]
        targets_unit = target_unit(gallery_index(block_targets.to(gallery.device)), len(block))
        target_similarity = torch.einsum("ij,ij->i", block, targets_unit)[:, None]
        copy_rows, copy_columns = copies_of(block_targets)
        better = torch.zeros(len(block), dtype=torch.long, device=device)
        for chunk_start, chunk in zip(range(0, gallery_size, gallery_chunk), gallery_chunks(), strict=True):
            similarity = torch.matmul(block, chunk.T, out=tile[: len(block) * len(chunk)].view(len(block), len(chunk)))
            in_chunk = (copy_columns >= chunk_start) & (copy_columns < chunk_start + len(chunk))
            # the target's copies tie with it; their matmul value may differ from target_similarity by rounding
            similarity[copy_rows[in_chunk], copy_columns[in_chunk] - chunk_start] = -torch.inf
            better += (similarity > target_similarity).sum(dim=1)
        ranks[start : start + len(block)] = better + 1
    return ranks.cpu().numpy()


def recall_from_ranks(ranks, gallery_size: int, ks: Sequence[int] = RANKS) -> dict[int, float]:
    """Fraction of queries whose rank is <= K, for each K (K beyond the gallery size counts as N)."""
    ranks = np.asarray(ranks)
    if any(int(k) < 1 for k in ks):
        raise ValueError(f"every K must be >= 1, got {list(ks)}")
    return {int(k): float(np.mean(ranks <= min(int(k), gallery_size))) for k in ks}


def recall_at_k(
    queries,
    gallery,
    targets,
    ks: Sequence[int] = RANKS,
    block_size: int = 1024,
    gallery_chunk: int = 1024,
    device: str | torch.device | None = None,
) -> dict[int, float]:
    """{K: recall at K}: the fraction of queries whose true gallery item ranks in the top K."""
    ranks = target_ranks(queries, gallery, targets, block_size, gallery_chunk, device)
    return recall_from_ranks(ranks, len(gallery), ks)


def chance_recall(k: int, n: int) -> float:
    """Recall at K of a random ranking of n gallery items: min(k, n) / n."""
    if k < 1 or n < 1:
        raise ValueError(f"need k >= 1 and n >= 1, got k={k}, n={n}")
    return min(k, n) / n


def recall_interval(hits: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a recall of ``hits`` / ``n``.

    Wilson, not the normal approximation: it stays inside [0, 1] and is sensible at 0 or n hits,
    which small test splits (a few hundred clips) and R@1 often give.
    """
    if n < 1 or not 0 <= hits <= n:
        raise ValueError(f"need n >= 1 and 0 <= hits <= n, got hits={hits}, n={n}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half_width = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    lo = 0.0 if hits == 0 else max(0.0, float(centre - half_width))  # exact ends, not 1e-17 rounding
    hi = 1.0 if hits == n else min(1.0, float(centre + half_width))
    return lo, hi


def recall_table(ranks, gallery_size: int, ks: Sequence[int] = RANKS, confidence: float = 0.95) -> list[dict]:
    """Rows {k, recall, lo, hi, chance, hits, queries} for reports, from ``target_ranks`` output."""
    ranks = np.asarray(ranks)
    rows = []
    for k, recall in recall_from_ranks(ranks, gallery_size, ks).items():
        hits = int(np.sum(ranks <= min(k, gallery_size)))
        lo, hi = recall_interval(hits, len(ranks), confidence)
        rows.append(
            {"k": k, "recall": recall, "lo": lo, "hi": hi, "chance": chance_recall(k, gallery_size),
             "hits": hits, "queries": len(ranks)}
        )  # fmt: skip
    return rows
