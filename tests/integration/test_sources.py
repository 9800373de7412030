"""Media you already hold, through the real pipeline (ffmpeg, dlib): the small demo corpus re-laid as each source.

The YouTube path's output of the same corpus (the session's ``small_dataset``, fetched by yt-dlp over loopback)
is the reference: a clip read from a file you hold must be the clip yt-dlp would have fetched.
"""

import contextlib
import dataclasses
import io
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from demo_corpus import layouts
from pipelines import preprocess
from speech2face import audio, dataset, ranges, storage
from speech2face.avspeech import parse_csv
from speech2face.download import DownloadError
from speech2face.sources import fetch_media
from tests.support.outputs import read_all, read_clips

COMMON = dict(face_embedder="dlib", cpus_per_actor=0.5, batch_size=4)  # as small_dataset, without downloads


@pytest.fixture(scope="module")
def corpus_segments(small_corpus):
    text = {name: (small_corpus.directory / f"avspeech_{name}.csv").read_text() for name in ("train", "test")}
    return parse_csv(text["train"])[0] + parse_csv(text["test"], split_name=dataset.TEST)[0]


@pytest.fixture(scope="module")
def segment_clips(small_corpus, tmp_path_factory) -> Path:
    """Each segment's own clip, as a user who fetched the segments earlier holds them."""
    return layouts.segment_clips(small_corpus.directory, tmp_path_factory.mktemp("segment_clips"))


def _faces_match(ours: dict, reference: dict) -> None:
    a, b = (np.asarray(Image.open(io.BytesIO(row[dataset.FACE_JPEG])), np.float32) for row in (ours, reference))
    assert a.shape == b.shape and np.abs(a - b).mean() < 2.0  # the same crop, within JPEG noise


def test_whole_videos_you_hold_give_the_clips_yt_dlp_fetches_and_bad_files_become_failures(
    small_corpus, small_dataset, corpus_segments, ray_session, tmp_path
):
    """The corpus's videos at --media-root, but one is absent and one is not a video. (Each segment's own
    clip, the other pattern, is checked on the RGW server by tests/e2e/test_demo_sources.py.)"""
    held = tmp_path / "videos"
    held.mkdir()
    videos = sorted({segment.ytid for segment in corpus_segments})
    missing, unreadable = videos[0], videos[1]
    for ytid in videos[2:]:
        shutil.copy(small_corpus.directory / f"{ytid}.mp4", held)
    (held / f"{unreadable}.mp4").write_bytes(b"not a video at all" * 100)
    corpus = small_corpus.directory
    config = preprocess.PreprocessConfig(
        csv=str(corpus / "avspeech_train.csv"), test_csv=str(corpus / "avspeech_test.csv"), media_root=str(held),
        out=str(tmp_path / "out"), val_fraction=0.4, **COMMON,
    )  # fmt: skip
    plan = preprocess.run(dataclasses.replace(config, dry_run=True))
    assert plan["to_process"] == len(corpus_segments)
    manifest = preprocess.run(config)

    reference, clips = read_clips(str(small_dataset)), read_clips(config.out)
    assert set(clips) == {s.clip_id for s in corpus_segments if s.ytid not in (missing, unreadable)}
    for clip_id, clip in clips.items():
        assert np.array_equal(clip[dataset.WAVEFORM], reference[clip_id][dataset.WAVEFORM]), clip_id
        _faces_match(clip, reference[clip_id])
        assert clip[dataset.MEDIA] == str(held / f"{clip[dataset.YTID]}.mp4") and clip[dataset.SPEAKER] is None
        assert clip[dataset.SPLIT] == reference[clip_id][dataset.SPLIT]
    assert reference[clip_id].get(dataset.MEDIA) is None  # downloaded: no file of yours
    failures = read_all(dataset.failures_uri(config.out))
    by_video = {ytid: [f for f in failures if f[dataset.YTID] == ytid] for ytid in (missing, unreadable)}
    assert by_video[missing] and all(
        f[dataset.STAGE] == dataset.DOWNLOAD and f[dataset.REASON] == "missing" and "no such file" in f[dataset.ERROR]
        for f in by_video[missing]
    )
    assert by_video[unreadable] and all(
        f[dataset.STAGE] == dataset.DOWNLOAD and "ffmpeg could not cut" in f[dataset.ERROR]
        for f in by_video[unreadable]
    )
    assert manifest.counts.failures_per_reason == {"missing": len(by_video[missing])}

    again = preprocess.run(config)  # a resume finds nothing to do: the failures are not retried
    assert again.processed_this_run == 0 and again.counts.clips == len(clips)
    plan = preprocess.run(dataclasses.replace(config, dry_run=True))
    assert plan["to_process"] == 0 and plan["valid_rows"] == len(corpus_segments)


def test_a_voxceleb2_tree_splits_by_speaker(small_corpus, segment_clips, ray_session, tmp_path):
    """The corpus as VoxCeleb2 lays it out: id<speaker>/<video>/<utterance>.mp4, one folder per speaker."""
    root = layouts.voxceleb2_tree(small_corpus.directory, segment_clips, tmp_path / "vox2" / "dev" / "mp4")
    (root / "vox2_meta.csv").write_text("stray\n")
    (root / "id99999").mkdir()
    speakers = len(small_corpus.manifest["speakers"])
    config = preprocess.PreprocessConfig(
        voxceleb2=str(root), out=str(tmp_path / "out"), val_fraction=0.3, test_fraction=0.3, **COMMON
    )
    plan = preprocess.run(dataclasses.replace(config, dry_run=True))
    assert sum(plan["speakers_per_split"].values()) == speakers

    manifest = preprocess.run(config)
    clips = read_clips(config.out)
    assert len(clips) == sum(len(s["segments"]) for s in small_corpus.manifest["speakers"])
    splits_of = {}
    for clip in clips.values():
        splits_of.setdefault(clip[dataset.SPEAKER], set()).add(clip[dataset.SPLIT])
    assert len(splits_of) == speakers and all(len(splits) == 1 for splits in splits_of.values())
    assert manifest.counts.speakers_per_split == plan["speakers_per_split"]
    assert manifest.counts.failures_per_reason == {"stray_file": 1, "empty_speaker": 1}
    assert preprocess.run(config).processed_this_run == 0


def test_sources_that_cannot_work_are_one_line_errors_before_ray(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)  # none is started: it would be a Ray of its own
    (tmp_path / "list.csv").write_text("clip.mp4,0,6,0.5,0.5\n")  # no header
    out = ["--out", str(tmp_path / "out"), "--face-embedder", "dlib"]
    for args, message in [
        (["--media-csv", str(tmp_path / "list.csv")], "the first row must be the header path,start,end,x,y"),
        (["--voxceleb2", str(tmp_path / "nowhere")], "no files there"),
    ]:
        assert preprocess.main([*args, *out]) == 2, args
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
    for args, message in [  # flags that do not go together: the usage line, then the error
        (["--csv", "a.csv", "--voxceleb2", "root"], "give one source"),
        (["--voxceleb2", "root", "--media-root", "videos"], "--media-root and --test-csv go with --csv"),
        (["--csv", "a.csv", "--media-root", "v", "--media-pattern", "{video}.mp4"], "--media-pattern"),
    ]:
        with pytest.raises(SystemExit) as exit_code:
            preprocess.main([*args, *out])
        assert exit_code.value.code == 2 and message in capsys.readouterr().err.strip().splitlines()[-1], args


def test_a_media_csv_of_mixed_containers(small_corpus, small_dataset, corpus_segments, ray_session, tmp_path):
    """Whole recordings as mp4, as mkv (the same streams) and as webm (VP9 + Opus, as YouTube serves them).

    Only the mp4's samples equal the YouTube path's: the mkv's AAC lacks the mp4's priming edit and the webm
    was re-encoded, so those are compared with their own file decoded from the segment's start."""
    corpus = small_corpus.directory
    speaker_of = {s["ytid"]: f"id{s['face_index']:05d}" for s in small_corpus.manifest["speakers"]}
    videos = sorted({s.ytid for s in corpus_segments})[:3]
    files = {videos[0]: corpus / f"{videos[0]}.mp4"}
    files[videos[1]] = tmp_path / "media" / f"{videos[1]}.mkv"
    files[videos[2]] = tmp_path / "media" / f"{videos[2]}.webm"
    files[videos[1]].parent.mkdir()
    for ytid, codecs in ((videos[1], ["-c", "copy"]), (videos[2], ["-c:v", "libvpx-vp9", "-c:a", "libopus"])):
        subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(corpus / f"{ytid}.mp4"), *codecs,
                        str(files[ytid])], check=True)  # fmt: skip
    rows = [s for s in corpus_segments if s.ytid in files]
    listing = tmp_path / "media.csv"
    listing.write_text("path,start,end,x,y,speaker\n" + "".join(
        f"{files[s.ytid]},{s.start},{s.end},{s.x},{s.y},{speaker_of[s.ytid]}\n" for s in rows))  # fmt: skip
    config = preprocess.PreprocessConfig(media_csv=str(listing), out=str(tmp_path / "out"), **COMMON)
    manifest = preprocess.run(config)
    clips = read_clips(config.out)
    assert manifest.counts.failures == 0 and len(clips) == len(rows)
    assert preprocess.run(dataclasses.replace(config, dry_run=True))["to_process"] == 0
    assert preprocess.run(config).processed_this_run == 0  # resumed: nothing left to do
    reference = {(c[dataset.YTID], c[dataset.START]): c for c in read_clips(str(small_dataset)).values()}
    for clip in clips.values():
        original = reference[(Path(clip[dataset.MEDIA]).stem, clip[dataset.START])]
        assert clip[dataset.SPEAKER] == speaker_of[original[dataset.YTID]]
        if clip[dataset.MEDIA].endswith(".mp4"):  # the container yt-dlp writes: the very same samples
            assert np.array_equal(clip[dataset.WAVEFORM], original[dataset.WAVEFORM])
        else:  # the file's own audio from `start` (its decode, not the mp4's), within half a millisecond
            segment = audio.load_audio(clip[dataset.MEDIA], start=clip[dataset.START])
            assert abs(_lag(clip, segment[: int((clip[dataset.END] - clip[dataset.START]) * audio.SAMPLE_RATE)])) <= 8
        _faces_match(clip, original)


def _lag(clip: dict, reference: np.ndarray) -> int:
    """The shift, in 16 kHz samples, that best aligns the clip's first samples with ``reference``, where the
    two correlate at >= 0.98 (the same sound; a shift by a fraction of a sample keeps it below 1)."""
    ours = audio.int16_to_waveform(np.frombuffer(clip[dataset.WAVEFORM], np.int16))[: len(reference)]
    inner = slice(32, len(ours) - 32)

    def correlation(lag: int) -> float:
        shifted = np.roll(ours, lag)[inner]
        return float(shifted @ reference[inner] / np.linalg.norm(shifted) / np.linalg.norm(reference[inner]))

    best = max(range(-32, 33), key=correlation)
    assert correlation(best) >= 0.98, correlation(best)
    return best


def test_a_segment_cut_out_of_a_video_on_s3_reads_only_its_bytes(s3_bucket, small_corpus, tmp_path, monkeypatch):
    """A 10-minute video held on the real RGW: the cut reads its index and its segment by ranges, not the file."""
    local, video = tmp_path / "long.mp4", small_corpus.directory / small_corpus.manifest["speakers"][0]["video"]
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-stream_loop", "49", "-i", str(video),
                    "-c", "copy", str(local)], check=True)  # fmt: skip
    held = storage.join(s3_bucket.uri, "videos", "long.mp4")
    storage.write_bytes(held, local.read_bytes())
    served, serve = [], ranges.serve

    @contextlib.contextmanager
    def counted(uri):
        with serve(uri) as answer:
            served.append(answer)
            yield answer

    monkeypatch.setattr(ranges, "serve", counted)
    start = 300.0
    (tmp_path / "s3").mkdir(), (tmp_path / "disk").mkdir()
    from_s3 = fetch_media(held, start, start + 6.4, cut=True, out_dir=tmp_path / "s3")
    from_disk = fetch_media(str(local), start, start + 6.4, cut=True, out_dir=tmp_path / "disk")
    assert np.array_equal(audio.load_audio(from_s3), audio.load_audio(from_disk))
    assert served[0].requests[0] == "bytes=0-" and len(served[0].requests) >= 3  # it sought: ranges honoured
    print(f"\n[ranges] read {served[0].bytes_read:,} of {local.stat().st_size:,} bytes: {served[0].requests}")
    assert served[0].bytes_read < 0.25 * local.stat().st_size, (served[0].bytes_read, served[0].requests)

    with pytest.raises(DownloadError) as missing:
        fetch_media(storage.join(s3_bucket.uri, "videos", "gone.mp4"), 1.0, 7.0, cut=True, out_dir=tmp_path)
    assert missing.value.reason == "missing"


def test_an_s3_root_that_does_not_exist_is_one_line_error_before_ray(s3_bucket, small_corpus, capsys, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    out = ["--out", storage.join(s3_bucket.uri, "out"), "--face-embedder", "dlib"]
    csv = str(small_corpus.directory / "avspeech_train.csv")
    for args in (["--csv", csv, "--media-root", "s3://no-such-bucket-here/videos"],
                 ["--csv", csv, "--media-root", storage.join(s3_bucket.uri, "nothing")],
                 ["--voxceleb2", "s3://no-such-bucket-here/vox2"]):  # fmt: skip
        assert preprocess.main([*args, *out]) == 2, args
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and args[-1] in err[0], err
