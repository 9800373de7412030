"""speech2face.sources: the rows of each media source, read from files the test lays out (no media decoded)."""

import math
from collections import Counter

import pytest

from speech2face import sources
from speech2face.avspeech import parse_csv
from speech2face.dataset import ERROR, REASON, TEST, TRAIN, VAL
from speech2face.errors import InputError


def test_a_pattern_names_a_whole_video_or_a_segments_clip():
    assert sources.cuts_segment("{ytid}.mp4") is True
    assert sources.cuts_segment("videos/{ytid}.mkv") is True
    assert sources.cuts_segment("{ytid}_{start:.3f}_{end:.3f}.mp4") is False
    assert sources.cuts_segment("{clip_id}.mp4") is False
    for bad in ("{video}.mp4", "clip.mp4", "{ytid.mp4"):
        with pytest.raises(InputError, match="--media-pattern"):
            sources.cuts_segment(bad)


def test_avspeech_rows_get_their_file_below_the_media_root():
    segments, _ = parse_csv("AAAAAAAAAAA,1.5,7.5,0.5,0.5\nBBBBBBBBBBB,0,6,0.4,0.6\n")
    whole = sources.with_media(segments, "s3://bucket/videos", "{ytid}.mp4")
    assert [s.media for s in whole] == ["s3://bucket/videos/AAAAAAAAAAA.mp4", "s3://bucket/videos/BBBBBBBBBBB.mp4"]
    clips = sources.with_media(segments, "/data/clips", "{ytid}_{start:.3f}_{end:.3f}.mp4")
    assert clips[0].media == "/data/clips/AAAAAAAAAAA_1.500_7.500.mp4"
    assert [s.clip_id for s in clips] == [s.clip_id for s in segments]  # the same ids as the YouTube path


def _touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def test_a_voxceleb2_tree_is_one_row_per_clip_and_skips_what_does_not_belong(tmp_path):
    root = tmp_path / "vox2" / "dev" / "mp4"
    for speaker in range(30):
        for video in ("21Uxsk56VDQ", "2DLq_Kkc1r8"):
            for utterance in ("00001", "00002"):
                _touch(root / f"id{speaker:05d}" / video / f"{utterance}.mp4")
    _touch(root / "README.txt")  # stray: not <speaker>/<video>/<utterance>.mp4
    _touch(root / "id00000" / "21Uxsk56VDQ" / "00003.wav")  # stray: not an mp4
    (root / "id99999").mkdir()  # a speaker without clips

    segments, failures = sources.voxceleb2_segments(str(root), val_fraction=0.2, test_fraction=0.2)
    assert len(segments) == 30 * 2 * 2
    first = segments[0]
    assert (first.clip_id, first.ytid, first.speaker) == ("id00000_21Uxsk56VDQ_00001", "21Uxsk56VDQ", "id00000")
    assert first.media == str(root / "id00000" / "21Uxsk56VDQ" / "00001.mp4")
    assert (first.start, first.x, first.y) == (0.0, 0.5, 0.5) and math.isnan(first.end)  # the whole file
    assert Counter(f[REASON] for f in failures) == {sources.STRAY_FILE: 2, sources.EMPTY_SPEAKER: 1}
    splits_of = {}
    for segment in segments:
        splits_of.setdefault(segment.speaker, set()).add(segment.split)
    assert all(len(splits) == 1 for splits in splits_of.values())  # no speaker in two splits
    assert {s for splits in splits_of.values() for s in splits} == {TRAIN, VAL, TEST}


def test_an_empty_voxceleb2_root_is_one_clear_error(tmp_path):
    with pytest.raises(InputError, match="no files there"):
        sources.voxceleb2_segments(str(tmp_path / "nothing"), 0.1, 0.1)


def test_speaker_splits_hold_their_fractions_of_the_speakers():
    speakers = [f"id{n:05d}" for n in range(4000)]
    counts = Counter(sources.speaker_split(s, val_fraction=0.2, test_fraction=0.1) for s in speakers)
    assert abs(counts[TEST] / 4000 - 0.1) < 0.02 and abs(counts[VAL] / 4000 - 0.2) < 0.02
    assert [sources.speaker_split(s, 0.2, 0.1) for s in speakers] == [
        sources.speaker_split(s, 0.2, 0.1) for s in speakers
    ]
    assert Counter(sources.speaker_split(s, 0.0, 0.0) for s in speakers) == {TRAIN: 4000}


def test_a_media_csv_resolves_paths_splits_by_speaker_and_refuses_audio_only_rows(tmp_path):
    text = (
        "path,start,end,x,y,speaker\n"
        "talks/a.mp4,0,6,0.5,0.4,alice\n"
        "talks/b.mkv,2.5,8.5,0.5,0.4,alice\n"
        "/abs/c.webm,0,6,0.3,0.3,bob\n"
        "s3://bucket/d.mp4,1,7,0.5,0.5,carol\n"
        "voice.wav,0,6,0.5,0.5,dave\n"  # no picture: refused, one failure row
        "talks/e.mp4,6,2,0.5,0.5,erin\n"  # end before start
        "talks/a.mp4,0,6,0.5,0.4,alice\n"  # a duplicate
    )
    segments, failures = sources.media_csv_segments(text, str(tmp_path / "list.csv"), 0.3, 0.3)
    assert [s.media for s in segments] == [
        str(tmp_path / "talks" / "a.mp4"), str(tmp_path / "talks" / "b.mkv"), "/abs/c.webm", "s3://bucket/d.mp4"
    ]  # fmt: skip
    assert [s.speaker for s in segments] == ["alice", "alice", "bob", "carol"]
    assert segments[0].split == segments[1].split  # by speaker
    assert segments[0].ytid != segments[2].ytid and len(segments[0].ytid) == 11
    errors = [f[ERROR] for f in failures]
    assert (
        len(errors) == 3 and "holds no picture" in errors[0] and "start < end" in errors[1] and "duplicate" in errors[2]
    )


def test_a_media_csv_without_its_header_or_with_an_unknown_column_is_refused():
    with pytest.raises(InputError, match="header path,start,end,x,y.*it has no header row"):
        sources.media_csv_segments("a.mp4,0,6,0.5,0.5\n", "list.csv", 0.1, 0.0)
    with pytest.raises(InputError, match="unknown column.*gender"):
        sources.media_csv_segments("path,start,end,x,y,gender\na.mp4,0,6,0.5,0.5,f\n", "list.csv", 0.1, 0.0)
    segments, _ = sources.media_csv_segments("path,start,end,x,y\na.mp4,0,6,0.5,0.5\n", "list.csv", 0.0, 0.0)
    assert segments[0].media == "a.mp4" and segments[0].speaker is None and segments[0].split == TRAIN


@pytest.mark.parametrize(
    ("header", "expected"),
    [("bytes=0-", (0, 9)), ("bytes=3-5", (3, 5)), ("bytes=3-99", (3, 9)), ("bytes=-4", (6, 9)),
     ("bytes=12-", (12, 9)), ("", None), ("items=0-1", None)],
)  # fmt: skip
def test_a_range_header_is_the_bytes_it_asks_for(header, expected):
    from speech2face.ranges import requested_range

    assert requested_range(header, 10) == expected  # first > last: unsatisfiable, answered 416
