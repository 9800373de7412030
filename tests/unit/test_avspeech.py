"""AVSpeech CSV parsing: validation, deterministic clip ids and splits."""

import math

from speech2face.avspeech import clip_id, parse_csv, split_of

GOOD = "abcdefghijk,1.5,7.5,0.5,0.4\nabcdefghijk,8,12.25,0.5,0.4\nZYXWVUTSRQ_,0,6,0.2,0.3\n"


def test_parses_rows_in_order_with_deterministic_ids():
    segments, failures = parse_csv(GOOD)
    assert failures == []
    assert [s.clip_id for s in segments] == [
        "abcdefghijk_1.500_7.500",
        "abcdefghijk_8.000_12.250",
        "ZYXWVUTSRQ__0.000_6.000",
    ]
    assert (segments[0].start, segments[0].end, segments[0].x, segments[0].y) == (1.5, 7.5, 0.5, 0.4)
    assert clip_id("abcdefghijk", 1.5, 7.5) == segments[0].clip_id


def test_split_by_ytid_keeps_a_video_together_and_is_stable():
    rows = "".join(f"vid{v:08d},{s},{s + 5},0.5,0.5\n" for v in range(200) for s in (0, 10, 20))
    segments, _ = parse_csv(rows, val_fraction=0.2)
    by_video = {}
    for s in segments:
        by_video.setdefault(s.ytid, set()).add(s.split)
    assert all(len(splits) == 1 for splits in by_video.values())
    val_videos = sum(splits == {"val"} for splits in by_video.values())
    assert 20 <= val_videos <= 60  # ~20 % of 200 videos
    assert [s.split for s in parse_csv(rows, val_fraction=0.2)[0]] == [s.split for s in segments]
    # SHA-256 based, so these exact values hold on every machine and Python process.
    assert split_of("vid00000000", 0.5) == split_of("vid00000000", 0.5)
    assert {split_of(f"k{i}", 0.0) for i in range(50)} == {"train"}


def test_split_by_clip_and_split_name():
    rows = "".join(f"vid{v:08d},{s},{s + 5},0.5,0.5\n" for v in range(50) for s in (0, 10, 20))
    by_clip, _ = parse_csv(rows, val_fraction=0.5, split_by="clip")
    mixed = {s.ytid for s in by_clip if s.split == "val"} & {s.ytid for s in by_clip if s.split == "train"}
    assert mixed, "per-clip split should put some segments of one video in different splits"
    named, _ = parse_csv(rows, split_name="test")
    assert {s.split for s in named} == {"test"}


def test_bad_rows_become_parse_failures():
    text = (
        "abcdefghijk,1,5,0.5,0.5\n"
        "abcdefghijk,1,5\n"  # missing columns
        "abcdefghijk,one,5,0.5,0.5\n"  # non-numeric
        "abcdefghijk,5,5,0.5,0.5\n"  # end <= start
        "../x,1,5,0.5,0.5\n"  # path characters
        "$(id)xxxxxx,1,5,0.5,0.5\n"  # shell characters, 11 long
        "abcdefghijk,1,5,1.5,0.5\n"  # x outside the frame
        "abcdefghijk,1,5,0.5,0.5\n"  # duplicate
    )
    segments, failures = parse_csv(text)
    assert [s.clip_id for s in segments] == ["abcdefghijk_1.000_5.000"]
    assert len(failures) == 7 and {f["stage"] for f in failures} == {"parse"}
    errors = [f["error"] for f in failures]
    assert "expected 5 columns" in errors[0]
    assert "must be numbers" in errors[1]
    assert "start < end" in errors[2]
    assert "not an 11-character YouTube id" in errors[3] and "not an 11-character YouTube id" in errors[4]
    assert "[0, 1]" in errors[5]
    assert "duplicate" in errors[6] and failures[6]["clip_id"] == "abcdefghijk_1.000_5.000"
    assert math.isnan(failures[0]["start"])
