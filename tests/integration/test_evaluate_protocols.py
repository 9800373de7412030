"""trainer.evaluate's published protocols, galleries and audio lengths on the session's demo data, and the
inputs it refuses."""

import json
import shutil

import numpy as np
import pytest

from speech2face import shards
from speech2face.dataset import FACE_FEATURE, TRAIN, clips_uri, tensor_column
from speech2face.inference import gallery_indices
from speech2face.inference.retrieval import BY_CLIP
from speech2face.metrics import RANKS, recall_table, unit_vectors
from tests.support.cli import check, run
from trainer.encoder import protocol_reports
from trainer.encoder.evaluation import format_table, sample_gallery
from trainer.encoder.protocol_reports import training_face_baselines
from trainer.evaluate import main as evaluate_main


def test_every_protocol_beside_chance_with_controls_audio_lengths_and_a_loud_leak(small_dataset, tiny_model,
                                                                                  ray_address, tmp_path):  # fmt: skip
    leaky = tmp_path / "leaky"  # the test split (2 videos) plus train's 3 videos: 3 of its 5 videos leak
    shutil.copytree(small_dataset, leaky)
    (train_file,) = sorted((leaky / "clips" / "split=train").glob("*.parquet"))
    shutil.copy(train_file, leaky / "clips" / "split=test" / "from-train.parquet")
    out = tmp_path / "eval"
    result = check(run("trainer.evaluate", "--data", str(leaky), "--model", str(tiny_model), "--split", "test",
                       "--protocols", "clip,oh,identity,matching", "--draws", "3", "--seconds", "1,3,6",
                       "--out", str(out), ray_address=ray_address))  # fmt: skip
    report = json.loads((out / "eval.json").read_text())
    assert list(report["protocols"]) == ["clip", "oh", "identity", "matching"]
    oh, identity, matching = (report["protocols"][name] for name in ("oh", "identity", "matching"))
    # 5 videos, no speakers: galleries of all of them, said plainly
    assert report["gallery_size"] == 5 and report["queries"] == 10
    assert oh["gallery_size"] == 5 and oh["gallery_size_asked"] == 5000 and oh["draws"] == 3
    assert "galleries of 5 faces (one per video); the split has only 5" in result.stdout
    assert identity["identities"] == "video id" and identity["gallery_size"] == identity["identity_count"] == 5
    for row in oh["recall"] + identity["recall"]:
        assert 0 <= row["lo"] <= row["recall"] <= row["hi"] <= 1 and row["chance"] == min(row["k"], 5) / 5
    assert matching["accuracy_chance"] == 0.5 and 0 <= matching["roc_auc"] <= 1 and matching["pairs"] == 10
    assert (out / "oh_rank_cdf.png").stat().st_size > 0 and oh["rank_cdf"][-1] == [5, 1.0]  # every rank <= N
    assert "SF2F (Bai et al. 2022) R@10 29.8 %" in result.stdout and "Oh et al. (2019), 5,000 faces" in result.stdout

    controls = report["controls"]
    assert set(controls) == {"shuffled_voices", "mean_training_face", "nearest_training_face"}
    assert "Controls (clip protocol" in result.stdout and "nearest training face: R@1" in result.stdout
    for table in controls.values():
        assert [row["k"] for row in table] == [1, 5] and table[0]["chance"] == 0.2

    assert report["leak_check"] == {"identities": "video id", "in_split": 5, "also_in_train": 3}
    assert "WARNING: LEAK: 3 of the 5 video ids of test also have clips in train" in result.stdout

    lengths = report["audio_length"]
    assert [row["seconds"] for row in lengths] == [1, 3, 6] and "Audio length (clip protocol" in result.stdout
    assert [row["k"] for row in lengths[0]["recall"]] == [1, 5, 10]
    # 6 s is the whole stored waveform: the same predictions, so the same figures as the main table
    assert lengths[2]["recall"] == [row for row in report["recall"] if row["k"] in (1, 5, 10)]


def test_the_training_face_baselines_of_train_faces_are_those_faces_and_their_mean(small_dataset, monkeypatch):
    monkeypatch.setattr(protocol_reports, "QUERY_BLOCK", 4)  # the 6 queries in two blocks
    train = shards.read_table(clips_uri(str(small_dataset)), [FACE_FEATURE], split=TRAIN)
    faces = unit_vectors(tensor_column(train, FACE_FEATURE).astype(np.float32))
    queries = faces[::-1] * 3  # any length: cosine
    mean_face, nearest = training_face_baselines(str(small_dataset), queries)
    np.testing.assert_allclose(nearest, faces[::-1], atol=1e-6)
    np.testing.assert_allclose(mean_face, faces.mean(axis=0), atol=1e-6)


def test_a_gallery_of_one_face_per_clip_sampled_to_three():
    clips = np.array(["a_0", "a_1", "b_0", "c_0", "d_0"])
    gallery_rows, targets = gallery_indices(clips, clips, BY_CLIP)
    queries, kept_rows, kept_targets = sample_gallery(targets, gallery_rows, 3, seed=0)
    assert len(kept_rows) == len(queries) == 3  # only the queries whose face was kept
    assert np.array_equal(kept_rows[kept_targets], gallery_rows[targets[queries]])  # each still finds its own
    assert sample_gallery(targets, gallery_rows, None, seed=0)[1] is gallery_rows  # no size: every face
    table = recall_table(np.array([1, 2, 3]), 3, RANKS)
    assert "gallery of 3 faces (one face per clip)" in format_table(table, "test", 3, BY_CLIP)
    assert [row["recall"] for row in table[:2]] == [1 / 3, 1.0]  # R@5 of 3 faces


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--protocols", "clip,unknown"], "--protocols: unknown unknown; choose from clip, oh, identity, matching"),
        (["--gallery-size", "0"], "--gallery-size must be >= 1"),
        (["--draws", "0"], "--draws must be >= 1"),
        (["--seconds", "0"], "--seconds: each length must lie in (0, 6] seconds, got 0"),
        # the demo's val split is one video: no identity to tell from another (refused before any inference)
        (
            ["--split", "val", "--protocols", "clip,identity,matching"],
            "error: --protocols identity,matching needs at least two identities; val has 1 (video ids)",
        ),
    ],
)
def test_bad_protocol_settings_are_one_line_errors(flags, message, small_dataset, tiny_model, capsys):
    try:
        code = evaluate_main(["--data", str(small_dataset), "--model", str(tiny_model), *flags])
    except SystemExit as exit_:  # the flags' own checks: argparse's usage, then the error
        code = exit_.code
    error = capsys.readouterr().err
    assert code == 2 and message in error.strip().splitlines()[-1] and "Traceback" not in error, error
