"""pipelines.preprocess --dry-run: the resume plan per split, from real earlier output, with nothing written."""

import shutil

from pipelines import failures, preprocess
from pipelines.preprocess.dry_run import dry_run

NEW_ROW = "newvideo001,1.000000,7.000000,0.5,0.5"
NEW_CLIP = "newvideo001_1.000_7.000"


def _tree(directory) -> dict:
    return {str(p.relative_to(directory)): p.stat().st_mtime_ns for p in sorted(directory.rglob("*"))}


def test_dry_run_plans_per_split_and_writes_nothing(small_corpus, small_dataset, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)  # plan for this machine, start no Ray
    out = tmp_path / "out"
    shutil.copytree(small_dataset, out)
    for path in [out, *out.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    failures.write_failures([{"clip_id": NEW_CLIP, "ytid": "newvideo001", "start": 1.0, "end": 7.0,
                              "stage": "download", "error": "HTTP 429", "reason": "throttled"}],
                            str(out / "failures"), "stages")  # fmt: skip
    csv = tmp_path / "train.csv"
    csv.write_text((small_corpus.directory / "avspeech_train.csv").read_text() + f"{NEW_ROW}\nnot,a,valid,row\n")
    args = ["--csv", str(csv), "--test-csv", str(small_corpus.directory / "avspeech_test.csv"), "--out", str(out),
            "--face-embedder", "dlib", "--val-fraction", "0.4", "--dry-run"]  # fmt: skip
    before = _tree(out)

    plan = dry_run(preprocess.parse_args(args), str(out / "clips"), str(out / "failures"))
    assert plan["valid_rows"] == 13 and plan["to_process"] == 0, plan
    done = {split: states.get("done", 0) for split, states in plan["per_split"].items()}
    assert done == {"test": 4, "train": 6, "val": 2}, plan  # small_dataset's clips per split
    new_split = next(split for split, states in plan["per_split"].items() if states.get("failed earlier (skipped)"))
    assert plan["per_split"][new_split]["failed earlier (skipped)"] == 1
    assert plan["actor_pools"]["download"] >= 2 and plan["resources"]["CPU"] >= 1

    retried = dry_run(preprocess.parse_args([*args, "--retry-failures", "throttled"]),
                      str(out / "clips"), str(out / "failures"))  # fmt: skip
    assert retried["to_process"] == 1 and retried["per_split"][new_split]["failed earlier (retried)"] == 1

    assert preprocess.main(args) == 0
    printed = capsys.readouterr().out
    assert "would process 0 rows" in printed and "nothing was downloaded or written" in printed
    assert _tree(out) == before  # no parse failures written, no failure cleared, no manifest
