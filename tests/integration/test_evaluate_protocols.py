"""trainer.evaluate's published protocols on the session's demo data, and the inputs it refuses."""

import json
import shutil

import pytest

from tests.support.cli import check, run


def test_every_protocol_reports_its_figures_beside_chance(small_dataset, tiny_model, ray_address, tmp_path):
    out = tmp_path / "eval"
    result = check(run("trainer.evaluate", "--data", str(small_dataset), "--model", str(tiny_model), "--split", "test",
                       "--protocols", "clip,oh,identity,matching", "--draws", "3", "--out", str(out),
                       ray_address=ray_address))  # fmt: skip
    report = json.loads((out / "eval.json").read_text())
    assert list(report["protocols"]) == ["clip", "oh", "identity", "matching"]
    oh, identity, matching = (report["protocols"][name] for name in ("oh", "identity", "matching"))
    # the demo's test split holds 2 speakers' videos: galleries of all of them, said plainly
    assert oh["gallery_size"] == report["gallery_size"] and oh["gallery_size_asked"] == 5000 and oh["draws"] == 3
    assert "galleries of 2 faces (one per video); the split has only 2" in result.stdout
    assert identity["identities"] == "video id" and identity["gallery_size"] == identity["identity_count"]
    for row in oh["recall"] + identity["recall"]:
        assert 0 <= row["lo"] <= row["recall"] <= row["hi"] <= 1 and row["chance"] == min(row["k"], 2) / 2
    assert matching["accuracy_chance"] == 0.5 and 0 <= matching["roc_auc"] <= 1 and matching["pairs"] == 4
    assert (out / "oh_rank_cdf.png").stat().st_size > 0 and oh["rank_cdf"][-1] == [2, 1.0]  # every rank <= N
    assert "SF2F (Bai et al. 2022) R@10 29.8 %" in result.stdout and "Oh et al. (2019), 5,000 faces" in result.stdout
    assert report["leak_check"] == {"identities": "video id", "in_split": 2, "also_in_train": 0}
    assert "Leak check: 0 of the 2 video ids of test have clips in train" in result.stdout
    controls = report["controls"]
    assert set(controls) == {"shuffled_voices", "mean_training_face", "nearest_training_face"}
    assert "Controls (clip protocol" in result.stdout and "nearest training face: R@1" in result.stdout
    for table in controls.values():
        assert [row["k"] for row in table] == [1, 5] and table[0]["chance"] == 0.5


def test_a_leaking_split_is_a_loud_warning_and_audio_lengths_are_a_table(small_dataset, tiny_model, ray_address,
                                                                          tmp_path):  # fmt: skip
    leaky = tmp_path / "leaky"
    shutil.copytree(small_dataset, leaky)
    train_file = sorted((leaky / "clips" / "split=train").glob("*.parquet"))[0]
    shutil.copy(train_file, leaky / "clips" / "split=test" / "from-train.parquet")  # train's clips also in test
    result = check(run("trainer.evaluate", "--data", str(leaky), "--model", str(tiny_model), "--split", "test",
                       "--seconds", "1,3,6", "--out", str(tmp_path / "eval"), ray_address=ray_address))  # fmt: skip
    report = json.loads((tmp_path / "eval" / "eval.json").read_text())
    leak = report["leak_check"]
    assert leak["also_in_train"] > 0
    assert f"WARNING: LEAK: {leak['also_in_train']} of the {leak['in_split']} video ids of test" in result.stdout
    lengths = report["audio_length"]
    assert [row["seconds"] for row in lengths] == [1, 3, 6] and "Audio length (clip protocol" in result.stdout
    assert [row["k"] for row in lengths[0]["recall"]] == [1, 5, 10]
    # 6 s is the whole stored waveform: the same predictions, so the same figures as the main table
    assert lengths[2]["recall"] == [row for row in report["recall"] if row["k"] in (1, 5, 10)]


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
            "--protocols identity,matching needs at least two identities; val has 1 (video ids)",
        ),
    ],
)
def test_bad_protocol_settings_are_one_line_errors(flags, message, small_dataset, tiny_model):
    result = run("trainer.evaluate", "--data", str(small_dataset), "--model", str(tiny_model), *flags)
    assert result.returncode == 2 and message in result.stderr, result.stderr
