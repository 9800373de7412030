"""failures/ holds one row per clip, even when Ray runs a batch again after its node died (a reclaimed spot node)."""

from pipelines.failures import write_failures
from pipelines.preprocess.ledger import read_columns
from speech2face.dataset import CLIP_ID, STAGE


def _row(clip_id: str) -> dict:
    return {CLIP_ID: clip_id, "ytid": clip_id[:11], "start": 1.0, "end": 7.0, STAGE: "face", "error": "no face"}


def test_a_batch_written_again_keeps_one_row_per_clip(tmp_path):
    failures = str(tmp_path / "failures")
    batch = [_row("aaaaaaaaaaa_1.000_7.000"), _row("bbbbbbbbbbb_1.000_7.000")]
    write_failures(batch, failures, "stages")
    write_failures(list(reversed(batch)), failures, "stages")  # the same batch, run again by Ray
    write_failures([_row("ccccccccccc_1.000_7.000")], failures, "stages")  # another batch: a file of its own
    write_failures([], failures, "stages")  # nothing failed: no file
    assert sorted(read_columns(failures, [CLIP_ID])[CLIP_ID]) == [
        "aaaaaaaaaaa_1.000_7.000",
        "bbbbbbbbbbb_1.000_7.000",
        "ccccccccccc_1.000_7.000",
    ]
    assert len(list((tmp_path / "failures").glob("stages-*.parquet"))) == 2
