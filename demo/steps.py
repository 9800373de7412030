"""Running a demo's steps: each step's CLI in a subprocess that joins one local Ray, with a console a
person reads (commands, progress, summaries) and each step's whole output in its log file."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
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
    with (
        open(log, "w") as file,
        subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace", env=env
        ) as process,
    ):
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
        raise SystemExit(
            f"[demo] {module} failed (the end of its log is above; all of it: {log}); fix the cause "
            "and rerun: finished steps are reused"
        )


def start_demo_ray(num_cpus: int) -> str:
    """A local Ray with its dashboard on 127.0.0.1; returns the address the steps join."""
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # loopback only; the cluster docs keep token auth on
    context = ray.init(address="local", num_cpus=num_cpus, include_dashboard=True, dashboard_host="127.0.0.1")
    print(f"[demo] Ray dashboard: http://{context.dashboard_url}", flush=True)
    return ray.get_runtime_context().gcs_address


def cli_args(text: str, **values) -> list[str]:
    """A step's flags, written as on a command line: ``cli_args("--data {data}", data=path)``."""
    return shlex.split(text.format(**{name: shlex.quote(str(value)) for name, value in values.items()}))
