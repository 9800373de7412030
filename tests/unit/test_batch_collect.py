"""How evaluation's batch inference sizes its actors and gathers their output on the driver (no Ray started)."""

import numpy as np
import pytest

from trainer.encoder.batch_inference import _collect, _sorted_by_clip, actor_pool, torch_threads


def test_one_actor_a_gpu_or_cpu_actors_that_leave_ray_data_a_cpu():
    gpu = actor_pool({"CPU": 64.0, "GPU": 8.0}, cpus_per_actor=2)
    assert (gpu["num_gpus"], gpu["num_cpus"], gpu["compute"].max_size) == (1, 1, 8)
    cpu = actor_pool({"CPU": 9.0}, cpus_per_actor=2)
    assert "num_gpus" not in cpu and (cpu["num_cpus"], cpu["compute"].max_size) == (2, 4)
    small = actor_pool({"CPU": 2.0}, cpus_per_actor=2)  # a laptop: one actor of 1 CPU, the other for reads
    assert (small["num_cpus"], small["compute"].max_size) == (1, 1)
    assert torch_threads({"CPU": 2.0}, 2) == 2  # ... that runs on both: reads are light
    assert torch_threads({"CPU": 9.0}, 2) == 2 and torch_threads({"CPU": 64.0, "GPU": 8.0}, 2) == 1


@pytest.mark.parametrize("expected_rows", [2, 5, 9])  # the manifest counting fewer, exactly, more rows
def test_batches_are_collected_into_one_array_a_column_whatever_the_manifest_counts(expected_rows):
    ids = [np.array(["c", "a"], dtype=object), np.array(["b", "d", "e"], dtype=object)]
    batches = [
        {"clip_id": ids[0], "prediction": np.ones((2, 3), np.float32)},
        {"clip_id": ids[1], "prediction": np.zeros((3, 3), np.float32)},
    ]
    rows = _collect(iter(batches), expected_rows)
    assert list(rows["clip_id"]) == ["c", "a", "b", "d", "e"] and rows["prediction"].dtype == np.float32
    np.testing.assert_array_equal(rows["prediction"].sum(axis=1), [3, 3, 0, 0, 0])


def test_rows_are_sorted_by_clip_with_the_features_permuted_in_place():
    rng = np.random.default_rng(0)
    ids = np.array([f"clip{i:03d}" for i in rng.permutation(200)], dtype=object)
    features = rng.standard_normal((200, 4)).astype(np.float32)
    expected = features[np.argsort(ids.astype(str))]
    rows = _sorted_by_clip({"clip_id": ids, "face_feature": features})
    assert list(rows["clip_id"]) == sorted(ids)
    assert rows["face_feature"] is features  # no second array of the split's size
    np.testing.assert_array_equal(features, expected)
