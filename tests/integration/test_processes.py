"""speech2face.processes: a tool killed by a signal is not a bad clip (real processes, real signals)."""

import os
import subprocess

import pandas as pd
import pytest

from pipelines.stages import DecodeFaceStage
from speech2face import faces, storage
from speech2face.processes import ProcessKilled, run_tool


def test_a_signal_raises_process_killed_and_an_exit_code_is_returned():
    with pytest.raises(ProcessKilled, match=r"sh was killed by signal 9 \(SIGKILL\)"):
        run_tool(["sh", "-c", "kill -KILL $$"], timeout=10)
    try:  # per-clip handlers catch Exception: the kill goes through them
        run_tool(["sh", "-c", "kill -TERM $$"], timeout=10)
    except Exception:  # noqa: BLE001 - what the stages catch
        pytest.fail("ProcessKilled must not be an Exception")
    except ProcessKilled as killed:
        assert "SIGTERM" in str(killed)
    assert run_tool(["sh", "-c", "echo out; exit 3"], timeout=10).returncode == 3
    with pytest.raises(subprocess.TimeoutExpired):
        run_tool(["sleep", "5"], timeout=0.2)


def _one_row(video: bytes) -> pd.DataFrame:
    return pd.DataFrame([{"clip_id": "abcdefghijk_1.000_7.000", "ytid": "abcdefghijk", "start": 1.0, "end": 7.0,
                          "x": 0.5, "y": 0.5, "split": "train", "stage": "", "error": "", "reason": "",
                          "video": video}])  # fmt: skip


def test_the_decode_stage_records_a_bad_file_but_not_a_killed_ffmpeg(tmp_path, monkeypatch):
    """As when a preprocessing job dies: Ray kills the stage's ffmpeg while the stage's thread runs on."""
    failures = str(tmp_path / "failures")
    stage = DecodeFaceStage(frames_per_clip=3, face_model="hog", max_distance=faces.MAX_DISTANCE, store_landmarks=False,
                            failures_uri=failures)  # fmt: skip
    assert stage(_one_row(b"not a video")).empty  # real ffmpeg, a bad file: a failure row, written out
    (written,) = storage.list_files(failures, suffix=".parquet")

    killed_ffmpeg = tmp_path / "bin" / "ffmpeg"
    killed_ffmpeg.parent.mkdir()
    killed_ffmpeg.write_text("#!/bin/sh\nkill -KILL $$\n")
    killed_ffmpeg.chmod(0o755)
    monkeypatch.setenv("PATH", f"{killed_ffmpeg.parent}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(ProcessKilled, match="ffmpeg was killed by signal 9"):
        stage(_one_row(b"not a video"))
    assert storage.list_files(failures, suffix=".parquet") == [written]  # nothing recorded for the killed one
