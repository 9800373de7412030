"""The evaluation protocols the field publishes, as functions of features: no Ray, no files.

    drawn galleries  each query against ``gallery_size`` items: its own and ``gallery_size - 1`` drawn
                     at random from the others, ``draws`` times. Oh et al. (2019) rank against 5,000
                     faces; SF2F (Bai et al. 2022) and Vox2Face against 100 identities, each the mean
                     of its faces (:func:`identity_means`).
    matching         SVHF / FAME: given a voice and two faces, is its own face the nearer one (1:2
                     accuracy, chance 0.5); and verification of voice-face pairs (ROC AUC, EER).

Similarity is cosine, ties are optimistic (as in ``speech2face.metrics``): rank = 1 + the number of
distractors nearer than the true item by more than ``TIE_TOLERANCE`` (float32 rounding: a copy of the
true item, another clip's identical face, ties with it), so ranks lie in 1..gallery_size and chance R@K
is K / gallery_size. Every figure comes with its chance level and a 95 % interval.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import torch

from speech2face.metrics import recall_interval, unit_vectors

Z95 = NormalDist().inv_cdf(0.975)
TIE_TOLERANCE = 1e-6


def identity_means(features: np.ndarray, identities: Sequence, block_size: int = 1024) -> tuple[list, np.ndarray]:
    """(identities in first-seen order, each one's mean of its L2-normalised features), as SF2F averages
    an identity's faces. Rows are normalised a block at a time: no copy of ``features`` is made."""
    labels, first, index = np.unique(np.asarray(identities, dtype=object).astype(str), return_index=True,
                                     return_inverse=True)  # fmt: skip
    means = np.zeros((len(labels), features.shape[1]), dtype=np.float32)  # sums of unit vectors, then means
    for start in range(0, len(features), block_size):
        block = slice(start, start + block_size)
        np.add.at(means, index[block], unit_vectors(np.asarray(features[block], dtype=np.float32)))
    means /= np.bincount(index, minlength=len(labels))[:, None]
    order = np.argsort(first)
    return [str(labels[i]) for i in order], means[order]


def drawn_gallery_ranks(
    queries, items, targets, gallery_size: int, draws: int, seed: int = 0, block_size: int = 1024, pool=None
) -> np.ndarray:
    """Rank (1 = best) of each query's true item in ``draws`` random galleries: an int64 array (draws, Q).

    ``targets`` are rows of ``items``; galleries are drawn from the rows ``pool`` (default: all), so a
    split's one-face-per-video gallery is rows of its features, never a copy of them. Each draw picks one
    database of ``gallery_size`` pool rows for all queries (as one fixed set of faces is shown to every
    query); a query's gallery is that database with its own item in it: where the database lacks it, the
    item takes the database's last place. ``gallery_size`` above the pool's size is refused: the caller
    says plainly that the split has fewer.
    """
    queries, items, targets = np.asarray(queries), np.asarray(items), np.asarray(targets, dtype=np.int64)
    pool = np.arange(len(items)) if pool is None else np.asarray(pool, dtype=np.int64)
    if not 1 <= gallery_size <= len(pool):
        raise ValueError(f"gallery_size must lie in 1..{len(pool)} (the items there are), got {gallery_size}")
    if draws < 1:
        raise ValueError(f"draws must be >= 1, got {draws}")
    if targets.shape != (len(queries),) or (len(targets) and not 0 <= targets.min() <= targets.max() < len(items)):
        raise ValueError(f"targets must be {len(queries)} row indices of the {len(items)} items")

    def unit(rows: np.ndarray) -> torch.Tensor:  # a block at a time: no unit copy of either side is kept
        return torch.from_numpy(unit_vectors(np.asarray(rows, dtype=np.float32)))

    generator = np.random.default_rng(seed)
    ranks = np.empty((draws, len(queries)), dtype=np.int64)
    for draw in range(draws):
        rows = np.sort(pool[generator.choice(len(pool), size=gallery_size, replace=False)])
        database, gallery = torch.from_numpy(rows), unit(items[rows])
        in_database = torch.zeros(len(items), dtype=torch.bool)
        in_database[database] = True
        for start in range(0, len(queries), block_size):
            block = slice(start, start + block_size)
            own = torch.from_numpy(targets[block])
            block_queries = unit(queries[block])
            similarity = block_queries @ gallery.T  # (block, gallery_size)
            own_similarity = (block_queries * unit(items[targets[block]])).sum(dim=1, keepdim=True)
            counted = database[None, :] != own[:, None]  # the item itself never competes
            counted[~in_database[own], -1] = False  # it took the last place of a database that lacked it
            nearer = similarity > own_similarity + TIE_TOLERANCE
            ranks[draw, block] = (nearer & counted).sum(dim=1).numpy() + 1
    return ranks


@dataclass(frozen=True)
class Recall:
    k: int
    recall: float  # mean over queries of the share of draws in which the true item ranked <= k
    lo: float
    hi: float
    chance: float


def drawn_recall(ranks: np.ndarray, gallery_size: int, ks: Sequence[int] = (1, 5, 10)) -> list[Recall]:
    """R@K over draws (``drawn_gallery_ranks``'s array), with a 95 % interval over queries.

    One draw: the Wilson interval of hits among queries. Several: each query's hit rate over the draws is
    one observation; the interval is their mean ± 1.96 standard errors (draws share a database, so
    pooling hits over draws would overstate how much was measured).
    """
    ranks = np.atleast_2d(ranks)
    rows = []
    for k in ks:
        hits = ranks <= min(k, gallery_size)
        if len(ranks) == 1:
            lo, hi = recall_interval(int(hits.sum()), hits.shape[1])
        else:
            per_query = hits.mean(axis=0)
            half = Z95 * per_query.std(ddof=1) / np.sqrt(len(per_query)) if len(per_query) > 1 else 1.0
            lo, hi = max(0.0, per_query.mean() - half), min(1.0, per_query.mean() + half)
        rows.append(Recall(int(k), float(hits.mean()), float(lo), float(hi), min(k, gallery_size) / gallery_size))
    return rows


def rank_summary(ranks: np.ndarray, gallery_size: int) -> dict:
    """Median and mean rank over every query and draw, beside chance's ((N + 1) / 2 for both)."""
    return {
        "median_rank": float(np.median(ranks)),
        "mean_rank": float(np.mean(ranks)),
        "chance_rank": (gallery_size + 1) / 2,
        "gallery_size": gallery_size,
    }


def rank_cdf(ranks: np.ndarray, gallery_size: int, points: int = 50) -> list[tuple[int, float]]:
    """(rank, share of every query and draw ranked at or above it) at ``points`` ranks from 1 to N."""
    ranks = np.sort(np.ravel(ranks))
    at = np.unique(np.round(np.linspace(1, gallery_size, points)).astype(int))
    return [(int(rank), float(np.searchsorted(ranks, rank, side="right") / len(ranks))) for rank in at]


def attribute_correlations(from_faces: dict, from_voices: dict, shuffles: int = 1000, seed: int = 0) -> dict:
    """Oh et al.'s comparison of attributes: for each measure, the Pearson correlation between faces drawn
    from the true features and faces drawn from the voices, beside a random-pair baseline (the same
    correlation over ``shuffles`` random pairings: its mean and 95 % range)."""
    generator = np.random.default_rng(seed)
    report = {}
    for name, truth in from_faces.items():
        voice = np.asarray(from_voices[name], np.float64)
        truth = np.asarray(truth, np.float64)
        random_pairs = [np.corrcoef(truth, voice[generator.permutation(len(voice))])[0, 1] for _ in range(shuffles)]
        report[name] = {
            "correlation": float(np.corrcoef(truth, voice)[0, 1]),
            "random_pairs_mean": float(np.mean(random_pairs)),
            "random_pairs_lo": float(np.percentile(random_pairs, 2.5)),
            "random_pairs_hi": float(np.percentile(random_pairs, 97.5)),
        }
    return report


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two (count, dim) arrays."""
    return np.einsum("ij,ij->i", unit_vectors(np.asarray(a, np.float64)), unit_vectors(np.asarray(b, np.float64)))


def different_identity_pairs(identities: Sequence, seed: int = 0) -> np.ndarray:
    """For each row, another row of a different identity, drawn at random (needs two identities or more)."""
    labels = np.asarray(identities, dtype=object).astype(str)
    if len(np.unique(labels)) < 2:
        raise ValueError("matching needs at least two identities")
    generator = np.random.default_rng(seed)
    other = generator.integers(0, len(labels), size=len(labels))
    while np.any(same := labels[other] == labels):  # redraw the pairs that landed on the same identity
        other[same] = generator.integers(0, len(labels), size=int(same.sum()))
    return other


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve: the chance that a positive outscores a negative, ties counting half
    (the Mann-Whitney U statistic over the average ranks of tied scores)."""
    scores, labels = np.asarray(scores, np.float64), np.asarray(labels, bool)
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if not positives or not negatives:
        raise ValueError("ROC AUC needs both positive and negative pairs")
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    ranks = np.empty(len(scores), np.float64)
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    ends = np.r_[starts[1:], len(scores)]
    for start, end in zip(starts, ends, strict=True):  # ties share their average rank (1-based)
        ranks[order[start:end]] = (start + end + 1) / 2
    return float((ranks[labels].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def equal_error_rate(scores: np.ndarray, labels: np.ndarray) -> float:
    """The rate where false accepts equal false rejects, on the ROC curve's points (every distinct score as
    a threshold), linearly interpolated between the two points around the crossing."""
    scores, labels = np.asarray(scores, np.float64), np.asarray(labels, bool)
    thresholds = np.r_[np.inf, np.unique(scores)[::-1]]
    accepted = scores[None, :] >= thresholds[:, None]
    false_accept = (accepted & ~labels).sum(axis=1) / max(int((~labels).sum()), 1)
    false_reject = 1 - (accepted & labels).sum(axis=1) / max(int(labels.sum()), 1)
    gap = false_reject - false_accept  # falls from 1 to -1 (at most) as the threshold drops
    after = int(np.argmax(gap <= 0))
    if after == 0:
        return float(false_accept[0])
    before = after - 1
    share = gap[before] / (gap[before] - gap[after])
    return float(false_accept[before] + share * (false_accept[after] - false_accept[before]))


def matching(voices, faces, identities, seed: int = 0) -> dict:
    """1:2 accuracy and verification AUC / EER: row i's voice against its own face and against the face of a
    row of another identity (one drawn per row)."""
    voices, faces = np.asarray(voices), np.asarray(faces)
    other = different_identity_pairs(identities, seed)
    own, foreign = cosine(voices, faces), cosine(voices, faces[other])
    correct = int(np.sum(own > foreign))
    lo, hi = recall_interval(correct, len(own))
    scores, labels = np.r_[own, foreign], np.r_[np.ones(len(own), bool), np.zeros(len(foreign), bool)]
    return {
        "accuracy_1_to_2": correct / len(own),
        "accuracy_lo": lo,
        "accuracy_hi": hi,
        "accuracy_chance": 0.5,
        "roc_auc": roc_auc(scores, labels),
        "roc_auc_chance": 0.5,
        "eer": equal_error_rate(scores, labels),
        "eer_chance": 0.5,
        "pairs": len(own),
    }
