"""`python -m demo.sources` (docs/demo.md): the demo corpus as media you already hold, on the real Ceph RGW
S3 server, preprocessed without any HTTP server. The YouTube path's output of the same corpus (the session's
``small_dataset``) is the reference for the pre-downloaded clips."""

import shutil

import numpy as np

from demo.sources import CLIPS, VOXCELEB2
from speech2face import dataset, storage
from speech2face.dataset import Manifest
from tests.support.cli import check, run
from tests.support.outputs import read_clips


def test_the_sources_demo_on_s3(s3_bucket, small_corpus, small_dataset, ray_address, tmp_path):
    out = tmp_path / "demo_sources"
    shutil.copytree(small_corpus.directory, out / "corpus")  # the same corpus, reused rather than generated
    size = [f"--{name.replace('_', '-')}={small_corpus.manifest['config'][name]}"
            for name in ("speakers", "clips_per_speaker", "test_speakers")]  # fmt: skip
    result = check(run("demo.sources", "--out", str(out), "--store", s3_bucket.uri, *size, timeout=900,
                       ray_address=ray_address))  # fmt: skip
    assert "not regenerating" in result.stdout
    held = storage.list_files(s3_bucket.uri)
    assert sum(f"/{VOXCELEB2}/id" in uri for uri in held) == sum(f"/{CLIPS}/" in uri for uri in held) - 2  # CSVs

    reference, clips = read_clips(str(small_dataset)), read_clips(str(out / "data" / CLIPS))
    assert set(clips) == set(reference)
    for clip_id, clip in clips.items():
        assert clip[dataset.MEDIA].startswith(storage.join(s3_bucket.uri, CLIPS))
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
