"""The second demo: the demo corpus as media you already hold, preprocessed without any HTTP server.

    python -m demo.sources --out demo_sources                          # the files in local folders
    python -m demo.sources --out demo_sources --store s3://bucket/demo # on S3 (AWS_* settings in the env)

Steps: generate the demo corpus -> lay it out as pre-downloaded AVSpeech clips (<store>/avspeech_clips/
{ytid}_{start}_{end}.mp4 beside the two CSVs) and as a VoxCeleb2 tree (<store>/voxceleb2/id<face>/<ytid>/
<n>.mp4, 224x224 face tracks) -> pipelines.preprocess on each (--media-root, then --voxceleb2, split by
speaker) -> a summary per source. The layouts are written under <out>/held first, so you can look at them.
A rerun reuses the corpus, the layouts and the clips already preprocessed. docs/demo.md has more.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from demo.steps import StepFailed, cli_args, run_cli, start_demo_ray
from demo_corpus import layouts
from demo_corpus.corpus import TEST_CSV, TRAIN_CSV, CorpusConfig, generate_corpus
from pipelines.preprocess.config import PreprocessConfig
from speech2face import flags, storage
from speech2face.dataset import Manifest
from speech2face.flags import field_of, flag

PROG = "python -m demo.sources"
CLIPS, VOXCELEB2 = "avspeech_clips", "voxceleb2"
COMMON_FLAGS = "--face-embedder dlib --cpus-per-actor 0.5"


@dataclass(frozen=True, kw_only=True)
class SourcesDemoConfig(CorpusConfig):
    """The demo corpus's size (CorpusConfig), where its media are held and how the runs split."""

    out: str = flag("demo_sources", help="the corpus, the layouts (held/), the outputs and logs go here")
    store: str = flag(
        "", help="where the layouts are held: a folder or s3://bucket/prefix (default: <out>/held itself)"
    )
    val_fraction: float = field_of(PreprocessConfig, "val_fraction")
    test_fraction: float = field_of(PreprocessConfig, "test_fraction", 0.25)
    num_cpus: int = flag(4, minimum=1, help="logical CPUs of the local Ray (when RAY_ADDRESS names none)")

    def corpus(self) -> CorpusConfig:
        return CorpusConfig(**{f.name: getattr(self, f.name) for f in dataclasses.fields(CorpusConfig)})


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    args = flags.parse(SourcesDemoConfig, argv, prog, __doc__)
    out = Path(args.out).resolve()
    corpus_dir, held, logs = out / "corpus", out / "held", out / "logs"
    store = args.store or str(held)
    if storage.is_remote(store):
        storage.check_writable(store)  # a bad bucket or key fails here, before any work

    print("[demo.sources] generating the demo corpus", flush=True)
    generate_corpus(corpus_dir, args.corpus())
    print(f"[demo.sources] laying it out under {held}", flush=True)
    layouts.segment_clips(corpus_dir, held / CLIPS)
    layouts.voxceleb2_tree(corpus_dir, held / CLIPS, held / VOXCELEB2)
    if store != str(held):
        print(f"[demo.sources] uploading to {store}: {layouts.upload(held, store)} files", flush=True)
    if not os.environ.get("RAY_ADDRESS"):
        os.environ["RAY_ADDRESS"] = start_demo_ray(args.num_cpus)

    clips_root = storage.join(store, CLIPS)
    runs = [
        ("pre-downloaded AVSpeech clips", CLIPS, cli_args(
            "--csv {train} --test-csv {test} --media-root {root} --media-pattern {pattern} --val-fraction {val}",
            train=storage.join(clips_root, TRAIN_CSV), test=storage.join(clips_root, TEST_CSV), root=clips_root,
            pattern=layouts.CLIP_PATTERN, val=args.val_fraction)),
        ("a VoxCeleb2 tree", VOXCELEB2, cli_args(
            "--voxceleb2 {root} --val-fraction {val} --test-fraction {test}",
            root=storage.join(store, VOXCELEB2), val=args.val_fraction, test=args.test_fraction)),
    ]  # fmt: skip
    for title, name, source_args in runs:
        print(f"\n[demo.sources] preprocess {title}", flush=True)
        try:
            run_cli("pipelines.preprocess", *source_args, "--out", str(out / "data" / name), *COMMON_FLAGS.split(),
                    log=logs / f"preprocess_{name}.log")  # fmt: skip
        except StepFailed as failed:
            raise SystemExit(f"[demo.sources] {failed}; fix the cause and rerun") from None

    print("\n[demo.sources] done:")
    for title, name, _ in runs:
        data = out / "data" / name
        counts = Manifest.read(str(data)).counts
        speakers = f"; speakers per split {counts.speakers_per_split}" if counts.speakers_per_split else ""
        print(f"  {title}: clips per split {counts.per_split}{speakers}; failures {counts.failures} -> {data}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
