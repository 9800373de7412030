"""Generate (and optionally serve) the offline demo corpus: AVSpeech-format CSVs over synthetic videos.

    python -m pipelines.demo_corpus --out demo_corpus --serve 8765
    python -m pipelines.preprocess --csv demo_corpus/avspeech_train.csv \\
        --url-template 'http://127.0.0.1:8765/{ytid}.mp4' ...

The faces are real (LFW, shipped with scikit-image); the voices are espeak-ng; the pairing of the two
is synthetic (see corpus_manifest.json). A thin CLI over speech2face.synth.corpus; it imports no Ray.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time

from speech2face.synth.corpus import MAX_CLIPS_PER_SPEAKER, CorpusConfig, CorpusError, generate_corpus, summarize

DEFAULTS = CorpusConfig()


def _at_least(minimum: int, name: str):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{name} must be >= {minimum}, got {value}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.demo_corpus",
        description=(
            "Write an offline demo corpus into --out: one mp4 per speaker (a real LFW face, an espeak-ng voice "
            "derived from that face's dlib descriptor, so the voice-face pairing is synthetic), plus "
            "avspeech_train.csv / avspeech_test.csv (AVSpeech format, disjoint speakers) and corpus_manifest.json. "
            "Re-running with the same arguments reuses a complete corpus."
        ),
    )
    parser.add_argument("--out", required=True, help="directory to write the corpus into (created if missing)")
    parser.add_argument(
        "--speakers",
        type=_at_least(2, "--speakers"),
        default=DEFAULTS.speakers,
        help=f"number of speakers, at most the ~93 LFW faces dlib detects (default {DEFAULTS.speakers})",
    )
    parser.add_argument(
        "--clips-per-speaker",
        type=_at_least(1, "--clips-per-speaker"),
        default=DEFAULTS.clips_per_speaker,
        help=f"segments per speaker's video, 1-{MAX_CLIPS_PER_SPEAKER} (default {DEFAULTS.clips_per_speaker})",
    )
    parser.add_argument(
        "--test-speakers",
        type=_at_least(1, "--test-speakers"),
        default=DEFAULTS.test_speakers,
        help=f"speakers held out in avspeech_test.csv (default {DEFAULTS.test_speakers})",
    )
    parser.add_argument(
        "--seed",
        type=_at_least(0, "--seed"),
        default=DEFAULTS.seed,
        help="seed for which faces speak, ytids, positions and texts (default 0)",
    )
    parser.add_argument(
        "--workers",
        type=_at_least(1, "--workers"),
        default=2,
        help="processes rendering speakers in parallel (default 2)",
    )
    parser.add_argument(
        "--serve",
        type=int,
        metavar="PORT",
        default=None,
        help="then serve --out on http://127.0.0.1:PORT until Ctrl-C (0 picks a free port)",
    )
    return parser  # fmt: skip


def _serve(directory: str, port: int) -> int:
    """Serve ``directory`` until Ctrl-C or SIGTERM (how `make demo` stops it)."""
    from speech2face.synth.server import serve_directory, url_template

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # SystemExit unwinds the with-block, closing the socket
    try:
        with serve_directory(directory, port) as (_, base_url):
            print(f"serving {directory} at {base_url}; use --url-template '{url_template(base_url)}' (Ctrl-C stops)",
                  flush=True)  # fmt: skip
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                print("stopped serving")
    except OSError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    config = CorpusConfig(args.speakers, args.clips_per_speaker, args.test_speakers, args.seed)
    try:
        config.validate()
    except ValueError as error:
        parser.error(str(error))
    if args.serve is not None and not 0 <= args.serve <= 65535:
        parser.error(f"--serve PORT must be in 0..65535, got {args.serve}")
    began = time.monotonic()
    try:
        manifest = generate_corpus(args.out, config, workers=args.workers)
    except CorpusError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    counts = summarize(manifest)
    print(
        f"corpus in {args.out}: {counts['speakers']} speakers ({counts['train_speakers']} train, "
        f"{counts['test_speakers']} test), {counts['clips']} clips ({counts['train_clips']} train, "
        f"{counts['test_clips']} test; {counts['short_clips']} shorter than 6 s, {counts['distractor_clips']} with a "
        f"second face), {counts['distinct_voices']} distinct voices, {counts['megabytes']} MB, "
        f"{time.monotonic() - began:.1f} s"
    )
    if args.serve is not None:
        return _serve(args.out, args.serve)
    return 0


if __name__ == "__main__":
    sys.exit(main())
