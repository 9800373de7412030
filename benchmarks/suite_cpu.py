"""Where the suite's CPU goes, per test and per process (measurements, no timing assertions).

    python -m pytest -p benchmarks.suite_cpu                # per test: suite_cpu.tsv (or $SUITE_CPU_TSV)
    python -m benchmarks.suite_cpu processes.tsv &          # per process, until SIGTERM: start it first

Per test, one line each: the time it ended, its wall seconds, the pytest process's own CPU seconds, and the
machine's busy core-seconds over the test (``/proc/stat``: everything, the test's Ray workers and servers
included, and anything else running, so take it on a quiet machine). benchmarks/RESULTS.md sums it per module.

Per process: every process's CPU seconds (``/proc/<pid>/stat``, sampled every 2 s, so a process that lives less
than that is missed), summed by command line (Ray's workers retitle themselves: ``ray::TrainController``, ...),
one line each: CPU seconds, processes, command line (90 characters).
"""

import os
import signal
import sys
import time

import pytest

from benchmarks.procs import TICK, cpu_by_process


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


def sample_processes(out: str, every_s: float = 2.0) -> None:
    """Samples until SIGTERM, then writes each command line's CPU seconds since the start (new processes: all)."""
    stopped = []
    signal.signal(signal.SIGTERM, lambda *_: stopped.append(True))
    first, last = cpu_by_process(), {}
    while not stopped:
        for key, (title, cpu) in cpu_by_process().items():
            last[key] = (title if key not in last or title.startswith("ray::") else last[key][0], cpu)
        time.sleep(every_s)
    totals: dict[str, list[float]] = {}
    for key, (title, cpu) in last.items():
        total = totals.setdefault(title[:90], [0.0, 0])  # a CLI's runs, whatever their paths
        total[0] += cpu - first.get(key, (title, 0.0))[1]
        total[1] += 1
    with open(out, "w") as file:
        for title, (cpu, count) in sorted(totals.items(), key=lambda item: -item[1][0]):
            file.write(f"{cpu:.1f}\t{count}\t{title}\n")


if __name__ == "__main__":
    sample_processes(sys.argv[1] if len(sys.argv) > 1 else "suite_processes.tsv")
