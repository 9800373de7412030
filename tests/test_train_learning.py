"""The voice encoder learns voice -> face on the demo corpus, and evaluate/predict work on the result.

The demo corpus makes each speaker's espeak-ng voice a fixed function of their face's dlib
descriptor, so with --face-embedder dlib the link carries over to unseen speakers. Test speakers
are disjoint from training speakers (avspeech_test.csv). Training is seeded, with one worker and
ordered data, so the figures below repeat on the same machine; they are printed with the results.
"""

import json

import numpy as np
import pytest
from PIL import Image

from demo.run import COMMON_FLAGS
from speech2face import storage
from tests.cli import check, make_dataset, read_metrics, run

pytestmark = pytest.mark.timeout(1800)  # the module's fixtures make a 270-clip dataset and train on it

# The default demo corpus (90 speakers x 3 clips, 24 of them test-only) and the training `make demo` runs.
LEARNING_RUN = ["--epochs", "20", "--lr", "1e-3", *COMMON_FLAGS]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("learning_corpus")
    check(run("pipelines.demo_corpus", "--out", str(out), timeout=900))
    return out


@pytest.fixture(scope="module")
def data(corpus, ray_address, tmp_path_factory):
    out = tmp_path_factory.mktemp("learning_data")
    return make_dataset(corpus, out, "--face-embedder", "dlib", test_split=True, ray_address=ray_address)


@pytest.fixture(scope="module")
def run_dir(data, ray_address, tmp_path_factory):
    storage_dir = tmp_path_factory.mktemp("runs")
    result = check(run("trainer.train", "--data", str(data), "--storage", str(storage_dir), "--name", "learn",
                       *LEARNING_RUN, timeout=1200, ray_address=ray_address))  # fmt: skip
    assert "epoch 20/20" in result.stdout + result.stderr
    return storage_dir / "learn"


@pytest.fixture(scope="module")
def evaluation(run_dir, data):
    out = run_dir / "eval-test"
    result = check(run("trainer.evaluate", "--data", str(data), "--model", str(run_dir / "model.safetensors"),
                       "--split", "test", "--gallery-by", "ytid", "--out", str(out), timeout=300))  # fmt: skip
    return result.stdout, json.loads((out / "eval.json").read_text()), out


def test_learns_voice_to_face_on_unseen_speakers(evaluation, run_dir, capsys):
    table, report, _ = evaluation
    recall = {row["k"]: row for row in report["recall"]}
    with capsys.disabled():  # the exact figures, in the test output
        print(f"\n[learning] {run_dir.name}: best epoch {report['model_info']['epoch']}, "
              f"metrics per epoch:\n{storage.read_bytes(str(run_dir / 'metrics.csv')).decode()}{table}")  # fmt: skip
    assert report["gallery_size"] >= 20 and report["queries"] >= 3 * 20
    assert recall[1]["chance"] == pytest.approx(1 / report["gallery_size"])
    assert recall[1]["recall"] >= 3 * recall[1]["chance"], table
    assert recall[5]["recall"] >= 2 * recall[5]["chance"], table
    assert read_metrics(run_dir)[-1]["train_loss"] < read_metrics(run_dir)[0]["train_loss"]


def test_evaluate_prints_table_and_writes_json_and_retrieval_png(evaluation):
    table, report, out = evaluation
    for k in (1, 5, 10, 25, 50, 75, 100):
        assert f"R@{k} " in table
    assert "95 % interval" in table and "chance" in table and "one face per video" in table
    assert [row["k"] for row in report["recall"]] == [1, 5, 10, 25, 50, 75, 100]
    assert all(row["lo"] <= row["recall"] <= row["hi"] for row in report["recall"])
    assert len(report["per_query"]) == report["queries"]
    assert report["model_info"]["embedder"]["name"] == "dlib"
    with Image.open(out / "retrieval.png") as image:
        image.verify()
    with Image.open(out / "retrieval.png") as image:
        width, height = image.size
        assert image.format == "PNG" and width >= 600 and height >= 600  # 6 rows of 6 faces


def test_evaluate_clip_gallery_and_sampled_gallery(run_dir, data, tmp_path):
    model = str(run_dir / "model.safetensors")
    by_clip = check(run("trainer.evaluate", "--data", str(data), "--model", model, "--gallery-by", "clip",
                        "--out", str(tmp_path / "clip"), timeout=300))  # fmt: skip
    report = json.loads((tmp_path / "clip" / "eval.json").read_text())
    assert report["gallery_size"] == report["queries"] and "one face per clip" in by_clip.stdout
    check(run("trainer.evaluate", "--data", str(data), "--model", model, "--gallery-size", "10",
              "--out", str(tmp_path / "ten"), timeout=300))  # fmt: skip
    sampled = json.loads((tmp_path / "ten" / "eval.json").read_text())
    assert sampled["gallery_size"] == 10 and sampled["recall"][2]["recall"] == 1.0  # R@10 of 10 faces


def test_predict_ranks_the_speakers_face_from_raw_audio(evaluation, run_dir, data, corpus, tmp_path):
    _, report, _ = evaluation
    best = min(report["per_query"], key=lambda q: (q["rank"], q["clip_id"]))
    assert best["rank"] <= 10
    start = float(best["clip_id"].split("_")[-2])  # clip ids are <ytid>_<start>_<end>
    out = tmp_path / "predict"
    result = check(run("trainer.predict", "--model", str(run_dir / "model.safetensors"),
                       "--audio", str(corpus / f"{best['ytid']}.mp4"), "--start", str(start),
                       "--gallery", str(data), "--gallery-split", "test", "--top", "10", "--out", str(out),
                       timeout=300))  # fmt: skip
    predicted = json.loads((out / "predict.json").read_text())
    assert [m["rank"] for m in predicted["top"]] == list(range(1, 11))
    assert best["ytid"] in [m["ytid"] for m in predicted["top"]], result.stdout
    feature = np.load(out / f"{best['ytid']}.npy")
    assert feature.shape == (128,) and np.all(np.isfinite(feature))
    with Image.open(out / "faces.png") as image:
        assert image.format == "PNG" and image.size[0] >= 600
    assert f"ytid {best['ytid']}" in result.stdout
