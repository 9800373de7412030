"""`make demo`: the whole Speech2Face job on the built-in demo corpus, on this machine.

    python -m demo.run --out demo_output            # what `make demo` runs

Steps: generate the demo corpus -> start a local Ray (with its dashboard) and serve the corpus on
loopback -> pipelines.preprocess (the train and test CSVs) -> trainer.train (preset tiny) -> tuning.sweep
(a few short trials) -> trainer.evaluate -> trainer.train_decoder (preset tiny) -> trainer.evaluate_decoder
(faces drawn from the held-out speakers' voices) -> <out>/REPORT.md. Each step is the CLI a user submits
with `ray job submit`, run as a subprocess that joins this Ray through RAY_ADDRESS.

A rerun reuses finished work: the corpus is kept, preprocessing skips clips it already wrote,
training resumes (or is skipped when it has all its epochs) and a finished sweep is not rerun.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from demo.report import write_report
from speech2face.synth.corpus import TEST_CSV, TRAIN_CSV, CorpusConfig, generate_corpus
from speech2face.synth.server import serve_directory, url_template

RUN_NAME, SWEEP_NAME, DECODER_NAME = "demo", "sweep", "decoder"
# Tiny preset on 2 CPU cores, 20 epochs on the default corpus. --amp auto: bf16 autocast where the CPU has it
# natively (AMX / AVX512-BF16: ~5 s an epoch), fp32 where bf16 would be emulated (several times slower).
# The sweep's trials train the same way, with its loss weights and lr.
COMMON_FLAGS = ["--preset", "tiny", "--num-workers", "1", "--cpus-per-worker", "2", "--batch-size", "8",
                "--crop-frames", "300", "--amp", "auto", "--seed", "0", "--cache-data"]  # fmt: skip
# The tiny face decoder: ~1.1 s an epoch on the demo's 171 training faces (100 epochs: face R@1 7-10x chance, voice 3x).
DECODER_FLAGS = ["--preset", "tiny", "--cpus-per-worker", "2", "--batch-size", "16", "--seed", "0", "--cache-data"]
# The demo's val gallery holds under 10 faces, so val R@10 is always 1: the sweep ranks by the unweighted val L2.
SWEEP_METRIC = ["--metric", "val_l2norm", "--mode", "min"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m demo.run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--out", default="demo_output", help="everything goes here; REPORT.md at the top")
    defaults = CorpusConfig()
    p.add_argument("--speakers", type=int, default=defaults.speakers, help="demo corpus speakers")
    p.add_argument("--clips-per-speaker", type=int, default=defaults.clips_per_speaker)
    p.add_argument("--test-speakers", type=int, default=defaults.test_speakers, help="held-out speakers")
    p.add_argument("--val-fraction", type=float, default=0.1, help="share of training videos held out for val")
    p.add_argument("--epochs", type=int, default=20, help="training epochs")
    p.add_argument("--trials", type=int, default=3, help="sweep trials")
    p.add_argument("--sweep-epochs", type=int, default=2, help="epochs per sweep trial at most")
    p.add_argument("--decoder-epochs", type=int, default=100, help="face decoder training epochs")
    p.add_argument(
        "--num-cpus",
        type=int,
        default=max(os.cpu_count() or 1, 4),
        help="logical CPUs of the local Ray: training takes 2, a sweep trial 2.01, Ray Data needs 1 more",
    )
    return p  # fmt: skip


class Steps:
    """Runs the steps in order, prints progress and keeps each step's wall time for the report."""

    def __init__(self, total: int):
        self.total, self.timings = total, []

    def run(self, title: str, action) -> None:
        print(f"\n[demo] step {len(self.timings) + 1}/{self.total}: {title}", flush=True)
        started = time.monotonic()
        action()
        seconds = time.monotonic() - started
        self.timings.append({"step": title, "seconds": round(seconds, 1)})
        print(f"[demo] {title}: {seconds:.1f} s", flush=True)


# Lines of Ray's own logging and progress a person does not read on the console; they stay in the step's log.
RAY_NOISE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+\s+INFO |Running Dataset|execution finished in|row/s\]|- split\(|"
    r"Checkpoint successfully created|Reporting training result|progress UI is available|Starting execution of Dataset|"
    r"Execution plan of Dataset|Requesting resources:|Attempting to start training worker group|"
    r"RayDeprecationWarning|self\.exclude_resources|Progress will be logged|has constructor arguments in the object|"
    r"^\(\w+ pid=\d+\)\s*$"
)
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# Ray Data's periodic progress report (stdout is not a terminal): one "-- MapBatches(Stage): done/total" per stage.
STAGE_PROGRESS = re.compile(r"logging_progress\.py:\d+ -- MapBatches\((\w+?)(?:Stage)?\): (\d+/\d+)")
REPORT_END = re.compile(r"logging_progress\.py:\d+ -- =+$")
LOG_DIR = "logs"


def run_cli(module: str, *args: str, log: Path) -> None:
    """One step's CLI in a subprocess that joins our Ray through RAY_ADDRESS.

    Its whole output goes to ``log``; the console gets the lines a person reads (steps, progress, summaries).
    """
    command = [sys.executable, "-m", module, *args]
    print("[demo] $ python " + " ".join(command[1:]), flush=True)
    print(f"[demo]   (full log: {log})", flush=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # progress lines as they happen, not at exit
    with open(log, "w") as file, subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                                  text=True, errors="replace", env=env) as process:  # fmt: skip
        progress: dict[str, str] = {}
        for line in process.stdout:
            file.write(line)
            plain = ANSI.sub("", line).rstrip()
            if found := STAGE_PROGRESS.search(plain):
                progress[found[1]] = found[2]
            elif REPORT_END.search(plain) and progress:
                print("[demo]   progress (blocks done/seen): " + ", ".join(f"{k} {v}" for k, v in progress.items()))
                progress.clear()
            elif plain.strip() and not RAY_NOISE.search(plain):
                print(plain, flush=True)
    if process.returncode != 0:
        tail = log.read_text(errors="replace").splitlines()[-40:]
        print("\n".join(ANSI.sub("", line) for line in tail), file=sys.stderr)
        raise SystemExit(f"[demo] {module} failed (the end of its log is above; all of it: {log}); fix the cause "
                         "and rerun: finished steps are reused")  # fmt: skip


def sweep_complete(sweep_dir: Path, trials: int) -> bool:
    """Every trial has a row in trials.csv and none was interrupted (a Ctrl-C'd sweep writes one too)."""
    if not (sweep_dir / "best_config.json").is_file():
        return False
    rows = (sweep_dir / "trials.csv").read_text().splitlines()[1:]
    return len(rows) >= trials and not any(row.endswith(",INTERRUPTED") for row in rows)


def epochs_done(run_dir: Path) -> int:
    metrics = run_dir / "metrics.csv"
    return max(len(metrics.read_text().splitlines()) - 1, 0) if metrics.is_file() else 0


def start_ray(num_cpus: int) -> str:
    """A local Ray with its dashboard on 127.0.0.1; returns the address the steps join."""
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # loopback only; the cluster docs keep token auth on
    context = ray.init(address="local", num_cpus=num_cpus, include_dashboard=True, dashboard_host="127.0.0.1")
    print(f"[demo] Ray dashboard: http://{context.dashboard_url}", flush=True)
    return ray.get_runtime_context().gcs_address


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = Path(args.out).resolve()
    corpus_dir, data, runs, logs = out / "corpus", out / "data", out / "runs", out / LOG_DIR
    corpus_config = CorpusConfig(args.speakers, args.clips_per_speaker, args.test_speakers)
    try:
        corpus_config.validate()
    except ValueError as error:
        build_parser().error(str(error))
    began = time.monotonic()
    steps = Steps(total=7)
    steps.run("generate the demo corpus", lambda: generate_corpus(corpus_dir, corpus_config))
    os.environ["RAY_ADDRESS"] = start_ray(args.num_cpus)
    with serve_directory(corpus_dir) as (_, base_url):
        source = ["--url-template", url_template(base_url), "--face-embedder", "dlib", "--cpus-per-actor", "0.5",
                  "--val-fraction", str(args.val_fraction)]  # fmt: skip
        steps.run("preprocess (Ray Data)", lambda: run_cli(
            "pipelines.preprocess", "--csv", str(corpus_dir / TRAIN_CSV), "--test-csv", str(corpus_dir / TEST_CSV),
            "--out", str(data), *source, log=logs / "preprocess.log"))  # fmt: skip

    def train() -> None:
        if epochs_done(runs / RUN_NAME) >= args.epochs:
            print(f"[demo] {runs / RUN_NAME} already has {args.epochs} epochs; not retraining")
            return
        run_cli("trainer.train", "--data", str(data), "--storage", str(runs), "--name", RUN_NAME,
                "--epochs", str(args.epochs), "--lr", "1e-3", *COMMON_FLAGS, log=logs / "train.log")  # fmt: skip

    def sweep() -> None:
        sweep_dir = runs / SWEEP_NAME
        if sweep_complete(sweep_dir, args.trials):
            print(f"[demo] {sweep_dir} is complete; not rerunning it")
            return
        resume = ["--resume"] if (sweep_dir / "tuner.pkl").is_file() else []
        run_cli("tuning.sweep", "--data", str(data), "--storage", str(runs), "--name", SWEEP_NAME,
                "--epochs", str(args.sweep_epochs), "--num-samples", str(args.trials), "--max-concurrent-trials", "1",
                *COMMON_FLAGS, *SWEEP_METRIC, *resume, log=logs / "sweep.log")  # fmt: skip

    def train_decoder() -> None:
        if epochs_done(runs / DECODER_NAME) >= args.decoder_epochs:
            print(f"[demo] {runs / DECODER_NAME} already has {args.decoder_epochs} epochs; not retraining")
            return
        run_cli("trainer.train_decoder", "--data", str(data), "--storage", str(runs), "--name", DECODER_NAME,
                "--epochs", str(args.decoder_epochs), *DECODER_FLAGS, log=logs / "train_decoder.log")  # fmt: skip

    steps.run("train the voice encoder (Ray Train)", train)
    steps.run("sweep loss weights and lr (Ray Tune)", sweep)
    steps.run("evaluate on the held-out speakers", lambda: run_cli(
        "trainer.evaluate", "--data", str(data), "--model", str(runs / RUN_NAME / "model.safetensors"),
        "--split", "test", "--out", str(out / "eval"), log=logs / "evaluate.log"))  # fmt: skip
    steps.run("train the face decoder (Ray Train)", train_decoder)
    steps.run("draw the held-out speakers' faces", lambda: run_cli(
        "trainer.evaluate_decoder", "--data", str(data), "--decoder", str(runs / DECODER_NAME / "decoder.safetensors"),
        "--model", str(runs / RUN_NAME / "model.safetensors"), "--split", "test", "--out", str(out / "decoder_eval"),
        log=logs / "evaluate_decoder.log"))  # fmt: skip
    total = time.monotonic() - began
    write_report(out, steps.timings, total, vars(args))
    print(f"\n[demo] done in {total / 60:.1f} min. Report: {out / 'REPORT.md'}")
    model = runs / RUN_NAME / "model.safetensors"
    decoder = runs / DECODER_NAME / "decoder.safetensors"
    print(f"[demo] try it on your own voice: .venv/bin/python -m serving.app --model {model} --gallery {data}"
          f" --decoder {decoder}  (then open http://127.0.0.1:8000/)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
