"""Running a demo's steps: each step's CLI in a subprocess that joins one local Ray, with a console a
person reads (commands, progress, summaries) and each step's whole output in its log file."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path


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


LOG_DIR = "logs"
PROGRESS_EVERY_S = 10  # as often as Ray Data itself logs progress where stdout is not a terminal
_dashboard = ""  # the demo's Ray dashboard (start_demo_ray): where run_cli asks for a step's progress


def run_cli(module: str, *args: str, log: Path) -> None:
    """One step's CLI in a subprocess that joins our Ray through RAY_ADDRESS.

    Our CLIs print what a person reads (their lines, and their Ray workers' prints) to stdout; Ray logs to
    stderr (its loggers, Ray Data's progress, warnings, what workers log). The console gets the stdout, and
    every 10 s the step's Ray Data progress from the dashboard; ``log`` gets both streams, line by line.
    """
    command = [sys.executable, "-m", module, *args]
    print("[demo] $ python " + " ".join(command[1:]), flush=True)
    print(f"[demo]   (full log: {log})", flush=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    # unbuffered: lines as they happen, in the order they happen; no colour codes around workers' prefixes
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "RAY_COLOR_PREFIX": "0"}
    with (
        open(log, "w") as file,
        subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace", env=env
        ) as process,
        DatasetProgress(process.pid),
    ):
        lock = threading.Lock()  # whole lines into the log, from either stream

        def copy(stream, show: bool) -> None:
            for line in stream:
                with lock:
                    file.write(line)
                if show:
                    _say(line)

        ray_logging = threading.Thread(target=copy, args=(process.stderr, False), daemon=True)
        ray_logging.start()
        copy(process.stdout, True)
        ray_logging.join()
    if process.returncode != 0:
        print("\n".join(log.read_text(errors="replace").splitlines()[-40:]), file=sys.stderr)
        raise StepFailed(f"{module} failed: {last_line(log)} (the end of its log is above; all of it: {log})")


def last_line(log: Path) -> str:
    """The log's last line that is not blank: usually the error."""
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


class StepFailed(RuntimeError):
    """A step's CLI exited with an error; the message has its log's last line (usually the error)."""


class DatasetProgress:
    """While a step runs, every PROGRESS_EVERY_S: a line of its running datasets' map_batches stages, from the
    endpoint behind the dashboard's Ray Data view (blocks each stage has output, of those it will); then the
    last figures of those that ended since, once more as the step ends."""

    def __init__(self, pid: int):
        self.pid, self.job, self.running, self.last = pid, None, set(), ""
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._every, daemon=True)

    def __enter__(self) -> DatasetProgress:
        if _dashboard:
            self.thread.start()
        return self

    def __exit__(self, *_) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join()
            self._report()

    def _every(self) -> None:
        while not self.stop.wait(PROGRESS_EVERY_S):
            self._report()

    def _report(self) -> None:
        try:
            self.job = self.job or _job_of(self.pid)
            datasets = _get(f"/api/data/datasets/{self.job}")["datasets"] if self.job else []
        except (OSError, ValueError):  # the dashboard did not answer this time
            return
        shown = [dataset for dataset in datasets if dataset["state"] == "RUNNING" or dataset["dataset"] in self.running]
        self.running = {dataset["dataset"] for dataset in datasets if dataset["state"] == "RUNNING"}
        line = ", ".join(
            f"{name.removeprefix('MapBatches(').removesuffix(')').removesuffix('Stage')} "
            f"{operator['progress']}/{operator['total'] or '?'}"
            for dataset in shown
            for operator in dataset["operators"]
            if (name := operator.get("name", "")).startswith("MapBatches(")
        )
        if line and line != self.last:
            _say(f"[demo]   progress (blocks done/total): {line}\n")
            self.last = line


def _job_of(pid: int) -> str | None:
    """The Ray job whose driver is process ``pid``."""
    return next(
        (job["job_id"] for job in _get("/api/jobs/") if (job.get("driver_info") or {}).get("pid") == str(pid)), None
    )


def _say(line: str) -> None:
    """One write a line: the step's output and its progress, from two threads, never mix within a line."""
    sys.stdout.write(line)
    sys.stdout.flush()


def _get(path: str):
    with urllib.request.urlopen(f"http://{_dashboard}{path}", timeout=5) as response:
        return json.load(response)


def start_demo_ray(num_cpus: int) -> str:
    """A local Ray with its dashboard on 127.0.0.1; returns the address the steps join."""
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # loopback only; the cluster docs keep token auth on
    global _dashboard
    context = ray.init(address="local", num_cpus=num_cpus, include_dashboard=True, dashboard_host="127.0.0.1")
    _dashboard = context.dashboard_url
    print(f"[demo] Ray dashboard: http://{_dashboard}", flush=True)
    return ray.get_runtime_context().gcs_address


def stop_demo_ray() -> None:
    """Stops the Ray of :func:`start_demo_ray` once the steps are done, before the demo's closing lines: Ray
    prints its raylet's warnings (e.g. "N PYTHON worker processes have been started") on the console of the
    process that started it, and one arriving later would end the console instead of the demo's last line."""
    import ray

    ray.shutdown()


def cli_args(text: str, **values) -> list[str]:
    """A step's flags, written as on a command line: ``cli_args("--data {data}", data=path)``."""
    return shlex.split(text.format(**{name: shlex.quote(str(value)) for name, value in values.items()}))
