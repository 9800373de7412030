"""The offline demo corpus, with real espeak-ng, ffmpeg, dlib, a loopback HTTP server and yt-dlp."""

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from demo_corpus.corpus import (
    FACE_SIZE,
    MANIFEST_NAME,
    TEST_CSV,
    TRAIN_CSV,
    VOICE_AXES_FILE,
    VOICE_VARIANTS,
    CorpusConfig,
    VoiceParams,
    existing_corpus,
    face_descriptor,
    fit_voice_axes,
    generate_corpus,
    make_ytid,
    plan_corpus,
    stored_detectable_faces,
    voice_for_face,
)  # fmt: skip
from demo_corpus.faces import detectable_faces
from demo_corpus.server import serve_directory, url_template
from speech2face.audio import NUM_SAMPLES, SAMPLE_RATE, decode_audio, load_audio
from speech2face.avspeech import YTID_PATTERN, parse_csv
from speech2face.faces import choose_face, detect_faces, face_distance
from speech2face.video import read_frame

ROOT = Path(__file__).resolve().parents[2]
CONFIG = CorpusConfig(speakers=6, clips_per_speaker=2, test_speakers=2, seed=3)
CLI_ARGS = ["--speakers", "6", "--clips-per-speaker", "2", "--test-speakers", "2", "--seed", "3"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("demo_corpus")
    log = []
    manifest = generate_corpus(out_dir, CONFIG, workers=2, log=log.append)
    assert log[-1].startswith(f"speaker {CONFIG.speakers}/{CONFIG.speakers} ")  # progress, one line a speaker
    return out_dir, manifest


def _rows(path: Path) -> list[list[str]]:
    with open(path, newline="") as file:
        return list(csv.reader(file))


def _segments(manifest: dict):
    for speaker in manifest["speakers"]:
        for segment in speaker["segments"]:
            yield speaker, segment


def _run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "demo_corpus", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


def test_csvs_are_avspeech_rows_over_disjoint_speakers(corpus):
    out_dir, manifest = corpus
    train, test = _rows(out_dir / TRAIN_CSV), _rows(out_dir / TEST_CSV)
    assert len(train) + len(test) == CONFIG.speakers * CONFIG.clips_per_speaker
    for row in train + test:
        assert len(row) == 5
        ytid, (start, end, x, y) = row[0], map(float, row[1:])  # no header: every row is numeric
        assert YTID_PATTERN.fullmatch(ytid)
        assert 0 < start < end and 0 < x < 1 and 0 < y < 1
        assert (out_dir / f"{ytid}.mp4").is_file()
    train_ids, test_ids = {row[0] for row in train}, {row[0] for row in test}
    assert not train_ids & test_ids
    assert len(test_ids) == CONFIG.test_speakers and len(train_ids) == CONFIG.speakers - CONFIG.test_speakers
    assert {s["ytid"] for s in manifest["speakers"] if s["split"] == "test"} == test_ids
    # The project's own AVSpeech parser accepts every row.
    segments, failures = parse_csv((out_dir / TRAIN_CSV).read_text())
    assert failures == [] and len(segments) == len(train)


def test_manifest_says_the_pairing_is_synthetic(corpus):
    out_dir, _ = corpus
    manifest = json.loads((out_dir / MANIFEST_NAME).read_text())
    assert manifest["synthetic_pairing"] is True and "synthetic" in manifest["description"]
    assert manifest["config"] == asdict(CONFIG)
    for speaker in manifest["speakers"]:
        assert speaker["ytid"] == make_ytid(CONFIG.seed, speaker["face_index"])
        assert speaker["voice"]["variant"] in VOICE_VARIANTS and speaker["split"] in ("train", "test")


def test_long_segment_decodes_to_six_seconds_of_speech(corpus):
    out_dir, manifest = corpus
    speaker, segment = next((sp, s) for sp, s in _segments(manifest) if s["end"] - s["start"] >= 6.0)
    wave = load_audio(out_dir / speaker["video"], segment["start"])
    assert wave.shape == (NUM_SAMPLES,)
    assert np.sqrt(np.mean(wave**2)) > 0.02


def test_short_segment_is_speech_between_silent_gaps(corpus):
    out_dir, manifest = corpus
    speaker, segment = next((sp, s) for sp, s in _segments(manifest) if s["end"] - s["start"] < 6.0)
    path, duration = out_dir / speaker["video"], segment["end"] - segment["start"]
    speech = decode_audio(path, segment["start"], max_seconds=duration)
    assert abs(speech.size - duration * SAMPLE_RATE) <= 0.01 * SAMPLE_RATE
    assert np.sqrt(np.mean(speech**2)) > 0.02
    gap = decode_audio(path, segment["end"] + 0.3, max_seconds=0.4)  # the 1 s gap after the segment
    assert np.max(np.abs(gap)) < 0.01
    assert load_audio(path, segment["start"]).shape == (NUM_SAMPLES,)


def test_every_segment_shows_the_speaker_at_xy_and_distractors_far_away(corpus):
    out_dir, manifest = corpus
    kinds = {"short": 0, "distractor": 0}
    for speaker, segment in _segments(manifest):
        middle = (segment["start"] + segment["end"]) / 2
        frame = read_frame(str(out_dir / speaker["video"]), middle, 640, 360)
        boxes = detect_faces(frame)
        box, distance = choose_face(boxes, frame.shape, speaker["x"], speaker["y"], max_distance=0.06)
        expected = 1 if segment["distractor_face"] is None else 2
        assert len(boxes) == expected, (speaker["ytid"], segment)
        others = [b for b in boxes if b != box]
        assert all(face_distance(b, frame.shape, speaker["x"], speaker["y"]) > 0.3 for b in others)
        kinds["distractor"] += expected == 2
        kinds["short"] += segment["end"] - segment["start"] < 6.0
    assert kinds["distractor"] >= 1 and kinds["short"] >= 1


def test_voice_is_the_fixed_function_of_each_speakers_face(corpus):
    _, manifest = corpus
    assert list(VOICE_VARIANTS) == sorted(VOICE_VARIANTS)  # a stable order keeps the mapping stable
    voices = [VoiceParams(**speaker["voice"]) for speaker in manifest["speakers"]]
    assert len(set(voices)) == len(voices)  # different faces, different voices
    speaker = manifest["speakers"][0]
    descriptor = face_descriptor(speaker["face_index"])
    assert voice_for_face(descriptor) == voices[0]
    assert voice_for_face(descriptor.astype(np.float32)) == voice_for_face(descriptor.tolist()) == voices[0]


def test_stored_voice_axes_are_the_principal_axes_of_the_detectable_lfw_faces():
    stored = json.loads(VOICE_AXES_FILE.read_text())
    assert stored_detectable_faces() == stored["detectable_faces"] == detectable_faces(FACE_SIZE)  # dlib's, now
    fitted = fit_voice_axes(detectable_faces(FACE_SIZE))
    assert fitted["faces"] == stored["faces"] >= 90
    np.testing.assert_allclose(stored["axes"], fitted["axes"], atol=2e-6)
    np.testing.assert_allclose(stored["deciles"], fitted["deciles"], atol=2e-4)
    axes = np.asarray(stored["axes"])
    np.testing.assert_allclose(axes @ axes.T, np.eye(4), atol=1e-4)
    assert stored["variance_share"] > 0.25  # what makes voices informative about faces


def test_voice_for_face_is_deterministic_across_processes(tmp_path):
    mean = np.stack([face_descriptor(index) for index in detectable_faces(FACE_SIZE)[:20]]).mean(axis=0)
    descriptors = mean + np.random.default_rng(0).normal(0.0, 0.05, size=(20, 128))
    np.save(tmp_path / "descriptors.npy", descriptors)
    script = (
        "import json, sys, numpy as np; from dataclasses import asdict;"
        "from demo_corpus.corpus import voice_for_face;"
        "print(json.dumps([asdict(voice_for_face(d)) for d in np.load(sys.argv[1])]))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "7"}
    command = [sys.executable, "-c", script, str(tmp_path / "descriptors.npy")]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    here = [asdict(voice_for_face(d)) for d in descriptors]
    assert json.loads(result.stdout) == here
    assert len({tuple(v.values()) for v in here}) >= 15  # the quantisation spreads voices out
    assert voice_for_face(descriptors[0] + 1e-9) == voice_for_face(descriptors[0])
    with pytest.raises(ValueError, match="128"):
        voice_for_face(np.zeros(127))
    with pytest.raises(ValueError, match="finite"):
        voice_for_face(np.full(128, np.nan))


def test_plan_is_deterministic_and_independent_of_python_hash_seed():
    detectable = list(range(0, 60, 3))
    plan = plan_corpus(CONFIG, detectable)
    script = (
        "import json; from dataclasses import asdict; from demo_corpus.corpus import CorpusConfig, plan_corpus;"
        f"print(json.dumps([asdict(p) for p in plan_corpus(CorpusConfig(**{asdict(CONFIG)}), {detectable})]))"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PYTHONHASHSEED": "11"})  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == json.loads(json.dumps([asdict(p) for p in plan]))
    texts = [s.text for p in plan for s in p.segments]
    assert len(set(texts[:2])) == 2  # a different sentence per segment of a video
    assert plan_corpus(CorpusConfig(6, 2, 2, seed=4), detectable)[0].ytid != plan[0].ytid


def test_existing_corpus_needs_the_same_config_and_all_files(corpus, tmp_path):
    out_dir, manifest = corpus
    assert existing_corpus(out_dir, CONFIG) == manifest
    assert existing_corpus(out_dir, CorpusConfig(6, 2, 2, seed=4)) is None
    shutil.copy(out_dir / MANIFEST_NAME, tmp_path / MANIFEST_NAME)  # a manifest without its videos
    assert existing_corpus(tmp_path, CONFIG) is None


def test_yt_dlp_fetches_a_segment_from_the_loopback_server(corpus, tmp_path):
    import yt_dlp

    out_dir, manifest = corpus
    speaker, segment = next(_segments(manifest))
    start, end = segment["start"], segment["end"]
    with serve_directory(out_dir) as (_, base_url):
        url = url_template(base_url).format(ytid=speaker["ytid"])
        with urllib.request.urlopen(url, timeout=10) as response:  # a DASH manifest: video-only and audio-only
            listed = response.read().decode()
        assert 'mimeType="video/mp4"' in listed and 'mimeType="audio/mp4"' in listed
        video = out_dir / speaker["ytid"] / "134.mp4"  # the corpus's own H.264, as YouTube's itag 134
        ranged = urllib.request.Request(f"{base_url}/{speaker['ytid']}/134.mp4", headers={"Range": "bytes=100-199"})
        with urllib.request.urlopen(ranged, timeout=10) as response:
            assert response.status == 206
            assert response.headers["Content-Range"] == f"bytes 100-199/{video.stat().st_size}"
            assert response.read() == video.read_bytes()[100:200]
        options = {
            "quiet": True, "no_warnings": True, "noprogress": True,
            "outtmpl": str(tmp_path / "segment.%(ext)s"),
            "download_ranges": yt_dlp.utils.download_range_func(None, [(start, end)]),
            "force_keyframes_at_cuts": True,
        }  # fmt: skip
        with yt_dlp.YoutubeDL(options) as downloader:
            assert downloader.download([url]) == 0
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(f"{base_url}/AAAAAAAAAAA.mp4", timeout=10)
    (path,) = tmp_path.glob("segment.*")
    probe = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(path)],
                           capture_output=True, text=True, check=True)  # fmt: skip
    assert abs(float(probe.stdout) - (end - start)) < 0.5
    assert np.sqrt(np.mean(load_audio(path) ** 2)) > 0.02
    with pytest.raises(urllib.error.URLError):  # the server stopped with the block
        urllib.request.urlopen(url, timeout=5)


def test_cli_help_and_clear_errors():
    help_run = _run_cli("--help")
    assert help_run.returncode == 0 and "--clips-per-speaker" in help_run.stdout and "synthetic" in help_run.stdout
    for args, message in [
        (["--out", "x", "--speakers", "0"], "--speakers must be >= 2"),
        (["--out", "x", "--speakers", "five"], "argument --speakers: invalid int value: 'five'"),
        (["--out", "x", "--speakers", "5", "--test-speakers", "5"], "--test-speakers must be in 1..speakers-1"),
        (["--out", "x", "--clips-per-speaker", "50"], "--clips-per-speaker must be in [1, 10]"),
        (["--speakers", "5"], "--out"),
    ]:
        run = _run_cli(*args)
        assert run.returncode == 2 and message in run.stderr, (args, run.stderr)


def test_cli_reuses_a_complete_corpus_and_imports_no_ray(corpus):
    out_dir, manifest = corpus
    mtimes = {path.name: path.stat().st_mtime_ns for path in out_dir.iterdir()}
    run = _run_cli("--out", str(out_dir), *CLI_ARGS)
    assert run.returncode == 0, run.stderr
    assert "not regenerating" in run.stdout and "6 speakers (4 train, 2 test)" in run.stdout
    assert {path.name: path.stat().st_mtime_ns for path in out_dir.iterdir()} == mtimes
    probe = subprocess.run([sys.executable, "-c", "import sys, demo_corpus; print('ray' in sys.modules)"],
                           cwd=ROOT, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert probe.stdout.strip() == "False", probe.stderr


def test_cli_serves_the_corpus_until_interrupted(corpus):
    out_dir, _ = corpus
    command = [sys.executable, "-m", "demo_corpus", "--out", str(out_dir), *CLI_ARGS, "--serve", "0"]
    # A shell's background job (`make test &`, some CI runners) ignores SIGINT, and so would the child;
    # restore the default so Python turns Ctrl-C into KeyboardInterrupt, as in a terminal.
    server = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    try:
        lines = [server.stdout.readline() for _ in range(3)]
        serving = next(line for line in lines if line.startswith("serving "))
        template = serving.split("--url-template '")[1].split("'")[0]
        assert template.startswith("http://127.0.0.1:") and template.endswith("/{ytid}.mpd")
        csv_url = template.replace("{ytid}.mpd", TEST_CSV)
        with urllib.request.urlopen(csv_url, timeout=10) as response:
            assert response.read() == (out_dir / TEST_CSV).read_bytes()
        server.send_signal(signal.SIGINT)
        stdout, stderr = server.communicate(timeout=30)
    finally:
        server.kill()
    assert server.returncode == 0, stderr
    assert "stopped serving" in stdout
