"""Data written by earlier versions still evaluates, predicts and serves: a version-1 manifest, clips with the
stored spectrogram and without face_landmarks (tests/integration/test_train.py trains on such data too)."""

import json

import numpy as np
import pytest

from speech2face import dataset
from speech2face.audio import load_audio
from speech2face.dataset import Layout, Manifest
from speech2face.inference import Gallery, gallery_indices, predict_features, read_model, read_rows
from speech2face.inference.gallery import PREDICTION
from speech2face.metrics import target_ranks
from tests.support.cli import check, run
from tests.support.old_data import make_old_layout

SPEECH = "/usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-0870.wav"


@pytest.fixture(scope="module")
def old_data(small_dataset, tmp_path_factory):
    data = make_old_layout(small_dataset, tmp_path_factory.mktemp("old") / "data")
    manifest = Manifest.read(str(data))
    assert (manifest.version, manifest.layout) == (1, Layout(store_spectrogram=True, store_landmarks=False))
    return data


def test_old_data_evaluates_and_predicts_as_the_current_layout_does(old_data, small_dataset, tiny_model,
                                                                    ray_address, tmp_path):  # fmt: skip
    check(run("trainer.evaluate", "--data", str(old_data), "--model", str(tiny_model), "--split", "test",
              "--out", str(tmp_path / "eval"), ray_address=ray_address))  # fmt: skip
    check(run("trainer.predict", "--model", str(tiny_model), "--audio", SPEECH, "--gallery", str(old_data),
              "--out", str(tmp_path / "predict")))  # fmt: skip
    evaluated = json.loads((tmp_path / "eval" / "eval.json").read_text())
    predicted = json.loads((tmp_path / "predict" / "predict.json").read_text())

    # the same model on the current layout of the same clips, through the inference library
    model = read_model(str(tiny_model))[0]
    rows = read_rows(str(small_dataset), dataset.TEST, [dataset.YTID, dataset.FACE_FEATURE], model=model)
    ids = rows[dataset.CLIP_ID].astype(str)
    gallery, targets = gallery_indices(rows[dataset.YTID].astype(str), ids, "ytid")
    ranks = target_ranks(rows[PREDICTION], rows[dataset.FACE_FEATURE], targets, gallery_rows=gallery)
    assert [(q[dataset.CLIP_ID], q["rank"]) for q in evaluated["per_query"]] == list(
        zip(ids, ranks.tolist(), strict=True)
    )
    feature = predict_features(model, load_audio(SPEECH)[None])[0]
    expected = Gallery(str(small_dataset)).nearest(feature, 5)
    assert [m[dataset.CLIP_ID] for m in predicted["top"]] == [m[dataset.CLIP_ID] for m in expected]
    np.testing.assert_allclose([m["similarity"] for m in predicted["top"]], [m["similarity"] for m in expected],
                               rtol=1e-5)  # fmt: skip


def test_old_data_is_a_gallery_the_service_loads(old_data, tiny_model):
    from serving.app import build

    application = build({"model": str(tiny_model), "gallery": str(old_data), "top": "3"})  # what `serve run` calls
    assert application is not None
    gallery = Gallery(str(old_data))  # what each replica loads
    assert len(gallery) > 0 and len(gallery.nearest(gallery.unit_faces[0], 3)) == 3
