"""Retrieval metrics against a brute-force reference, ties, block sizes, chance and Wilson intervals."""

import numpy as np
import pytest
import torch

from speech2face.metrics import (
    RANKS,
    chance_recall,
    recall_at_k,
    recall_from_ranks,
    recall_interval,
    recall_table,
    target_ranks,
)


def brute_force_ranks(queries, gallery, targets):
    """Full float64 similarity matrix, then each target's position in a sort of its query's row.

    Rows equal after normalisation get their first copy's similarity, so duplicates tie exactly, and
    the sort puts the target's copies first among equals (the optimistic tie rule).
    """
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    g = gallery / np.linalg.norm(gallery, axis=1, keepdims=True)
    _, first_copy_index, copy_group = np.unique(g, axis=0, return_index=True, return_inverse=True)
    copy_group = copy_group.ravel()
    similarity = (q @ g.T)[:, first_copy_index[copy_group]]
    ranks = []
    for i, target in enumerate(targets):
        not_target_copy = copy_group != copy_group[target]
        order = np.lexsort((not_target_copy, -similarity[i]))  # last key is the primary one
        ranks.append(int(np.flatnonzero(~not_target_copy[order])[0]) + 1)
    return np.array(ranks)


@pytest.fixture(scope="module")
def retrieval_case():
    rng = np.random.default_rng(0)
    gallery = rng.normal(size=(40, 16)).astype(np.float32)
    gallery[5] = gallery[3]  # exact duplicate
    gallery[7] = 2 * gallery[3]  # same direction, bitwise equal after normalisation
    targets = rng.integers(0, 40, size=90)  # 90 queries on 40 items: many share one
    targets[:6] = [3, 5, 7, 3, 5, 7]
    queries = (gallery[targets] + rng.normal(scale=3.0, size=(90, 16))).astype(np.float32)
    queries[0] = gallery[3]  # the duplicates tie with the target exactly at the top
    return queries, gallery, targets


def test_ranks_match_brute_force_with_ties_and_shared_targets(retrieval_case):
    queries, gallery, targets = retrieval_case
    ranks = target_ranks(queries, gallery, targets)
    expected = brute_force_ranks(queries.astype(np.float64), gallery.astype(np.float64), targets)
    np.testing.assert_array_equal(ranks, expected)
    assert ranks[0] == 1  # optimistic: the two copies that tie with the target do not beat it
    assert (ranks == 1).mean() < 0.5 and ranks.max() > 20  # a real spread of ranks, not a trivial case


def test_recall_at_k_matches_brute_force_and_caps_k_at_the_gallery_size(retrieval_case):
    queries, gallery, targets = retrieval_case
    recall = recall_at_k(queries, gallery, targets)
    expected_ranks = brute_force_ranks(queries.astype(np.float64), gallery.astype(np.float64), targets)
    assert list(recall) == list(RANKS)
    for k in RANKS:
        assert recall[k] == pytest.approx(np.mean(expected_ranks <= k))
    assert recall[50] == recall[75] == recall[100] == 1.0  # 40 items: K >= N always hits
    assert recall[1] < recall[10] < 1.0


def test_block_sizes_and_input_types_do_not_change_ranks(retrieval_case):
    queries, gallery, targets = retrieval_case
    reference = target_ranks(queries, gallery, targets)
    for block_size, gallery_chunk in [(1, 1), (7, 5), (13, 40), (1024, 8192), (90, 3)]:
        ranks = target_ranks(queries, gallery, targets, block_size=block_size, gallery_chunk=gallery_chunk)
        np.testing.assert_array_equal(ranks, reference)
    as_tensors = target_ranks(torch.from_numpy(queries), torch.from_numpy(gallery), torch.from_numpy(targets))
    np.testing.assert_array_equal(as_tensors, reference)


def test_a_gallery_given_as_rows_of_a_bigger_array_ranks_as_its_copy(retrieval_case):
    queries, gallery, targets = retrieval_case
    # the gallery's rows shuffled among others, with a duplicate of a target row outside the gallery
    rng = np.random.default_rng(1)
    extra = np.vstack([rng.standard_normal((25, gallery.shape[1])), gallery[targets[:1]]]).astype(gallery.dtype)
    features = np.vstack([gallery, extra])
    order = rng.permutation(len(features))
    features = features[order]
    gallery_rows = np.argsort(order)[: len(gallery)]  # where each gallery row went
    reference = target_ranks(queries, gallery, targets)
    for gallery_chunk in (3, 1024):
        ranks = target_ranks(queries, features, targets, gallery_chunk=gallery_chunk, gallery_rows=gallery_rows)
        np.testing.assert_array_equal(ranks, reference)
    with pytest.raises(ValueError, match="index the gallery array's"):
        target_ranks(queries, features, targets, gallery_rows=[0, len(features)])


def test_hand_made_ranks():
    e1, e2 = [1.0, 0.0], [0.0, 1.0]
    gallery = np.array([e1, e1, e2, [-1.0, 0.0]])
    queries = np.array([e1, e1, e2, [0.6, 0.8], [1.0, 1.0]])
    # e1 vs its copies: rank 1 for either; e2 query, target e1: e2 beats it -> 2;
    # (0.6, 0.8) vs target -e1 (similarity -0.6): the two e1 (0.6) and e2 (0.8) beat it -> 4;
    # (1, 1) vs target e2: the e1 copies tie exactly (products with 0 are exact) and do not beat it -> 1
    ranks = target_ranks(queries, gallery, [0, 1, 0, 3, 2])
    np.testing.assert_array_equal(ranks, [1, 1, 2, 4, 1])
    assert recall_from_ranks([1, 1, 2, 4], gallery_size=4, ks=(1, 2, 3, 100)) == {1: 0.5, 2: 0.75, 3: 0.75, 100: 1.0}


def test_bad_inputs_are_refused():
    gallery = np.eye(3)
    with pytest.raises(ValueError, match="zero or not finite"):
        target_ranks(np.array([[0.0, 0.0, 0.0]]), gallery, [0])
    with pytest.raises(ValueError, match="zero or not finite"):
        target_ranks(np.array([[np.nan, 1.0, 0.0]]), gallery, [0])  # a NaN prediction is no free hit
    late_zero = np.vstack([np.eye(3), np.zeros((1, 3))])  # queries are checked a block at a time: named as a whole
    with pytest.raises(ValueError, match=r"queries rows \[3\] \(1 of rows 2-3\)"):
        target_ranks(late_zero, gallery, [0, 1, 2, 0], block_size=2)
    with pytest.raises(ValueError, match="lie in \\[0, 3\\)"):
        target_ranks(np.eye(3), gallery, [0, 1, 3])
    with pytest.raises(ValueError, match="lie in \\[0, 2\\)"):  # a gallery of 2 rows of the array
        target_ranks(np.eye(3), gallery, [0, 1, 2], gallery_rows=[2, 0])
    with pytest.raises(ValueError, match="out_dim matches"):
        target_ranks(np.ones((2, 4)), gallery, [0, 1])
    with pytest.raises(ValueError, match="integer gallery indices"):
        target_ranks(np.eye(3), gallery, [0.0, 1.0, 2.0])


def test_chance_recall():
    assert chance_recall(1, 604) == pytest.approx(1 / 604)
    assert chance_recall(100, 604) == pytest.approx(100 / 604)
    assert chance_recall(100, 40) == 1.0


def wilson_by_definition(hits, n, z):
    """The p for which |hits/n - p| = z * sqrt(p (1 - p) / n): roots of a quadratic."""
    phat = hits / n
    roots = np.roots([1 + z * z / n, -(2 * phat + z * z / n), phat * phat])
    return tuple(sorted(roots.real))


def test_wilson_interval():
    lo, hi = recall_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-4)  # the textbook 0-of-10 Wilson bound
    assert recall_interval(51, 100) == pytest.approx(wilson_by_definition(51, 100, 1.959963984540054), rel=1e-9)
    assert recall_interval(308, 604, 0.99) == pytest.approx(wilson_by_definition(308, 604, 2.5758293035489), rel=1e-9)
    assert recall_interval(10, 10)[1] == 1.0


def test_recall_table_rows():
    rows = recall_table([1, 1, 2, 4], gallery_size=4, ks=(1, 5))
    assert [(r["k"], r["recall"], r["hits"], r["chance"]) for r in rows] == [(1, 0.5, 2, 0.25), (5, 1.0, 4, 1.0)]
    assert rows[0]["lo"] < 0.5 < rows[0]["hi"]
    assert (rows[0]["lo"], rows[0]["hi"]) == recall_interval(2, 4)
