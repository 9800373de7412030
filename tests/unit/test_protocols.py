"""The published protocols' metrics on cases whose answer is known, and AUC / EER against scikit-learn."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score, roc_curve

from speech2face.protocols import (
    attribute_correlations,
    drawn_gallery_ranks,
    drawn_recall,
    equal_error_rate,
    identity_means,
    matching,
    rank_cdf,
    rank_summary,
    roc_auc,
)


def test_identity_means_average_unit_features_in_first_seen_order():
    features = np.array([[3.0, 0.0], [0.0, 0.0 + 5.0], [0.0, 2.0], [1.0, 0.0]])
    names, means = identity_means(features, ["b", "a", "a", "b"])
    assert names == ["b", "a"]
    np.testing.assert_allclose(means, [[1.0, 0.0], [0.0, 1.0]])
    names, means = identity_means(np.array([[2.0, 0.0], [0.0, 7.0]]), ["x", "x"])
    np.testing.assert_allclose(means, [[0.5, 0.5]])  # the mean of the unit vectors, not of the raw ones


def test_features_equal_to_their_targets_rank_first_in_every_draw():
    rng = np.random.default_rng(1)
    items = rng.normal(size=(300, 32))
    ranks = drawn_gallery_ranks(items, items, np.arange(300), gallery_size=100, draws=5)
    assert ranks.shape == (5, 300) and (ranks == 1).all()
    r1 = drawn_recall(ranks, 100, ks=(1,))[0]
    assert (r1.recall, r1.hi, r1.chance) == (1.0, 1.0, 0.01)
    assert rank_summary(ranks, 100) == {"median_rank": 1.0, "mean_rank": 1.0, "chance_rank": 50.5, "gallery_size": 100}


def test_copies_of_the_true_item_tie_with_it():
    rng = np.random.default_rng(7)
    items = rng.normal(size=(50, 8)).astype(np.float32)
    items[25:] = items[:25] * 3.0  # every item has a copy (another scale: the same direction)
    ranks = drawn_gallery_ranks(items, items, np.arange(50), gallery_size=50, draws=1)
    assert (ranks == 1).all()


def test_random_features_land_within_the_interval_of_chance():
    rng = np.random.default_rng(2)
    items, queries = rng.normal(size=(2000, 64)), rng.normal(size=(2000, 64))
    ranks = drawn_gallery_ranks(queries, items, np.arange(2000), gallery_size=500, draws=4, seed=3)
    assert ranks.min() >= 1 and ranks.max() <= 500
    for row in drawn_recall(ranks, 500, ks=(1, 10, 50, 100)):
        assert row.lo <= row.chance <= row.hi, row
    assert rank_summary(ranks, 500)["median_rank"] == pytest.approx(250.5, rel=0.1)


def test_galleries_of_100_of_200_identities_over_draws_give_the_known_share():
    """Identity i's query is 0.6 e_i + 0.8 e_(i+1): identity i+1 outranks the true one whenever it is in
    the gallery, which a gallery of 100 of 200 identities holding i does with probability 99/199."""
    faces = np.repeat(np.eye(200), 2, axis=0)  # two faces per identity
    names, means = identity_means(faces, np.repeat([f"id{i:03d}" for i in range(200)], 2))
    queries = 0.6 * means + 0.8 * np.roll(means, -1, axis=0)
    ranks = drawn_gallery_ranks(queries, means, np.arange(200), gallery_size=100, draws=400, seed=4)
    assert set(np.unique(ranks)) == {1, 2}
    r1, r2 = drawn_recall(ranks, 100, ks=(1, 2))
    assert r1.recall == pytest.approx(1 - 99 / 199, abs=0.01)
    assert r1.lo <= 1 - 99 / 199 <= r1.hi and r2.recall == 1.0


def test_galleries_drawn_from_a_pool_of_rows_hold_each_query_own_item():
    rng = np.random.default_rng(8)
    items = rng.normal(size=(400, 16))
    pool = np.arange(0, 400, 4)  # one row in four may be drawn; the targets are any rows
    ranks = drawn_gallery_ranks(items, items, np.arange(400), gallery_size=100, draws=3, pool=pool)
    assert (ranks == 1).all()
    worst = drawn_gallery_ranks(-items, items, np.arange(400), gallery_size=100, draws=1, pool=pool)
    assert (worst == 100).all()  # every distractor is nearer: 99 of them, the pool's, plus the item itself
    with pytest.raises(ValueError, match="gallery_size must lie in 1..100"):
        drawn_gallery_ranks(items, items, np.arange(400), gallery_size=101, draws=1, pool=pool)


def test_gallery_size_and_draws_are_checked():
    items = np.eye(3)
    with pytest.raises(ValueError, match="gallery_size must lie in 1..3"):
        drawn_gallery_ranks(items, items, [0, 1, 2], gallery_size=4, draws=1)
    with pytest.raises(ValueError, match="draws must be >= 1"):
        drawn_gallery_ranks(items, items, [0, 1, 2], gallery_size=2, draws=0)


@pytest.mark.parametrize("seed", range(5))
def test_auc_and_eer_match_scikit_learn_with_ties(seed):
    rng = np.random.default_rng(seed)
    labels = rng.random(301) < 0.4
    scores = np.round(rng.normal(size=301) + labels * rng.uniform(0, 2), 1)  # rounded: many ties
    assert roc_auc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    false_accept, true_accept, _ = roc_curve(labels, scores)
    false_reject = 1 - true_accept
    after = int(np.argmax(false_reject - false_accept <= 0))
    gaps = (false_reject - false_accept)[[after - 1, after]]
    share = gaps[0] / (gaps[0] - gaps[1])
    expected = false_accept[after - 1] + share * (false_accept[after] - false_accept[after - 1])
    assert equal_error_rate(scores, labels) == pytest.approx(expected, abs=1e-12)


def test_matching_of_perfect_and_random_voices():
    rng = np.random.default_rng(5)
    faces = rng.normal(size=(400, 32))
    identities = np.arange(400) // 2
    perfect = matching(faces, faces, identities)
    assert (perfect["accuracy_1_to_2"], perfect["roc_auc"], perfect["eer"]) == (1.0, 1.0, 0.0)
    random = matching(rng.normal(size=(400, 32)), faces, identities, seed=6)
    assert random["accuracy_lo"] <= 0.5 <= random["accuracy_hi"]
    assert random["roc_auc"] == pytest.approx(0.5, abs=0.06) and random["eer"] == pytest.approx(0.5, abs=0.06)
    with pytest.raises(ValueError, match="at least two identities"):
        matching(faces[:4], faces[:4], ["one"] * 4)


def test_the_rank_cdf_climbs_to_every_query_at_the_gallery_size():
    ranks = np.array([[1, 2, 2, 4], [1, 1, 3, 4]])
    assert rank_cdf(ranks, 4, points=4) == [(1, 0.375), (2, 0.625), (3, 0.75), (4, 1.0)]


def test_attribute_correlations_of_the_same_measures_are_one_and_random_pairs_near_zero():
    from speech2face.landmarks import craniofacial_measures

    rng = np.random.default_rng(9)
    points = rng.uniform(0, 224, size=(200, 68, 2))
    measures = craniofacial_measures(points)
    assert set(measures) == {"nasal_index", "face_width_to_height", "mouth_to_face_width", "eye_width_to_spacing"}
    nose = np.linalg.norm(points[:, 31] - points[:, 35], axis=1) / np.linalg.norm(points[:, 27] - points[:, 33], axis=1)
    np.testing.assert_allclose(measures["nasal_index"], nose, rtol=1e-5)  # the points as float32
    same = attribute_correlations(measures, measures, shuffles=200)
    for figures in same.values():
        assert figures["correlation"] == pytest.approx(1.0)
        assert figures["random_pairs_lo"] <= 0 <= figures["random_pairs_hi"] < 0.3
