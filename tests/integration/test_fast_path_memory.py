"""The CPU fast path's memory setting, in a fresh process of its own (speech2face.perf)."""

import resource
import subprocess
import sys
from pathlib import Path

from speech2face.perf import choose_fast_path

_REALLOCATE = """
import resource, sys, torch
from speech2face.perf import choose_fast_path
if sys.argv[1] == "fast_path":
    choose_fast_path("cpu").configure_process()
size = 256 * 2**20
for _ in range(10):  # allocated, touched and freed, as a training loop's activations are: glibc's heap
    torch.ones(size, dtype=torch.uint8)  # settles after a few (a small block may split a freed one at first)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
torch.ones(size, dtype=torch.uint8)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _page_faults_of_a_later_allocation(mode: str) -> int:
    done = subprocess.run(
        [sys.executable, "-c", _REALLOCATE, mode],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parents[2],
    )
    return int(done.stdout.split()[-1])


def test_the_cpu_fast_path_reuses_freed_memory_without_faulting_it_in_again():
    # process-wide, so each case runs in its own process; glibc by default unmaps a freed 256 MB block
    assert choose_fast_path("cpu").keep_freed_memory
    pages = 256 * 2**20 // resource.getpagesize()
    default, fast = _page_faults_of_a_later_allocation("default"), _page_faults_of_a_later_allocation("fast_path")
    assert fast < 0.01 * pages, (fast, pages)
    assert default > 10 * max(fast, 1), (default, fast)
