"""The lines a person reads from a training worker: its epochs, its fast path, a resume."""

from __future__ import annotations

import sys


def say(line: str) -> None:
    """``line`` on the worker's stdout, which Ray forwards to the job's stdout, where Ray's own logging is not.

    Not print(): in a worker, Ray Train turns print() into a log record (on stderr, beside Ray's logging),
    and tees a second copy to stdout. Not a logger either: those go to stderr too.
    """
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
