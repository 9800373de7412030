"""trainer.batch_inference: the encoder over a split as Ray Data batch inference (trainer.evaluate's path)."""

import numpy as np
import pytest

from speech2face.errors import InputError
from speech2face.inference import read_model, read_rows
from trainer.encoder.batch_inference import predict_split


def test_the_cluster_predicts_what_the_local_encoder_does(small_dataset, tiny_model, ray_session):
    rows = predict_split(str(small_dataset), "test", str(tiny_model), batch_size=2)
    local = read_rows(str(small_dataset), "test", ["ytid", "face_feature"], model=read_model(str(tiny_model))[0])
    assert list(rows["clip_id"]) == list(local["clip_id"]) and len(rows["clip_id"]) == 4  # sorted, every test clip
    assert set(rows) == {"clip_id", "split", "ytid", "speaker", "face_feature", "prediction"}  # no waveform
    np.testing.assert_array_equal(rows["face_feature"], local["face_feature"])
    np.testing.assert_allclose(rows["prediction"], local["prediction"], rtol=1e-4, atol=1e-5)


def test_an_empty_split_is_refused_before_ray_starts(small_dataset, tiny_model):
    with pytest.raises(InputError, match="no nosuch clips"):
        predict_split(str(small_dataset), "nosuch", str(tiny_model))
