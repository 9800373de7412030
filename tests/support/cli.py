"""Running the project's CLIs as a user does (``python -m module ...`` in a subprocess), and reading their outputs."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from demo_corpus.server import serve_directory, url_template
from speech2face import storage

ROOT = Path(__file__).resolve().parents[2]
# The training flags of the small test runs: tiny preset, 300 of the 598 frames, data cached once.
TINY_RUN = ["--preset", "tiny", "--batch-size", "2", "--crop-frames", "300", "--seed", "0", "--cache-data"]
DECODER_RUN = ["--preset", "tiny", "--batch-size", "4", "--cpus-per-worker", "0.5", "--cache-data", "--seed", "0"]
# The suite's `make demo`: the default corpus, 12 epochs of the encoder instead of 20, a sweep of one trial and a
# shorter face decoder (their report sections are checked, not their quality: tests/integration/test_sweep.py
# checks sweeps of several trials, benchmarks/RESULTS.md has the decoder's figures at the default 100 epochs).
# The learning test checks the 12 epochs: the demo's training run for 12 epochs gave R@1 5.3x and R@5 3.4x
# chance on the test speakers (AMD EPYC, 2026-12-07; 20 epochs: 4.3x and 2.9x, 10: 3.0x).
SUITE_DEMO_ARGS = ("--epochs", "12", "--trials", "1", "--sweep-epochs", "1", "--decoder-epochs", "5")


def run(module: str, *args: str, timeout: float = 600, ray_address: str | None = None) -> subprocess.CompletedProcess:
    """``python -m module args`` in the project root; it inherits os.environ (S3 settings included).

    ``ray_address``: join that Ray instance (as ``ray job submit`` makes a job join its cluster) instead of
    starting one. Ray workers get the environment of the process that started Ray: the session's Ray
    has the test S3 server's settings (conftest.py), a Ray started before any other settings does not.
    """
    env = {**os.environ, "RAY_ADDRESS": ray_address} if ray_address else None
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=env)  # fmt: skip


def check(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    output = f"stdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-6000:]}"
    assert result.returncode == 0, f"exit {result.returncode}\n{output}"
    return result


def make_dataset(corpus: Path, out: Path, *preprocess_args: str, test_split: bool = False,
                 ray_address: str | None = None) -> Path:  # fmt: skip
    """Preprocess the corpus's train CSV (and, if asked, its test CSV as split 'test') into ``out``."""
    with serve_directory(corpus) as (_, base_url):
        common = ["--out", str(out), "--url-template", url_template(base_url), "--cpus-per-actor", "0.5",
                  *preprocess_args]  # fmt: skip
        test_csv = ["--test-csv", str(corpus / "avspeech_test.csv")] if test_split else []
        check(run("pipelines.preprocess", "--csv", str(corpus / "avspeech_train.csv"), *test_csv, *common,
                  ray_address=ray_address))  # fmt: skip
    return out


def read_metrics(run_dir) -> list[dict]:
    text = storage.read_bytes(storage.join(str(run_dir), "metrics.csv")).decode()
    return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(text.splitlines())]


def make_read_only(directory: Path) -> None:
    """Shared session data: a test that writes into it fails loudly instead of changing what others read."""
    for path in sorted(directory.rglob("*"), reverse=True):
        path.chmod(path.stat().st_mode & ~0o222)
    directory.chmod(directory.stat().st_mode & ~0o222)


class BackgroundCommand:
    """A command that writes into ``out``, started in the background, or once ``after`` has ended; ``result()``
    waits for it to end.

    Its output goes to temporary files (a pipe nobody reads would fill and stall it), and a thread notes
    the moment it ends, so its wall time is exact however late ``result()`` is called.
    """

    def __init__(self, command: list[str], what: str, out: Path, timeout_s: float, env: dict[str, str] | None = None,
                 after: BackgroundCommand | None = None):  # fmt: skip
        self.command, self.what, self.out, self.timeout_s, self.after = command, what, out, timeout_s, after
        self.env = dict(env if env is not None else os.environ)  # as it is now: a test may change os.environ later
        self.streams = [tempfile.TemporaryFile("w+") for _ in ("stdout", "stderr")]
        self.deadline = time.monotonic() + timeout_s + (after.timeout_s if after else 0)
        self.process: subprocess.Popen | None = None
        self.started = self.ended = None
        self.stopped, self._starting = False, threading.Lock()
        self._waiter = threading.Thread(target=self._run, daemon=True)
        self._waiter.start()

    def _run(self) -> None:
        if self.after:
            self.after.wait()
        with self._starting:  # stop() either comes first, and nothing starts, or kills what started
            if self.stopped:
                return
            self.started = time.monotonic()
            self.process = subprocess.Popen(self.command, cwd=ROOT, stdout=self.streams[0], stderr=self.streams[1],
                                            text=True, env=self.env, start_new_session=True)  # fmt: skip
        self.process.wait()
        self.ended = time.monotonic()

    def wait(self) -> None:
        self._waiter.join(max(0.0, self.deadline - time.monotonic()))

    def result(self) -> tuple[subprocess.CompletedProcess, float]:
        self.wait()
        if self.ended is None:
            self.stop()
            raise AssertionError(f"{self.what} still running {self.timeout_s:.0f} s after it started")
        for stream in self.streams:
            stream.seek(0)
        stdout, stderr = (stream.read() for stream in self.streams)
        result = subprocess.CompletedProcess(self.command, self.process.returncode, stdout, stderr)
        return result, self.ended - self.started

    def stop(self) -> None:
        with self._starting:
            self.stopped = True
            if self.process is not None and self.process.poll() is None:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        for stream in self.streams:
            stream.close()


class MakeDemo(BackgroundCommand):
    """``make demo DEMO_OUT=out DEMO_ARGS=...`` in the background."""

    def __init__(self, out: Path, args: tuple[str, ...] = SUITE_DEMO_ARGS, timeout_s: float = 1800):
        self.args = args
        # --no-print-directory: under `make test` a sub-make would print "make[1]: Leaving directory" last
        command = ["make", "--no-print-directory", "demo", f"DEMO_OUT={out}", f"DEMO_ARGS={' '.join(args)}"]
        super().__init__(command, "make demo", out, timeout_s)
