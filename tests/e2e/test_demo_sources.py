"""`python -m demo.sources` (docs/demo.md): the demo corpus as media you already hold, on the real Ceph RGW
S3 server, preprocessed without any HTTP server. The YouTube path's output of the same corpus (the session's
``small_dataset``) is the reference for the pre-downloaded clips. The command runs in the background on a Ray of
its own (tests/conftest.py), on a copy of the session's ``small_corpus``."""

import numpy as np

from demo.sources import CLIPS, VOXCELEB2
from speech2face import dataset, storage
from speech2face.dataset import Manifest
from tests.support import rgw
from tests.support.cli import check
from tests.support.outputs import read_clips


def test_the_sources_demo_on_s3(background_sources_demo, s3_server, small_corpus, small_dataset, monkeypatch):
    rgw.use_server(s3_server, monkeypatch)  # this process reads the bucket too
    result = check(background_sources_demo.run.result()[0])
    out, bucket_uri = background_sources_demo.run.out, background_sources_demo.bucket.uri
    assert "not regenerating" in result.stdout
    held = storage.list_files(bucket_uri)
    assert sum(f"/{VOXCELEB2}/id" in uri for uri in held) == sum(f"/{CLIPS}/" in uri for uri in held) - 2  # CSVs

    reference, clips = read_clips(str(small_dataset)), read_clips(str(out / "data" / CLIPS))
    assert set(clips) == set(reference)
    for clip_id, clip in clips.items():
        assert clip[dataset.MEDIA].startswith(storage.join(bucket_uri, CLIPS))
        assert np.array_equal(clip[dataset.WAVEFORM], reference[clip_id][dataset.WAVEFORM]), clip_id

    tracks = read_clips(str(out / "data" / VOXCELEB2))
    assert len(tracks) == len(clips) and all(c[dataset.MEDIA].startswith("s3://") for c in tracks.values())
    splits_of = {}
    for clip in tracks.values():
        splits_of.setdefault(clip[dataset.SPEAKER], set()).add(clip[dataset.SPLIT])
    assert len(splits_of) == len(small_corpus.manifest["speakers"]) and all(len(s) == 1 for s in splits_of.values())
    counts = Manifest.read(str(out / "data" / VOXCELEB2)).counts
    assert sum(counts.speakers_per_split.values()) == len(splits_of) and counts.failures == 0
    assert f"speakers per split {counts.speakers_per_split}" in result.stdout
