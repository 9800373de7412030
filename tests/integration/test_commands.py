"""One command for every job (s2f), the python -m forms beside it, and help texts without dated figures."""

import json
import re
import subprocess
import sys

import pytest

from s2f.__main__ import JOBS
from tests.support.cli import ROOT

# A help text says what a flag does; measurements (dates, machines, speed-ups) live in benchmarks/RESULTS.md.
MEASUREMENT = re.compile(r"\b20\d\d-\d\d-\d\d\b|\b[0-9a-f]{7,40}\b(?=.*commit)|\bH[12]00\b|\d(\.\d+)?x (faster|slower)")


def _run(*command: str) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_s2f_lists_every_job_and_its_version():
    listing = _run(sys.executable, "-m", "s2f", "--help")
    assert listing.returncode == 0
    for job, (module, _) in JOBS.items():
        assert re.search(rf"^  {re.escape(job)} .*\(python -m {re.escape(module)}\)$", listing.stdout, re.M), job
    version = _run(sys.executable, "-m", "s2f", "--version")
    assert version.returncode == 0 and re.fullmatch(r"s2f \d+\.\d+\.\d+\n", version.stdout)
    unknown = _run(sys.executable, "-m", "s2f", "trian")
    assert unknown.returncode == 2 and "unknown job 'trian'" in unknown.stderr


# Every job's help, both ways, in one fresh interpreter: `s2f <job> --help` through the dispatcher, and
# `python -m <module> --help` through runpy, which is what `python -m` runs.
HELP_OF_EVERY_JOB = """
import contextlib, io, json, runpy, sys
from s2f.__main__ import JOBS, main
shown = {}
for job, (module, _) in JOBS.items():
    for form, call in (("s2f", lambda: main([job, "--help"])),
                       ("python -m", lambda: runpy.run_module(module, run_name="__main__", alter_sys=True))):
        sys.argv = [module, "--help"]
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
            call()
        shown[f"{form} {job}"] = out.getvalue()
print(json.dumps(shown))
"""


def _flags_in(text: str) -> set[str]:
    return set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", text))


@pytest.fixture(scope="module")
def help_texts() -> dict[str, str]:
    done = _run(sys.executable, "-c", HELP_OF_EVERY_JOB)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("job", list(JOBS))
def test_every_job_has_help_both_ways_and_no_measurements_in_it(job, help_texts):
    module = JOBS[job][0]
    as_s2f, as_module = help_texts[f"s2f {job}"], help_texts[f"python -m {job}"]
    assert as_s2f.startswith(f"usage: s2f {job} ") and as_module.startswith(f"usage: python -m {module}")
    assert _flags_in(as_s2f) == _flags_in(as_module) and len(_flags_in(as_module)) > 3
    assert not MEASUREMENT.search(as_module), MEASUREMENT.search(as_module)


def test_a_python_m_form_runs_as_a_user_types_it():
    done = _run(sys.executable, "-m", "trainer.train", "--help")
    assert done.returncode == 0 and done.stdout.startswith("usage: python -m trainer.train ")


def test_the_installed_console_script_runs():
    script = ROOT / ".venv" / "bin" / "s2f"
    if not script.exists():  # the suite runs from make test, which installs it; a bare checkout may not have it
        pytest.skip(f"{script} is not installed: run make setup")
    assert _run(str(script), "train", "--help").stdout.startswith("usage: s2f train ")
