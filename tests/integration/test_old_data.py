"""Data written by earlier versions still resumes, evaluates, predicts and serves: a version-1 manifest, every
split's clips in clips/*.parquet, with the stored spectrogram and without face_landmarks
(tests/integration/test_train.py trains on such data too)."""

import json

import numpy as np
import pyarrow as pa
import pytest

from pipelines import preprocess
from pipelines.preprocess.run import write_clips
from speech2face import dataset, shards
from speech2face.audio import load_audio
from speech2face.dataset import Layout, Manifest
from speech2face.inference import Gallery, gallery_indices, predict_features, read_model, read_rows
from speech2face.inference.gallery import PREDICTION
from speech2face.metrics import target_ranks
from tests.support.cli import check, run
from tests.support.old_data import make_old_layout

OLD_LAYOUT = Layout(
    store_spectrogram=True, store_landmarks=False, split_partitioned=False, store_source=False, store_download=False
)
SPEECH = "/usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-0870.wav"


@pytest.fixture(scope="module")
def old_data(small_dataset, tmp_path_factory):
    data = make_old_layout(small_dataset, tmp_path_factory.mktemp("old") / "data")
    manifest = Manifest.read(str(data))
    assert (manifest.version, manifest.layout) == (1, OLD_LAYOUT)
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
    from serving.app import BuildArgsModel, build

    # what `serve run serving.app:build model=... gallery=... top=3` calls, strings and all
    application = build(BuildArgsModel.model_validate({"model": str(tiny_model), "gallery": str(old_data), "top": "3"}))
    assert application is not None
    gallery = Gallery(str(old_data))  # what each replica loads
    assert len(gallery) > 0 and len(gallery.nearest(gallery.unit_faces[0], 3)) == 3


def test_old_data_resumes_with_nothing_to_do_and_keeps_its_layout(small_corpus, small_dataset, tmp_path, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)  # nothing to do: no Ray is started
    data = make_old_layout(small_dataset, tmp_path / "old")
    files = sorted((data / "clips").rglob("*.parquet"))
    corpus = small_corpus.directory
    config = preprocess.PreprocessConfig(
        csv=str(corpus / "avspeech_train.csv"), test_csv=str(corpus / "avspeech_test.csv"), out=str(data),
        face_embedder="dlib", val_fraction=0.4, url_template="http://127.0.0.1:9/{ytid}.mp4",
    )  # fmt: skip
    manifest = preprocess.run(config)
    assert manifest.processed_this_run == 0 and manifest.counts == Manifest.read(str(small_dataset)).counts
    assert manifest.layout == OLD_LAYOUT
    assert Manifest.read(str(data)).layout == manifest.layout  # recorded for the next resume
    assert sorted((data / "clips").rglob("*.parquet")) == files  # nothing moved or rewritten


@pytest.mark.parametrize("partitioned", [True, False], ids=["new output", "output begun before partitioning"])
def test_new_clips_go_where_the_outputs_layout_puts_them(ray_session, tmp_path, partitioned):
    import ray.data

    ids = [f"clip{i}" for i in range(9)]
    splits = [("train", "val", "test")[i % 3] for i in range(9)]
    rows = ray.data.from_arrow(pa.table({dataset.CLIP_ID: ids, dataset.SPLIT: splits, dataset.X: [0.5] * 9}))
    config = preprocess.PreprocessConfig(csv="x.csv", out=str(tmp_path), split_partitioned=partitioned)
    write_clips(rows, str(tmp_path / "clips"), config, file_rows=4)

    files = sorted((tmp_path / "clips").rglob("*.parquet"))
    assert {f.parent.name for f in files} == ({"split=test", "split=train", "split=val"} if partitioned else {"clips"})
    for split in ("train", "val", "test"):
        table = shards.read_table(str(tmp_path / "clips"), [dataset.CLIP_ID, dataset.SPLIT], split)
        assert sorted(table[dataset.CLIP_ID].to_pylist()) == [i for i, s in zip(ids, splits, strict=True) if s == split]
        assert set(table[dataset.SPLIT].to_pylist()) == {split}
