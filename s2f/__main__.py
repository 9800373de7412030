"""s2f <job> [flags]: the Speech2Face jobs behind one command; ``s2f <job> --help`` lists a job's flags."""

from __future__ import annotations

import importlib
import sys

from speech2face import __version__

# job -> (the module whose main() runs it, which is also `python -m <module>`; what the job does)
JOBS = {
    "preprocess": ("pipelines.preprocess", "AVSpeech CSV + media -> clips/ Parquet (Ray Data)"),
    "train": ("trainer.train", "train the voice encoder (Ray Train, DDP)"),
    "sweep": ("tuning.sweep", "sweep loss weights, temperature and lr (Ray Tune)"),
    "evaluate": ("trainer.evaluate", "retrieval R@K of a trained encoder on a split"),
    "predict": ("trainer.predict", "a voice file -> its face feature, nearest faces, drawn face"),
    "train-decoder": ("trainer.train_decoder", "train the face decoder: face feature -> face image"),
    "evaluate-decoder": ("trainer.evaluate_decoder", "how well the decoder draws faces, from faces and voices"),
    "serve": ("serving.app", "the HTTP API and web page (Ray Serve)"),
    "demo": ("demo.run", "the whole job on the offline demo corpus (what `make demo` runs)"),
    "demo-corpus": ("demo_corpus", "write (and serve) the offline demo corpus"),
}
# A package runs as `python -m <package>`; its main() lives in this module of it.
MAIN_OF = {"pipelines.preprocess": "pipelines.preprocess.run", "demo_corpus": "demo_corpus.__main__"}


def usage() -> str:
    width = max(map(len, JOBS))
    lines = ["usage: s2f <job> [flags]      s2f <job> --help: the job's flags; s2f --version", "", "jobs:"]
    lines += [f"  {job:<{width}}  {what}  (python -m {module})" for job, (module, what) in JOBS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    if argv[0] == "--version":
        print(f"s2f {__version__}")
        return 0
    job, *rest = argv
    if job not in JOBS:
        print(f"s2f: unknown job {job!r}; one of: {', '.join(JOBS)}", file=sys.stderr)
        return 2
    module = JOBS[job][0]
    return importlib.import_module(MAIN_OF.get(module, module)).main(rest, prog=f"s2f {job}")


if __name__ == "__main__":
    sys.exit(main())
