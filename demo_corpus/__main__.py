"""Generate (and optionally serve) the offline demo corpus: AVSpeech-format CSVs over synthetic videos.

Writes into --out one mp4 per speaker (a real LFW face, an espeak-ng voice derived from that face's dlib
descriptor, so the voice-face pairing is synthetic), avspeech_train.csv / avspeech_test.csv (AVSpeech
format, disjoint speakers) and corpus_manifest.json.

    python -m demo_corpus --out demo_corpus --serve 8765
    python -m pipelines.preprocess --csv demo_corpus/avspeech_train.csv \\
        --url-template 'http://127.0.0.1:8765/{ytid}.mpd' ...

A thin command over demo_corpus.corpus; it imports no Ray.
"""

from __future__ import annotations

import signal
import sys
import time
from dataclasses import dataclass, fields

from demo_corpus.corpus import CorpusConfig, CorpusError, generate_corpus, summarize
from speech2face import flags
from speech2face.flags import flag

PROG = "python -m demo_corpus"


@dataclass(frozen=True, kw_only=True)
class CorpusCommand(CorpusConfig):
    out: str = flag(
        help="directory to write the corpus into (created if missing); rerunning with the same "
        "arguments reuses a complete corpus"
    )
    workers: int = flag(2, help="processes rendering speakers in parallel", minimum=1)
    serve: int | None = flag(
        None,
        help="then serve --out on http://127.0.0.1:PORT until Ctrl-C (0 picks a free port)",
        metavar="PORT",
        minimum=0,
        maximum=65535,
    )

    def corpus(self) -> CorpusConfig:
        return CorpusConfig(**{f.name: getattr(self, f.name) for f in fields(CorpusConfig)})


def _serve(directory: str, port: int) -> int:
    """Serve ``directory`` until Ctrl-C or SIGTERM (how `make demo` stops it)."""
    from demo_corpus.server import serve_directory, url_template

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # SystemExit unwinds the with-block, closing the socket
    try:
        with serve_directory(directory, port) as (_, base_url):
            print(
                f"serving {directory} at {base_url}; use --url-template '{url_template(base_url)}' (Ctrl-C stops)",
                flush=True,
            )
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                print("stopped serving")
    except OSError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    command = flags.parse(CorpusCommand, argv, prog, __doc__)
    began = time.monotonic()
    try:
        manifest = generate_corpus(command.out, command.corpus(), workers=command.workers)
    except CorpusError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    counts = summarize(manifest)
    print(
        f"corpus in {command.out}: {counts['speakers']} speakers ({counts['train_speakers']} train, "
        f"{counts['test_speakers']} test), {counts['clips']} clips ({counts['train_clips']} train, "
        f"{counts['test_clips']} test; {counts['short_clips']} shorter than 6 s, {counts['distractor_clips']} with a "
        f"second face), {counts['distinct_voices']} distinct voices, {counts['megabytes']} MB, "
        f"{time.monotonic() - began:.1f} s"
    )
    if command.serve is not None:
        return _serve(command.out, command.serve)
    return 0


if __name__ == "__main__":
    sys.exit(main())
