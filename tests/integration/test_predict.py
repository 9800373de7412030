"""trainer.predict's input checks, on the session's tiny model (any trained model will do for these)."""

import subprocess

from tests.support.cli import run


def test_predict_refuses_bad_audio_with_exit_code_2(tiny_model, tmp_path):
    not_audio = tmp_path / "notes.wav"
    not_audio.write_text("this is not audio")
    silent = tmp_path / "silent.wav"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-t", "3",
                   str(silent)], check=True)  # fmt: skip
    for path, message in ((not_audio, "could not decode"), (silent, "digital silence"),
                          (tmp_path / "missing.mp3", "no such file")):  # fmt: skip
        result = run("trainer.predict", "--model", str(tiny_model), "--audio", str(path),
                     "--out", str(tmp_path), timeout=120)  # fmt: skip
        assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr, result.stderr
