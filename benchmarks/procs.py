"""Every process's CPU time, read from /proc: what the benchmarks that split a machine's CPU by process sample."""

from __future__ import annotations

import os
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def cpu_by_process() -> dict[tuple[int, int], tuple[str, float]]:
    """{(pid, start tick): (command line, CPU seconds so far)} of every process this user can read (~4 ms of CPU).

    Keyed by start tick too, since pids are reused in a long run. The command line is read every time: Ray's
    workers retitle themselves (ray::IDLE, then the actor). A kernel thread, which has none, gets its name.
    """
    found = {}
    for pid in map(int, filter(str.isdigit, os.listdir("/proc"))):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()  # from the state on: utime, stime and starttime are 12th, 13th, 20th
        name = command or stat[stat.find("(") + 1 : stat.rfind(")")]
        found[(pid, int(fields[19]))] = (name, (int(fields[11]) + int(fields[12])) / TICK)
    return found
