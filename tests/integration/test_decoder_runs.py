"""trainer.train_decoder, trainer.evaluate_decoder and trainer.predict --decoder on the session's real data.

``small_dataset`` (conftest.py) went through the real pipeline, so its clips carry dlib's
face_landmarks; a copy without the column stands in for data preprocessed before it existed.
``decoder_runs`` (conftest.py) trained the session's tiny decoder: 1 epoch, then resumed to 2.
"""

import json
import shutil

import numpy as np
import pyarrow.parquet as pq
import torch
from PIL import Image
from ray.data.dataset import MaterializedDataset

from speech2face import storage
from speech2face.dataset import Manifest
from speech2face.decoder import FaceDecoder
from speech2face.inference import read_decoder, save_decoder
from tests.support.cli import TINY_RUN, read_metrics, run
from trainer.decoder.evaluation import DIFFERENT, EvaluateDecoderConfig, judge_embedder

SPEECH = "/usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-0870.wav"


def one_line_error(result, *fragments: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


def test_a_run_writes_its_files_and_resumes(decoder_runs, small_dataset):
    first, second, run_dir = decoder_runs["first"], decoder_runs["second"], decoder_runs["dir"]
    assert first.returncode == 0, first.stderr[-3000:]
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resuming" in second.stdout + second.stderr and "epoch 2/2" in second.stdout + second.stderr
    metrics = (run_dir / "metrics.csv").read_text().splitlines()
    assert len(metrics) == 3  # header, epoch 1 (restored from the checkpoint), epoch 2
    for column in ("train_texture", "train_landmarks", "train_image", "val_total", "samples_per_s", "data_wait_frac"):
        assert column in metrics[0].split(","), metrics[0]
    for name in ("curves.png", "samples.png", "decoder.json", "config.json"):
        assert (run_dir / name).stat().st_size > 0, name
    assert list((run_dir / "tensorboard").iterdir())
    decoder, meta = read_decoder(str(run_dir / "decoder.safetensors"))
    manifest = json.loads((small_dataset / "manifest.json").read_text())
    assert meta["embedder"]["weights_sha256"] == manifest["embedder"]["weights_sha256"]
    assert (meta["preset"], meta["in_dim"], meta["resolution"]) == ("tiny", 128, 64)
    assert decoder.mean_shape.shape == (68, 2)
    assert json.loads((run_dir / "decoder.json").read_text())["epoch"] == 2  # the last epoch, not the lowest val loss
    clips = pq.read_table(small_dataset / "clips", columns=["split", "face_feature"]).to_pandas()
    train = np.stack(clips.loc[clips["split"] == "train", "face_feature"].to_numpy())
    units = train / np.linalg.norm(train, axis=1, keepdims=True)
    assert np.allclose(decoder.mean_feature.numpy(), units.mean(axis=0), atol=1e-6)  # centred on the train faces


def test_a_decoder_written_before_centring_still_draws_the_same_faces(decoder_runs, tmp_path):
    from safetensors import safe_open
    from safetensors.torch import save_file

    path = str(decoder_runs["dir"] / "decoder.safetensors")
    with safe_open(path, framework="pt") as file:
        metadata, state = file.metadata(), {name: file.get_tensor(name) for name in file.keys()}
    old = tmp_path / "decoder.safetensors"
    save_file({name: t for name, t in state.items() if name != "mean_feature"}, str(old), metadata=metadata)
    decoder, _ = read_decoder(str(old))
    assert not decoder.mean_feature.any()  # no centring: the first layer sees the normalised feature, as it did
    features = torch.randn(3, 128)
    expected = decoder.first(torch.nn.functional.normalize(features, dim=1) * 128**0.5)
    assert torch.allclose(decoder.first_layer(features), expected, atol=1e-5)


def test_data_without_landmarks_gets_them_from_dlib_once(small_dataset, ray_session, tmp_path):
    """Data preprocessed before face_landmarks existed: dlib computes the same points, materialized once."""
    from trainer.decoder.data import decoder_datasets, has_landmarks, mean_landmarks

    old = tmp_path / "old_data"
    shutil.copytree(small_dataset, old)
    for file in (old / "clips").rglob("*.parquet"):
        file.chmod(0o644)
        pq.write_table(pq.read_table(file).drop_columns(["face_landmarks"]), file)
    assert has_landmarks(str(small_dataset)) and not has_landmarks(str(old))

    def by_feature(dataset):
        rows = dataset.take_all()
        return {row["face_feature"].tobytes(): row for row in rows}

    stored, computed = (decoder_datasets(str(data), 64) for data in (small_dataset, old))
    assert isinstance(computed["train"], MaterializedDataset)  # not recomputed every epoch
    assert not isinstance(stored["train"], MaterializedDataset)
    for split in ("train", "val"):
        expected, got = by_feature(stored[split]), by_feature(computed[split])
        assert expected.keys() == got.keys() and expected
        for key, row in got.items():
            assert row["face"].shape == (64, 64, 3) and np.array_equal(row["face"], expected[key]["face"])
            # preprocessing found them on the crop, this on its JPEG: a pixel or two apart, of 224
            moved = np.abs(row["face_landmarks"] - expected[key]["face_landmarks"])
            assert moved.max() <= 3 and moved.mean() < 1, moved
    np.testing.assert_allclose(mean_landmarks(str(old), computed["train"]),
                               mean_landmarks(str(small_dataset), stored["train"]), atol=1)  # fmt: skip


def test_setups_that_cannot_work_fail_before_ray(small_dataset, tmp_path):
    no_train = tmp_path / "no_train"
    no_train.mkdir()
    manifest = json.loads((small_dataset / "manifest.json").read_text())
    manifest["counts"]["per_split"] = {"test": 4}
    (no_train / "manifest.json").write_text(json.dumps(manifest))
    common = ["--storage", str(tmp_path / "runs"), "--name", "x"]
    one_line_error(run("trainer.train_decoder", "--data", str(no_train), *common, timeout=60), "no 'train' clips")
    one_line_error(run("trainer.train_decoder", "--data", str(small_dataset), *common, "--loss-feature", "1",
                       timeout=60), "no gradients")  # fmt: skip
    flags = run("trainer.train_decoder", "--data", str(small_dataset), *common, "--flip", "2", timeout=60)
    assert flags.returncode == 2 and "--flip must be in [0, 1]" in flags.stderr


def test_evaluation_decodes_faces_and_voices_next_to_the_baselines(decoder_runs, small_dataset, tiny_model, tmp_path):
    decoder = decoder_runs["dir"] / "decoder.safetensors"
    result = run("trainer.evaluate_decoder", "--data", str(small_dataset), "--decoder", str(decoder),
                 "--model", str(tiny_model), "--out", str(tmp_path), timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "decoder_eval.json").read_text())
    names = [row["name"].strip() for row in report["rows"]]
    assert names == ["face -> decoded face", "nearest training face to the face", "voice -> decoded face",
                     "nearest training face to the voice", "mean training face"]  # fmt: skip
    assert report["queries"] == 4 and report["gallery_size"] == 2  # the two test speakers' videos
    for row in report["rows"]:
        assert [r["k"] for r in row["recall"]] == [1, 5, 10, 25] and row["recall"][0]["chance"] == 0.5
    for figures in report["drawings"].values():
        assert figures["landmark_error_px"] > 0 and 0 <= figures["hog_face_fraction"] <= 1
    assert Image.open(tmp_path / "decoder_eval.png").size[0] > 300  # three columns of faces
    # dlib data, no other network's weights: dlib judges, and the report says it is the target's own network
    assert (report["judge"], report["judge_label"]) == ("dlib", "same network as the target")
    nasal = report["craniofacial"]["nasal_index"]  # Oh et al.'s attributes, beside random pairings
    assert -1 <= nasal["correlation"] <= 1 and nasal["random_pairs_lo"] <= nasal["random_pairs_hi"]
    assert "nasal_index: voice-drawn against face-drawn r = " in result.stdout
    assert "embedded by dlib (same network as the target; the target is dlib)" in result.stdout
    judged = run(
        "trainer.evaluate_decoder",
        "--data",
        str(small_dataset),
        "--decoder",
        str(decoder),
        "--judge",
        "vggface",
        "--judge-weights",
        "random",
        "--out",
        str(tmp_path / "judged"),
        timeout=300,
    )
    assert judged.returncode == 0, judged.stderr[-3000:]
    other = json.loads((tmp_path / "judged" / "decoder_eval.json").read_text())
    assert (other["judge"], other["judge_label"]) == ("vggface", "judge differs from target")
    assert [row["name"].strip() for row in other["rows"]][0] == "face -> decoded face"
    assert "mean training face" in result.stdout
    # how far the voice's predictions lie from their faces, the figure train_decoder --feature-noise takes
    assert 0 < report["prediction_distance"] <= 2 and f"lies {report['prediction_distance']:.3f}" in result.stdout


def test_a_vggface_decoder_is_judged_by_dlib_by_default(vggface_data, tmp_path):
    """The judge is another network than the target's: dlib's embeddings of the drawings and of the stored
    crops, not VGG-Face's. The decoder is an initialised one (the judge's path, not drawing quality, is
    under test): trained decoders' figures are in benchmarks/RESULTS.md."""
    manifest = Manifest.read(str(vggface_data))
    decoder = tmp_path / "run" / "decoder.safetensors"
    decoder.parent.mkdir()
    torch.manual_seed(0)
    save_decoder(FaceDecoder(manifest.embedder.dim, "tiny"), str(decoder), {"embedder": manifest.embedder.to_dict()})
    out = tmp_path / "eval"
    result = run("trainer.evaluate_decoder", "--data", str(vggface_data), "--decoder", str(decoder), "--split",
                 "train", "--train-faces", "4", "--judge", "dlib", "--out", str(out), timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((out / "decoder_eval.json").read_text())
    assert (report["embedder"], report["judge"], report["judge_label"]) == ("vggface", "dlib", DIFFERENT)
    assert "embedded by dlib (judge differs from target; the target is vggface)" in result.stdout
    judged = report["rows"][0]
    assert judged["name"] == "face -> decoded face" and judged["recall"][0]["chance"] == 1 / report["gallery_size"]
    # without --judge, the same: dlib is at hand and is not the target's network
    default = EvaluateDecoderConfig(data=str(vggface_data), decoder=str(decoder))
    assert judge_embedder(default, manifest)[1:] == ("dlib", DIFFERENT)
    refused = run("trainer.evaluate_decoder", "--data", str(vggface_data), "--decoder", str(decoder), "--judge",
                  "unknown", timeout=60)  # fmt: skip
    assert refused.returncode == 2 and "argument --judge: invalid choice: 'unknown'" in refused.stderr


def test_predict_draws_the_face_of_a_voice(decoder_runs, tiny_model, tmp_path):
    decoder = decoder_runs["dir"] / "decoder.safetensors"
    result = run("trainer.predict", "--model", str(tiny_model), "--audio", SPEECH, "--decoder", str(decoder),
                 "--out", str(tmp_path), timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    face = Image.open(tmp_path / "sense_and_sensibility_01_austen_64kb-0870_face.png")
    assert face.size == (224, 224) and np.asarray(face).std() > 0


def test_a_decoder_of_other_features_or_no_decoder_at_all_is_refused(decoder_runs, small_dataset, tiny_model,
                                                                     tmp_path):  # fmt: skip
    decoder, meta = read_decoder(str(decoder_runs["dir"] / "decoder.safetensors"))
    other = tmp_path / "vggface_decoder.safetensors"
    save_decoder(decoder, str(other), {"embedder": {"name": "vggface", "dim": 128, "weights_sha256": "random"}})
    one_line_error(run("trainer.predict", "--model", str(tiny_model), "--audio", SPEECH, "--decoder", str(other),
                       "--out", str(tmp_path), timeout=120), "decodes vggface features", "uses dlib")  # fmt: skip
    one_line_error(run("trainer.evaluate_decoder", "--data", str(small_dataset), "--decoder", str(other),
                       timeout=120), "vggface")  # fmt: skip
    one_line_error(run("trainer.evaluate_decoder", "--data", str(small_dataset), "--decoder",
                       str(decoder_runs["dir"] / "decoder.safetensors"), "--judge", "vggface", timeout=120),
                   "--judge vggface needs --judge-weights")  # fmt: skip
    text = tmp_path / "notes.safetensors"
    text.write_text("not a decoder\n")
    whole = (decoder_runs["dir"] / "decoder.safetensors").read_bytes()
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(whole[: len(whole) * 9 // 10])
    for bad in (text, truncated):
        one_line_error(run("trainer.evaluate_decoder", "--data", str(small_dataset), "--decoder", str(bad),
                           timeout=120), "is not a face decoder")  # fmt: skip
    assert storage.exists(str(decoder_runs["dir"] / "decoder.json"))


def test_the_encoder_trains_with_the_face_decoder_loss(decoder_runs, small_dataset, ray_address, tmp_path):
    decoder = str(decoder_runs["dir"] / "decoder.safetensors")
    common = ["--data", str(small_dataset), "--storage", str(tmp_path), *TINY_RUN]
    refused = run("trainer.train", *common, "--name", "x", "--loss-decoder", "1", timeout=60)
    assert refused.returncode == 2 and "--loss-decoder needs --decoder" in refused.stderr
    result = run("trainer.train", *common, "--name", "dec-loss", "--epochs", "1", "--loss-decoder", "1",
                 "--decoder", decoder, ray_address=ray_address)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    (row,) = read_metrics(tmp_path / "dec-loss")
    assert row["train_decoder"] > 0 and row["val_decoder"] > 0
