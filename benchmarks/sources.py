"""CPU seconds per clip of each media source, on the same clips: the YouTube path (yt-dlp over loopback HTTP)
against the media you already hold (whole videos, each segment's clip, a VoxCeleb2 tree of 224x224 tracks).

The demo corpus is generated, laid out as each source (demo_corpus.layouts; not timed: a user holds the
layout already), then each source goes through pipelines.preprocess into a fresh output. The figures are
the manifest's ``cpu_s_per_clip`` (measured inside each stage, ffmpeg and yt-dlp subprocesses included), so
they come from the product's own code path. Run it on a quiet machine.

    python -m benchmarks.sources --speakers 30 --json benchmarks/results/sources.json
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from benchmarks.train_step import finish_report, new_report
from demo_corpus import layouts
from demo_corpus.corpus import TEST_CSV, TRAIN_CSV, CorpusConfig, generate_corpus
from demo_corpus.server import serve_directory, url_template
from pipelines import preprocess

SOURCES = ("youtube", "whole_videos", "segment_clips", "voxceleb2")


def source_config(source: str, corpus: Path, held: Path, out: str, base_url: str) -> preprocess.PreprocessConfig:
    """Each source's flags over the same segments; all write with dlib faces (the feature stage's cost does
    not depend on the source: every source hands it the same 224x224 crop)."""
    csvs = dict(csv=str(corpus / TRAIN_CSV), test_csv=str(corpus / TEST_CSV))
    flags = {
        "youtube": csvs | dict(url_template=url_template(base_url)),
        "whole_videos": csvs | dict(media_root=str(corpus)),
        "segment_clips": csvs | dict(media_root=str(held / "clips"), media_pattern=layouts.CLIP_PATTERN),
        "voxceleb2": dict(voxceleb2=str(held / "voxceleb2")),
    }[source]
    return preprocess.PreprocessConfig(**flags, out=out, face_embedder="dlib", cpus_per_actor=0.5, val_fraction=0.1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--speakers", type=int, default=30, help="speakers of the generated demo corpus")
    parser.add_argument("--clips-per-speaker", type=int, default=3)
    parser.add_argument("--work", help="keep the corpus, layouts and outputs here (default: a temp folder)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    report = new_report("benchmarks.sources", argv) | {"sources": {}}
    report["machine"]["load_average_at_start"] = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="s2f-sources-") as temp:
        work = Path(args.work or temp)
        corpus, held = work / "corpus", work / "held"
        config = CorpusConfig(speakers=args.speakers, clips_per_speaker=args.clips_per_speaker,
                              test_speakers=max(1, args.speakers // 4))  # fmt: skip
        generate_corpus(corpus, config, log=lambda message: None)
        layouts.segment_clips(corpus, held / "clips")
        layouts.voxceleb2_tree(corpus, held / "clips", held / "voxceleb2")
        with serve_directory(corpus) as (_, base_url):
            for source in SOURCES:
                out = str(work / "out" / source)
                started = time.perf_counter()
                manifest = preprocess.run(source_config(source, corpus, held, out, base_url))
                cpu = manifest.cpu_s_per_clip
                report["sources"][source] = {
                    "clips": manifest.counts.clips,
                    "failures": manifest.counts.failures,
                    "wall_s": round(time.perf_counter() - started, 1),
                    "cpu_s_per_clip": {stage: round(seconds, 4) for stage, seconds in cpu.items()},
                    "cpu_s_per_clip_total": round(sum(cpu.values()), 4),
                }
                print(source, json.dumps(report["sources"][source]), flush=True)
    youtube = report["sources"]["youtube"]["cpu_s_per_clip_total"]
    report["cpu_ratio_to_youtube"] = {
        source: round(row["cpu_s_per_clip_total"] / youtube, 3) for source, row in report["sources"].items()
    }
    finish_report(report, args.json)


if __name__ == "__main__":
    main()
