"""The whole system on the device ``benchmarks.device`` finds, as its later parts: `make demo`'s job with every
GPU switch on, a Serve deployment of the repository's serve_config.yaml answering one real-speech request, and
the CUDA tests.

The job is demo.run's (``demo.run.DemoJob``): the same CLIs a user submits, here with VGG-Face features
(deterministic random weights, a stand-in: no package ships the real ones), so the 4096-D path and the
distillation loss run. With CUDA: GPU feature actors (preprocessing's default, one per GPU), ``--use-gpu``
training, sweep trials and decoder, and GPU batch inference in ``trainer.evaluate`` (its default where the
cluster has GPUs). Each part returns its figures for the device report.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import requests
import yaml

from benchmarks.serve_load import predict
from demo.run import DECODER_NAME, RUN_NAME, SWEEP_NAME, DemoConfig, DemoJob
from demo.steps import last_line
from demo_corpus.corpus import CorpusConfig, read_manifest
from speech2face.dataset import Manifest

ROOT = Path(__file__).resolve().parents[1]
# Real human speech: a LibriVox reading in Debian's pocketsphinx-testdata, as the serve tests use
SPEECH = Path("/usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-0870.wav")
# ~5 MB of videos: small enough to carry to a GPU machine, which has no espeak-ng to make it (docs/gpu.md)
GPU_CORPUS = CorpusConfig(speakers=16, clips_per_speaker=3, test_speakers=5)
QUICK_CORPUS = CorpusConfig(speakers=6, clips_per_speaker=2, test_speakers=2)
GPU_TRAINING = {"epochs": 3, "trials": 2, "sweep_epochs": 1, "decoder_epochs": 5}  # each run compiles on CUDA
QUICK_TRAINING = {"epochs": 1, "trials": 1, "sweep_epochs": 1, "decoder_epochs": 1}  # the smoke test: each path once
CUDA_TESTS = "tests/integration/test_cuda.py"


def demo_job(out: Path, corpus: Path | None, quick: bool, use_gpu: bool) -> DemoJob:
    """The demo's job in ``out``, on ``corpus`` (a demo corpus made elsewhere: copied in, then reused as it
    is) or on one its first step generates."""
    if corpus:
        manifest = read_manifest(corpus)
        if manifest is None:
            raise SystemExit(f"--corpus {corpus}: no corpus_manifest.json there; make one with python -m demo_corpus")
        config = CorpusConfig(**manifest["config"])
        shutil.copytree(corpus, out / "corpus", dirs_exist_ok=True)
    else:
        config = QUICK_CORPUS if quick else GPU_CORPUS
    return DemoJob(
        DemoConfig(
            out=str(out),
            **asdict(config),
            **(QUICK_TRAINING if quick else GPU_TRAINING),
            val_fraction=0.4,  # of the few training videos: at least one in val
            face_embedder="vggface",
            vggface_weights="random",
            loss_distill=1.0,  # VGG-Face's fc8 on the predicted feature (the paper's distillation loss)
            use_gpu=use_gpu,
        )
    )


def _last_row(path: Path) -> dict:
    rows = list(csv.DictReader(path.read_text().splitlines()))
    return {key: float(value) for key, value in rows[-1].items() if value}


def job_parts(job: DemoJob) -> list[tuple[str, Callable[[], dict]]]:
    """(name, action) of the demo job's steps, in order; each action returns the figures of what its step wrote."""

    def preprocess() -> dict:
        started = time.monotonic()
        job.preprocess()
        counts = Manifest.read(str(job.data)).counts
        clips_per_s = round(counts.clips / (time.monotonic() - started), 3)
        return {"clips": counts.clips, "failures": counts.failures, "clips_per_s": clips_per_s}

    def trained(step: Callable[[], None], run: str) -> Callable[[], dict]:
        def train() -> dict:
            step()
            row = _last_row(job.runs / run / "metrics.csv")
            return {"epochs": int(row["epoch"]), "samples_per_s": row["samples_per_s"],
                    "data_wait_frac": row["data_wait_frac"]}  # fmt: skip

        return train

    def sweep() -> dict:
        job.sweep()
        return {"trials": len(list(csv.DictReader((job.runs / SWEEP_NAME / "trials.csv").read_text().splitlines())))}

    def evaluate() -> dict:
        job.evaluate()
        report = json.loads((job.out / "eval" / "eval.json").read_text())
        r10 = next(row for row in report["recall"] if row["k"] == 10)
        return {"queries": report["queries"], "recall_at_10": round(r10["recall"], 4),
                "chance": round(r10["chance"], 4)}  # fmt: skip

    def draw() -> dict:
        job.draw()
        return {"queries": json.loads((job.out / "decoder_eval" / "decoder_eval.json").read_text())["queries"]}

    return [("corpus", lambda: job.make_corpus() or {}), ("preprocess", preprocess),
            ("train", trained(job.train, RUN_NAME)), ("sweep", sweep), ("evaluate", evaluate),
            ("train decoder", trained(job.train_decoder, DECODER_NAME)), ("draw faces", draw)]  # fmt: skip


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve_config(job: DemoJob, port: int, use_gpu: bool) -> dict:
    """The repository's serve_config.yaml (what production deploys) with this job's run, data and decoder."""
    config = yaml.safe_load((ROOT / "serve_config.yaml").read_text())
    config["http_options"]["port"] = port
    paths = {"model": str(job.model), "gallery": str(job.data), "decoder": str(job.decoder)}
    config["applications"][0]["args"] |= paths | {"num_gpus_per_replica": int(use_gpu)}
    return config


def serve_request(job: DemoJob, speech: Path, use_gpu: bool, log: Path, start_timeout_s: float = 300) -> dict:
    """`serve run` of serve_config.yaml on this Ray (a GPU a replica with CUDA), one real-speech request, then
    Ctrl-C (serve run then shuts Serve down)."""
    if not speech.is_file():
        raise FileNotFoundError(f"no speech file {speech}: pass --speech FILE (a wav of a person speaking)")
    port = _free_port()
    config = log.with_name("serve_config.yaml")
    config.write_text(yaml.safe_dump(serve_config(job, port, use_gpu), sort_keys=False))
    url = f"http://127.0.0.1:{port}"
    with open(log, "w") as output:
        process = subprocess.Popen([str(Path(sys.executable).with_name("serve")), "run", str(config)], cwd=ROOT,
                                   stdout=output, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    try:
        started, deadline = time.monotonic(), time.monotonic() + start_timeout_s
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"serve run exited {process.returncode}: {last_line(log)}")
            try:
                requests.get(f"{url}/api/health", timeout=10).raise_for_status()
                break
            except requests.RequestException as error:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"serve run not healthy after {start_timeout_s} s: {last_line(log)}") from error
                time.sleep(1)
        ready_s = time.monotonic() - started
        answers = [predict(url, speech, timeout_s=300) for _ in range(2)]  # the second one warm: what a user waits for
        for response, _ in answers:
            response.raise_for_status()
        (_, first_s), (response, second_s) = answers
        second = response.json()
        if not (second["top"] and second["drawn_face"]):
            raise RuntimeError(f"the answer lacks faces or a drawn face: {sorted(second)}")
        gallery = requests.get(f"{url}/api/info", timeout=10).json()["gallery"]
        return {"ready_s": round(ready_s, 1), "first_request_ms": round(1000 * first_s, 1),
                "request_ms": round(1000 * second_s, 1), "audio_seconds": second["audio_seconds"],
                "feature_dim": second["feature_dim"], "gpu_replica": use_gpu, "gallery": gallery}  # fmt: skip
    finally:
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C, as a user stops serve run
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def cuda_tests(log: Path) -> dict:
    """``pytest -m cuda`` on the CUDA tests: their counts, and why any were skipped. Raises if one failed."""
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-m", "cuda", "-rs", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
         CUDA_TESTS],
        cwd=ROOT, capture_output=True, text=True, timeout=600, env=os.environ | {"PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    log.write_text(result.stdout + result.stderr)
    lines = result.stdout.strip().splitlines()
    summary = lines[-1] if lines else "(no output)"
    if result.returncode != 0:
        raise RuntimeError(f"pytest exit {result.returncode}: {summary}")
    if " passed" not in summary:
        reasons = sorted({line.split(": ", 1)[-1] for line in lines if line.startswith("SKIPPED")})
        raise PartSkipped(f"{summary}: {'; '.join(reasons)}")
    return {"summary": summary}


class PartSkipped(Exception):
    """A part that cannot run here, and why (e.g. no CUDA device)."""
