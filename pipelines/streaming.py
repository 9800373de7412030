"""The preprocessing pipeline as a list of stages, each declaring its batch size and resources.

One adapter, ``apply_stages``, maps every stage onto Ray Data's ``map_batches``: a stage with a pool
runs in an actor pool (its class is built once per actor), one without runs as tasks. The shape is
NeMo Curator's (stages declare resources; one backend maps them onto Ray), so the pipeline is data
that a benchmark can also run with each stage's work replaced by a no-op (``without_work``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd

# A block is the unit Ray Data schedules, and a killed run loses the blocks in flight: tens of rows
# keep the per-row overhead small (one block per 2 rows cost 10.4 ms of driver time a row, 32 rows
# 1.00 ms with three stages) and a block's downloaded segments (a 6 s clip is ~1 MB, at most
# --max-download-mb) far below the object store's size; decoded frames never leave their actor.
MAX_ROWS_PER_BLOCK = 64
MIN_ROWS_PER_BLOCK = 1
BLOCKS_PER_CPU = 8  # enough blocks that runs of hundreds of rows still keep every actor busy


@dataclass(frozen=True)
class Resources:
    """What each task or actor of a stage reserves."""

    cpus: float = 1.0
    gpus: float = 0.0


@dataclass(frozen=True)
class Stage:
    """One ``map_batches``: ``udf`` with its batch size and the resources each task or actor reserves."""

    name: str
    udf: Callable | type
    resources: Resources = Resources()
    batch_size: int | None = None  # None: one call per block
    pool: tuple[int, int] | None = None  # (min, max) actors; None: stateless tasks
    concurrent_calls: int = 1  # calls one actor runs at once, in threads (an I/O-bound stage)
    kwargs: dict = field(default_factory=dict)  # the class's constructor arguments, or a function's


def apply_stages(dataset, stages: list[Stage]):
    """``dataset`` through every stage, in order, as Ray Data operators (lazy: nothing runs yet)."""
    from ray.data import ActorPoolStrategy

    for stage in stages:
        options = {"batch_size": stage.batch_size, "batch_format": "pandas", "num_cpus": stage.resources.cpus}
        if stage.resources.gpus:
            options["num_gpus"] = stage.resources.gpus
        if stage.pool:
            threaded = stage.concurrent_calls > 1
            options["compute"] = ActorPoolStrategy(
                min_size=stage.pool[0],
                max_size=stage.pool[1],
                max_concurrent_calls_per_actor=stage.concurrent_calls,
                max_tasks_in_flight_per_actor=max(2, stage.concurrent_calls),
                enable_true_multi_threading=threaded,
            )
            options["fn_constructor_kwargs"] = stage.kwargs
        else:
            options["fn_kwargs"] = stage.kwargs
        dataset = dataset.map_batches(stage.udf, **options)
    return dataset


def rows_per_block(rows: int, cpus: float) -> int:
    """Tens of rows a block; fewer for a small run, so that it still fills every CPU."""
    wanted = math.ceil(rows / max(1.0, BLOCKS_PER_CPU * cpus))
    return max(MIN_ROWS_PER_BLOCK, min(MAX_ROWS_PER_BLOCK, wanted))


def source(rows: pd.DataFrame, block_rows: int):
    """The rows to process as a Ray Dataset of ``block_rows``-row blocks (columnar: no Python object per row)."""
    import ray.data

    chunks = [rows.iloc[start : start + block_rows] for start in range(0, len(rows), block_rows)]
    return ray.data.from_pandas(chunks or [rows])


class _PassThrough:
    """A stage's stand-in that does no work: what Ray Data itself costs per row."""

    def __init__(self, **_kwargs):
        pass

    def __call__(self, batch: pd.DataFrame, **_kwargs) -> pd.DataFrame:
        return batch


def _pass_through(batch: pd.DataFrame, **_kwargs) -> pd.DataFrame:
    return batch


def without_work(stages: list[Stage]) -> list[Stage]:
    """The same plan (block sizes, batch sizes, pools, resources) with every stage's work a no-op."""
    return [dataclasses.replace(s, udf=_PassThrough if s.pool else _pass_through) for s in stages]
