"""sample_frames on real mp4 files encoded by ffmpeg at test time."""

import subprocess

import numpy as np
import pytest

from demo_corpus.faces import compose_frame, detectable_faces, face_rgb
from speech2face.faces import detect_faces
from speech2face.video import VideoError, probe_video, sample_frames

FPS = 10
FACE_X = (0.25, 0.5, 0.75)  # second k of the test video shows a face centred at FACE_X[k]


def encode_mp4(path, frames, fps=FPS, audio=False, extra_args=()):
    """Pipe uint8 RGB frames to ffmpeg as rawvideo and encode H.264, optionally with a sine audio track."""
    height, width = frames[0].shape[:2]
    command = ["ffmpeg", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
               "-s", f"{width}x{height}", "-r", str(fps), "-i", "-"]  # fmt: skip
    if audio:
        command += ["-f", "lavfi", "-i", f"sine=frequency=440:duration={len(frames) / fps}", "-c:a", "aac", "-shortest"]
    command += ["-c:v", "libx264", "-pix_fmt", "yuv420p", *extra_args, str(path)]
    subprocess.run(command, input=np.stack(frames).tobytes(), check=True, timeout=60)
    return path


@pytest.fixture(scope="module")
def second_frames():
    """One composed frame per second: a different LFW face at FACE_X[k], y=0.5."""
    indices = detectable_faces()[:3]
    return [compose_frame([(face_rgb(index), x, 0.5)]) for index, x in zip(indices, FACE_X, strict=True)]


@pytest.fixture(scope="module")
def videos(tmp_path_factory, second_frames):
    folder = tmp_path_factory.mktemp("videos")
    frames = [frame for frame in second_frames for _ in range(FPS)]
    silent = encode_mp4(folder / "silent.mp4", frames)
    rotated = folder / "rotated.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(silent), "-c", "copy",
                    "-metadata:s:v", "rotate=90", str(rotated)], check=True, timeout=60)  # fmt: skip
    faststart = folder / "faststart.mp4"  # index first, so a truncated copy still probes
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(silent), "-c", "copy",
                    "-movflags", "+faststart", str(faststart)], check=True, timeout=60)  # fmt: skip
    audio_only = folder / "audio_only.m4a"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "sine=duration=1",
                    "-c:a", "aac", str(audio_only)], check=True, timeout=60)  # fmt: skip
    garbage = folder / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    return {
        "silent": silent,
        "with_audio": encode_mp4(folder / "with_audio.mp4", frames, audio=True),
        "rotated": rotated,
        "faststart": faststart,
        "audio_only": audio_only,
        "garbage": garbage,
        "missing": folder / "missing.mp4",
    }


@pytest.mark.parametrize("name", ["silent", "with_audio"])
def test_samples_have_requested_count_times_and_shape(videos, name):
    samples = sample_frames(videos[name], count=3)
    assert [round(time, 3) for time, _ in samples] == [0.5, 1.5, 2.5]
    for _, frame in samples:
        assert frame.shape == (360, 640, 3) and frame.dtype == np.uint8
    assert len(sample_frames(videos[name], count=7)) == 7


def test_sampled_frames_show_the_encoded_content(videos, second_frames):
    for second, (_, frame) in enumerate(sample_frames(videos["with_audio"], count=3)):
        errors = [np.abs(frame.astype(int) - source).mean() for source in second_frames]
        assert np.argmin(errors) == second and errors[second] < 4, errors  # H.264 loses a little
        (box,) = detect_faces(frame)
        assert abs(box.center[0] - FACE_X[second] * 640) < 40


def test_times_are_from_file_start_within_the_window(videos):
    samples = sample_frames(videos["silent"], start=1.0, duration=2.0, count=2)
    assert [round(time, 3) for time, _ in samples] == [1.5, 2.5]
    centers = [detect_faces(frame)[0].center[0] / 640 for _, frame in samples]
    assert centers == pytest.approx([FACE_X[1], FACE_X[2]], abs=0.07)


def test_rotated_video_comes_out_upright(videos):
    assert probe_video(str(videos["rotated"]))[:2] == (360, 640)
    ((_, frame),) = sample_frames(videos["rotated"], count=1)
    assert frame.shape == (640, 360, 3)


def test_missing_file(videos):
    with pytest.raises(VideoError, match="not found"):
        sample_frames(videos["missing"])


def test_audio_only_file_has_no_video_stream(videos):
    with pytest.raises(VideoError, match="no video stream"):
        sample_frames(videos["audio_only"])


def test_undecodable_file(videos):
    with pytest.raises(VideoError, match="cannot read"):
        sample_frames(videos["garbage"])


@pytest.mark.parametrize(
    ("name", "message"), [("silent", "ffprobe cannot read"), ("faststart", "partial file|truncated")]
)
def test_truncated_file(videos, tmp_path, name, message):
    data = videos[name].read_bytes()
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(data[: len(data) // 2])  # loses the index (silent) or the later frames (faststart)
    with pytest.raises(VideoError, match=message):
        sample_frames(truncated)


def test_window_past_the_end(videos):
    with pytest.raises(VideoError, match="past the end"):
        sample_frames(videos["silent"], start=5.0)
    with pytest.raises(VideoError, match="past its end"):
        sample_frames(videos["silent"], start=2.0, duration=4.0, count=2)


def test_bad_count():
    with pytest.raises(ValueError, match="count"):
        sample_frames("whatever.mp4", count=0)
