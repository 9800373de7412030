"""Where the suite's CPU goes, per test: a pytest plugin (no timing assertions; a measurement).

    python -m pytest -p benchmarks.suite_cpu        # writes suite_cpu.tsv (or $SUITE_CPU_TSV)

One line per test: the time it ended, its wall seconds, the pytest process's own CPU seconds, and the machine's
busy core-seconds over the test (``/proc/stat``: everything, the test's Ray workers and servers included, and
anything else running, so take it on a quiet machine). benchmarks/RESULTS.md sums it per module.
"""

import os
import time

import pytest

TICK = os.sysconf("SC_CLK_TCK")


def busy_core_seconds() -> float:
    """All CPUs' non-idle time since boot (/proc/stat's first line, less idle and iowait)."""
    with open("/proc/stat") as stat:
        ticks = [int(value) for value in stat.readline().split()[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / TICK


_out = None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    global _out
    if _out is None:
        _out = open(os.environ.get("SUITE_CPU_TSV", "suite_cpu.tsv"), "a", buffering=1)
    wall, own, busy = time.monotonic(), time.process_time(), busy_core_seconds()
    yield
    _out.write(f"{time.time():.0f}\t{time.monotonic() - wall:.1f}\t{time.process_time() - own:.1f}\t"
               f"{busy_core_seconds() - busy:.1f}\t{item.nodeid}\n")  # fmt: skip
