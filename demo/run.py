"""`make demo`: the whole Speech2Face job on the built-in demo corpus, on this machine.

    python -m demo.run --out demo_output            # what `make demo` runs

Steps: generate the demo corpus -> start a local Ray (with its dashboard) and serve the corpus on
loopback -> pipelines.preprocess (the train and test CSVs) -> trainer.train (preset tiny) -> tuning.sweep
(a few short trials) -> trainer.evaluate -> trainer.train_decoder (preset tiny) -> trainer.evaluate_decoder
(faces drawn from the held-out speakers' voices) -> <out>/REPORT.md. Each step is the CLI a user submits
with `ray job submit`, run as a subprocess that joins this Ray through RAY_ADDRESS.

A rerun reuses finished work: the corpus is kept, preprocessing skips clips it already wrote,
training resumes (or is skipped when it has all its epochs), a finished sweep is not rerun, and an
evaluation newer than the model it evaluated is kept.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from demo.report import write_report
from demo.steps import LOG_DIR, StepFailed, Steps, cli_args, run_cli, start_demo_ray, stop_demo_ray
from demo_corpus.corpus import TEST_CSV, TRAIN_CSV, CorpusConfig, generate_corpus
from demo_corpus.server import serve_directory, url_template
from pipelines.preprocess.config import PreprocessConfig
from speech2face import flags
from speech2face.flags import field_of, flag
from trainer.decoder.config import DecoderConfig
from trainer.encoder.config import TrainConfig
from tuning.config import SweepConfig

PROG = "python -m demo.run"

RUN_NAME, SWEEP_NAME, DECODER_NAME = "demo", "sweep", "decoder"
# --num-cpus: the logical CPUs of the local Ray the steps join (benchmarks.device starts its own with them too)
LOCAL_RAY_CPUS = max(os.cpu_count() or 1, 4)
# Tiny preset on 2 CPU cores, 20 epochs on the default corpus. --amp auto: bf16 autocast where the CPU has it
# natively (AMX / AVX512-BF16: ~5 s an epoch), fp32 where bf16 would be emulated (several times slower).
# The sweep's trials train the same way, with its loss weights and lr.
COMMON_FLAGS = [
    "--preset",
    "tiny",
    "--num-workers",
    "1",
    "--cpus-per-worker",
    "2",
    "--batch-size",
    "8",
    "--crop-frames",
    "300",
    "--amp",
    "auto",
    "--seed",
    "0",
    "--cache-data",
]
# The tiny face decoder: ~1.1 s an epoch on the demo's 171 training faces (100 epochs: face R@1 7-10x chance, voice 3x).
DECODER_FLAGS = ["--preset", "tiny", "--cpus-per-worker", "2", "--batch-size", "16", "--seed", "0", "--cache-data"]
# The demo's val gallery holds under 10 faces, so val R@10 is always 1: the sweep ranks by the unweighted val L2.
SWEEP_METRIC = ["--metric", "val_l2norm", "--mode", "min"]


@dataclass(frozen=True, kw_only=True)
class DemoConfig(CorpusConfig):
    """The demo corpus's size (CorpusConfig) and how long each step trains."""

    out: str = flag("demo_output", help="everything goes here; REPORT.md at the top")
    val_fraction: float = field_of(PreprocessConfig, "val_fraction")
    epochs: int = field_of(TrainConfig, "epochs", 20)
    trials: int = field_of(SweepConfig, "num_samples", 3)
    sweep_epochs: int = field_of(SweepConfig, "epochs", 2)
    decoder_epochs: int = field_of(DecoderConfig, "epochs")
    face_embedder: str = field_of(PreprocessConfig, "face_embedder", "dlib")
    vggface_weights: str | None = field_of(PreprocessConfig, "vggface_weights")
    loss_distill: float = field_of(TrainConfig, "loss_distill")
    use_gpu: bool = flag(False, help="the encoder, the sweep's trials and the decoder train on GPUs (--use-gpu)")
    num_cpus: int = flag(
        LOCAL_RAY_CPUS,
        minimum=1,
        help="logical CPUs of the local Ray: training takes 2, a sweep trial 2.01, Ray Data needs 1 more",
    )

    def corpus(self) -> CorpusConfig:
        return CorpusConfig(**{f.name: getattr(self, f.name) for f in dataclasses.fields(CorpusConfig)})


def sweep_complete(sweep_dir: Path, trials: int) -> bool:
    """Every trial has a row in trials.csv and none was interrupted (a Ctrl-C'd sweep writes one too)."""
    if not (sweep_dir / "best_config.json").is_file():
        return False
    rows = (sweep_dir / "trials.csv").read_text().splitlines()[1:]
    return len(rows) >= trials and not any(row.endswith(",INTERRUPTED") for row in rows)


def epochs_done(run_dir: Path) -> int:
    metrics = run_dir / "metrics.csv"
    return max(len(metrics.read_text().splitlines()) - 1, 0) if metrics.is_file() else 0


def up_to_date(output: Path, *inputs: Path) -> bool:
    """``output`` exists and was written after every one of ``inputs``: a rerun need not make it again."""
    return output.is_file() and all(output.stat().st_mtime > source.stat().st_mtime for source in inputs)


def evaluate_unless_done(module: str, args: list[str], result: Path, inputs: list[Path], log: Path) -> None:
    """An evaluation, unless an earlier demo already evaluated these very files."""
    if up_to_date(result, *inputs):
        print(f"[demo] {result} is up to date; not re-evaluating")
        return
    run_cli(module, *args, log=log)


def train_unless_done(module: str, run_dir: Path, epochs: int, args: list[str], log: Path) -> None:
    """A training run, unless an earlier demo already trained it for all its epochs."""
    if epochs_done(run_dir) >= epochs:
        print(f"[demo] {run_dir} already has {epochs} epochs; not retraining")
        return
    run_cli(module, *args, "--epochs", str(epochs), log=log)


class DemoJob:
    """The demo's steps over one --out, each the CLI a user submits; finished work is reused."""

    def __init__(self, args: DemoConfig):
        self.args, out = args, Path(args.out).resolve()
        self.out, self.corpus_dir, self.data, self.runs, self.logs = (
            out,
            out / "corpus",
            out / "data",
            out / "runs",
            out / LOG_DIR,
        )
        self.model = self.runs / RUN_NAME / "model.safetensors"
        self.decoder = self.runs / DECODER_NAME / "decoder.safetensors"
        self.gpu_flags = ["--use-gpu"] if args.use_gpu else []

    def steps(self) -> list[tuple[str, Callable[[], None]]]:
        """(title, action) in order; the corpus first, then the Ray steps (they join RAY_ADDRESS)."""
        return [
            ("generate the demo corpus", self.make_corpus),
            ("preprocess (Ray Data)", self.preprocess),
            ("train the voice encoder (Ray Train)", self.train),
            ("sweep loss weights and lr (Ray Tune)", self.sweep),
            ("evaluate on the held-out speakers", self.evaluate),
            ("train the face decoder (Ray Train)", self.train_decoder),
            ("draw the held-out speakers' faces", self.draw),
        ]

    def make_corpus(self) -> None:
        generate_corpus(self.corpus_dir, self.args.corpus())

    def _run_flags(self, name: str) -> list[str]:
        return cli_args("--data {data} --storage {runs} --name {name}", data=self.data, runs=self.runs, name=name)

    def preprocess(self) -> None:
        embedder = ["--face-embedder", self.args.face_embedder]
        if self.args.vggface_weights:
            embedder += ["--vggface-weights", self.args.vggface_weights]
        with serve_directory(self.corpus_dir) as (_, base_url):
            run_cli(
                "pipelines.preprocess",
                *cli_args(
                    "--csv {train} --test-csv {test} --out {data} --url-template {url} --cpus-per-actor 0.5 "
                    "--val-fraction {val}",
                    train=self.corpus_dir / TRAIN_CSV,
                    test=self.corpus_dir / TEST_CSV,
                    data=self.data,
                    url=url_template(base_url),
                    val=self.args.val_fraction,
                ),
                *embedder,
                log=self.logs / "preprocess.log",
            )

    def train(self) -> None:
        distill = ["--loss-distill", str(self.args.loss_distill)] if self.args.loss_distill else []
        flags_ = [*self._run_flags(RUN_NAME), "--lr", "1e-3", *COMMON_FLAGS, *distill, *self.gpu_flags]
        train_unless_done("trainer.train", self.runs / RUN_NAME, self.args.epochs, flags_, self.logs / "train.log")

    def sweep(self) -> None:
        sweep_dir = self.runs / SWEEP_NAME
        if sweep_complete(sweep_dir, self.args.trials):
            print(f"[demo] {sweep_dir} is complete; not rerunning it")
            return
        resume = ["--resume"] if (sweep_dir / "tuner.pkl").is_file() else []
        sweep_args = cli_args(
            "--epochs {epochs} --num-samples {trials} --max-concurrent-trials 1",
            epochs=self.args.sweep_epochs,
            trials=self.args.trials,
        )
        run_cli(
            "tuning.sweep",
            *self._run_flags(SWEEP_NAME),
            *sweep_args,
            *COMMON_FLAGS,
            *SWEEP_METRIC,
            *self.gpu_flags,
            *resume,
            log=self.logs / "sweep.log",
        )

    def evaluate(self) -> None:
        evaluate_args = cli_args(
            "--data {data} --model {model} --split test --protocols clip,oh,identity,matching --seconds 1,3,6 "
            "--out {out}",
            data=self.data,
            model=self.model,
            out=self.out / "eval",
        )
        result = self.out / "eval" / "eval.json"
        evaluate_unless_done("trainer.evaluate", evaluate_args, result, [self.model], self.logs / "evaluate.log")

    def train_decoder(self) -> None:
        flags_ = [*self._run_flags(DECODER_NAME), *DECODER_FLAGS, *self.gpu_flags]
        log = self.logs / "train_decoder.log"
        train_unless_done("trainer.train_decoder", self.runs / DECODER_NAME, self.args.decoder_epochs, flags_, log)

    def draw(self) -> None:
        draw_args = cli_args(
            "--data {data} --decoder {decoder} --model {model} --split test --out {out}",
            data=self.data,
            decoder=self.decoder,
            model=self.model,
            out=self.out / "decoder_eval",
        )
        result = self.out / "decoder_eval" / "decoder_eval.json"
        inputs = [self.model, self.decoder]
        evaluate_unless_done("trainer.evaluate_decoder", draw_args, result, inputs, self.logs / "evaluate_decoder.log")


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    args = flags.parse(DemoConfig, argv, prog, __doc__)
    job = DemoJob(args)
    began = time.monotonic()
    (corpus_title, make_corpus), *ray_steps = job.steps()
    steps = Steps(total=1 + len(ray_steps))
    try:
        steps.run(corpus_title, make_corpus)
        os.environ["RAY_ADDRESS"] = start_demo_ray(args.num_cpus)
        for title, action in ray_steps:
            steps.run(title, action)
        stop_demo_ray()
    except StepFailed as failed:
        raise SystemExit(f"[demo] {failed}; fix the cause and rerun: finished steps are reused") from None
    total = time.monotonic() - began
    write_report(job.out, steps.timings, total, dataclasses.asdict(args))
    print(f"\n[demo] done in {total / 60:.1f} min. Report: {job.out / 'REPORT.md'}")
    print(
        f"[demo] try it on your own voice: .venv/bin/python -m serving.app --model {job.model} --gallery {job.data}"
        f" --decoder {job.decoder}  (then open http://127.0.0.1:8000/)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
