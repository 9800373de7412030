"""Preprocessing's config, layout and CSV reading, without running the pipeline."""

import dataclasses

import pytest

from pipelines import preprocess
from pipelines.preprocess import PreprocessConfig
from pipelines.preprocess.ledger import read_segments
from pipelines.preprocess.manifest import embedder_record, keep_layout
from speech2face.dataset import Layout, Manifest
from tests.support.outputs import read_all


def _old_manifest(**values) -> Manifest:
    """A version-1 manifest.json as earlier versions wrote it: no "version", no "layout"."""
    return Manifest.from_dict({"embedder": {"name": "dlib", "dim": 128, "weights_sha256": "d" * 64}} | values)


def test_a_resumed_output_keeps_the_layout_it_was_started_with(capsys):
    config = PreprocessConfig(csv="x.csv", out="/data/s2f", store_spectrogram=False)
    keep_layout(config, _old_manifest(config={"store_spectrogram": True}))
    assert config.store_spectrogram is True and "started with --store-spectrogram" in capsys.readouterr().out
    keep_layout(config, _old_manifest())  # a manifest from before the flag: it stored them
    assert config.store_spectrogram is True
    config.store_spectrogram = True
    keep_layout(config, _old_manifest(config={"store_spectrogram": False, "store_landmarks": True}))
    assert config.store_spectrogram is False and "started without" in capsys.readouterr().out
    assert config.store_landmarks is True
    keep_layout(config, _old_manifest(config={"store_spectrogram": False}))  # from before face_landmarks
    assert config.store_landmarks is False and "before face_landmarks existed" in capsys.readouterr().out
    assert config.split_partitioned is False  # nor partitioned
    # a version-2 manifest says it in "layout", whatever its config holds; its clips are not partitioned
    version_2 = Manifest.from_dict(_old_manifest().to_dict() | {"version": 2, "layout": {"store_spectrogram": True}})
    keep_layout(config, version_2)
    assert (config.store_spectrogram, config.store_landmarks, config.split_partitioned) == (True, True, False)
    output = capsys.readouterr().out
    assert "before clips/ was partitioned by split: its new clips go to clips/" in output
    assert config.store_source is False and "before the speaker and media columns" in output
    # version 3 records the partitioning, not the speaker and media columns
    version_3 = Manifest.from_dict(_old_manifest().to_dict() | {"version": 3, "layout": {"split_partitioned": True}})
    assert version_3.layout == Layout(split_partitioned=True, store_source=False, store_download=False)
    # version 4 records them, not the download columns
    version_4 = Manifest.from_dict(_old_manifest().to_dict() | {"version": 4, "layout": {"store_source": True}})
    assert version_4.layout == Layout(split_partitioned=False, store_source=True, store_download=False)
    keep_layout(config, version_4)
    assert config.store_download is False and "before the download columns" in capsys.readouterr().out
    # version 5 records them
    current = Manifest.from_dict(dataclasses.replace(_old_manifest(), layout=Layout()).to_dict())  # as written
    assert (current.version, current.layout) == (5, Layout(store_spectrogram=False))
    keep_layout(config, current)
    assert config.layout() == Layout()


def test_vggface_requires_weights_or_explicit_random(tmp_path):
    with pytest.raises(SystemExit):
        preprocess.parse_args(["--csv", "a.csv", "--out", str(tmp_path)])
    config = preprocess.parse_args(["--csv", "a.csv", "--out", str(tmp_path), "--vggface-weights", "random"])
    assert embedder_record(config).weights_sha256 == "random"


def test_test_csv_rows_go_to_the_test_split_and_a_repeated_row_is_a_failure(tmp_path):
    train_csv, test_csv = tmp_path / "train.csv", tmp_path / "test.csv"
    train_csv.write_text("abcdefghijk,1,5,0.5,0.5\nbcdefghijkl,1,5,0.5,0.5\n")
    test_csv.write_text("cdefghijklm,2,6,0.5,0.5\nabcdefghijk,1,5,0.5,0.5\nnot a row\n")
    config = preprocess.PreprocessConfig(csv=str(train_csv), test_csv=str(test_csv), out=str(tmp_path / "out"))
    segments = read_segments(config, str(tmp_path / "failures"))
    assert [(s.ytid, s.split) for s in segments if s.split == "test"] == [("cdefghijklm", "test")]
    assert {s.ytid for s in segments if s.split != "test"} == {"abcdefghijk", "bcdefghijkl"}
    failures = read_all(str(tmp_path / "failures"))
    assert sorted(f["stage"] for f in failures) == ["parse", "parse"]
    repeated = next(f for f in failures if f["clip_id"] == "abcdefghijk_1.000_5.000")
    assert f"duplicate of a row of {train_csv}" in repeated["error"]
    parsed = preprocess.parse_args(["--csv", "a.csv", "--test-csv", "b.csv", "--out", "o", "--face-embedder", "dlib"])
    assert (parsed.csv, parsed.test_csv) == ("a.csv", "b.csv")
