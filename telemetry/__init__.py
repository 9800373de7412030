"""The system's own metrics, named ``s2f_…``, through ``ray.util.metrics``: every node's metrics agent
exports them (as ``ray_s2f_…``, counters with ``_total``) beside Ray's own, so the Prometheus that scrapes
the cluster, and the dashboard's Metrics view, have them. Each is declared here once.

A metric object belongs to the process that made it: each is made on first use in that process (a Ray
Data actor, a training worker, a Serve replica, the sweep's driver). Every one carries the Ray job's id,
which the dashboard's Jobs page shows, as ``JobId`` (Ray's own name for it: a Prometheus
scrape sets ``job`` itself).
"""

from __future__ import annotations

import collections
from functools import cache

from speech2face.dataset import REASON, SPLIT, STAGE, TRAIN, VAL  # a failure's stage and reason; a split

RUN = "run"  # a training run's name
JOB = "JobId"  # as Ray tags its own metrics; Prometheus keeps `job` for the scrape job
# PromQL: each preprocessing run's rows still to do (planned, less those that passed or failed). The planned
# gauge leaves Ray's endpoint with its driver (Ray drops a gauge 2 export intervals after its last report):
# its last value keeps a run's figure, 0 once it ends, for an hour.
ROWS_LEFT = (
    "sum by (JobId) (last_over_time(ray_s2f_preprocess_rows_planned[1h]))"
    " - (sum by (JobId) (ray_s2f_preprocess_clips_total) + sum by (JobId) (ray_s2f_preprocess_failures_total))"
)
# per-clip seconds of a preprocessing stage: a download waits on the network for seconds to minutes
STAGE_SECONDS_BOUNDARIES = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 60, 150, 600]


def _job_id() -> str:
    import ray

    return ray.get_runtime_context().get_job_id() if ray.is_initialized() else ""


@cache
def _preprocess_metrics() -> dict:
    from ray.util.metrics import Counter, Gauge, Histogram

    return {
        "failures": Counter(
            "s2f_preprocess_failures",
            description="clips that failed, by stage and reason",
            tag_keys=(JOB, STAGE, REASON),
        ),
        "stage_seconds": Histogram(
            "s2f_preprocess_stage_seconds",
            description="seconds a clip spent in a preprocessing stage (CPU seconds where the stage measures CPU)",
            boundaries=STAGE_SECONDS_BOUNDARIES,
            tag_keys=(JOB, STAGE),
        ),
        "clips": Counter(
            "s2f_preprocess_clips",
            description="clips that passed every stage, on their way to clips/",
            tag_keys=(JOB, SPLIT),
        ),
        "planned": Gauge(
            "s2f_preprocess_rows_planned", description="rows this run set out to process", tag_keys=(JOB,)
        ),
        "bytes_read": Counter(
            "s2f_preprocess_download_bytes", description="bytes read from the network for clips", tag_keys=(JOB,)
        ),
    }


def stage_done(stage: str, seconds: float, reason: str | None = None) -> None:
    """A clip left ``stage`` after ``seconds``; ``reason`` (possibly "") where it failed there."""
    metrics, job = _preprocess_metrics(), _job_id()
    metrics["stage_seconds"].observe(seconds, tags={JOB: job, STAGE: stage})
    if reason is not None:
        failed(stage, reason)


def failed(stage: str, reason: str = "") -> None:
    _preprocess_metrics()["failures"].inc(1, tags={JOB: _job_id(), STAGE: stage, REASON: reason or "error"})


def clips_passed(splits) -> None:
    """Clips (their splits) that passed every stage: what the writer gets."""
    counter, job = _preprocess_metrics()["clips"], _job_id()
    for split, count in collections.Counter(splits).items():
        counter.inc(count, tags={JOB: job, SPLIT: split})


def rows_planned(count: int) -> None:
    """On the driver: the rows a run sets out to process (a rerun: those still to do)."""
    _preprocess_metrics()["planned"].set(count, tags={JOB: _job_id()})


def downloaded(num_bytes: int) -> None:
    if num_bytes:
        _preprocess_metrics()["bytes_read"].inc(num_bytes, tags={JOB: _job_id()})


@cache
def _training_metrics() -> dict:
    from ray.util.metrics import Gauge

    def gauge(name: str, description: str, tags: tuple = (JOB, RUN)):
        return Gauge(name, description=description, tag_keys=tags)

    return {
        "epoch": gauge("s2f_train_epoch", "the last finished epoch"),
        "samples_per_s": gauge("s2f_train_samples_per_s", "training samples a second over the last epoch"),
        "data_wait": gauge("s2f_train_data_wait_fraction", "share of the last epoch spent waiting on data"),
        "loss": gauge("s2f_train_loss", "the last epoch's mean loss", (JOB, RUN, SPLIT)),
    }


def epoch_done(run: str, row: dict) -> None:
    """A training epoch's row (as metrics.csv gets it), on the rank that writes metrics.csv."""
    metrics, tags = _training_metrics(), {JOB: _job_id(), RUN: run}
    metrics["epoch"].set(row["epoch"], tags=tags)
    metrics["samples_per_s"].set(row["samples_per_s"], tags=tags)
    metrics["data_wait"].set(row["data_wait_frac"], tags=tags)
    for split in (TRAIN, VAL):
        if (key := f"{split}_loss") in row:
            metrics["loss"].set(row[key], tags=tags | {SPLIT: split})


STATUS = "status"
# seconds of a request to the Serve API: an upload's decode and the encoder, tens of ms to seconds
REQUEST_SECONDS_BOUNDARIES = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]
BATCH_BOUNDARIES = [1, 2, 4, 8, 16, 32, 64]


@cache
def _serving_metrics() -> dict:
    from ray.util.metrics import Counter, Histogram

    return {
        "requests": Counter("s2f_serve_requests", description="API requests by HTTP status", tag_keys=(STATUS,)),
        "seconds": Histogram(
            "s2f_serve_request_seconds",
            description="seconds from a /api/predict request to its answer",
            boundaries=REQUEST_SECONDS_BOUNDARIES,
            tag_keys=(STATUS,),
        ),
        "batch": Histogram(
            "s2f_serve_batch_size", description="requests in one encoder call", boundaries=BATCH_BOUNDARIES
        ),
    }


def request_done(status: int, seconds: float) -> None:
    metrics, tags = _serving_metrics(), {STATUS: str(status)}
    metrics["requests"].inc(1, tags=tags)
    metrics["seconds"].observe(seconds, tags=tags)


def batch_encoded(size: int) -> None:
    _serving_metrics()["batch"].observe(size)


SWEEP = "sweep"  # a sweep's name (its --name)


@cache
def _sweep_metrics() -> dict:
    from ray.util.metrics import Counter, Gauge

    return {
        "running": Gauge(
            "s2f_sweep_trials_running", description="trials of the sweep running now", tag_keys=(JOB, SWEEP)
        ),
        "finished": Counter(
            "s2f_sweep_trials_finished",
            description="trials that ended, by their status in trials.csv (TERMINATED, STOPPED_EARLY, ERROR)",
            tag_keys=(JOB, SWEEP, STATUS),
        ),
    }


def trials_running(sweep: str, count: int) -> None:
    """On the sweep's driver: how many of its trials run now."""
    _sweep_metrics()["running"].set(count, tags={JOB: _job_id(), SWEEP: sweep})


def trial_finished(sweep: str, status: str) -> None:
    _sweep_metrics()["finished"].inc(1, tags={JOB: _job_id(), SWEEP: sweep, STATUS: status})
