"""Ray for every training and evaluation job: join the cluster or start a local Ray, and build the TorchTrainer.

Shared by the encoder's and the decoder's runs (and the sweep's trials), so both run alike: the same
worker placement, DDP backend, failure retries, checkpoint keeping and data ingest.
"""

from __future__ import annotations

import math
import os
import sys

from speech2face import storage
from trainer.runtime.config import TrainingRun

RESERVED_RUN_CONFIG = ("name", "storage_path", "storage_filesystem")


def start_ray(cpus_needed: float = 0, log_to_driver: bool = True) -> dict:
    """Join the cluster at RAY_ADDRESS (`ray job submit` sets it), else start a local Ray; its resources.

    Locally, Ray gets at least ``cpus_needed`` logical CPUs, however few cores the machine has: a job
    whose workers reserve every CPU would otherwise wait forever for Ray Data's read tasks.
    """
    import ray

    if not ray.is_initialized():
        if os.environ.get("RAY_ADDRESS"):
            ray.init(address=os.environ["RAY_ADDRESS"], log_to_driver=log_to_driver)
        else:
            cpus = max(os.cpu_count() or 1, math.ceil(cpus_needed))
            ray.init(address="local", num_cpus=cpus, log_to_driver=log_to_driver)
    return ray.cluster_resources()


def workers_cpus(config: TrainingRun) -> int:
    """The CPUs a run's workers reserve, plus the one Ray Data's reads need."""
    return math.ceil(config.num_workers * config.cpus_per_worker) + 1


def ingest_config():
    """Only train is sharded: rank 0 validates on all of val, since R@K needs the whole gallery.
    Train rows keep their (seeded) order, so a run with a fixed --seed and one worker is repeatable."""
    import ray.train

    train_options = ray.train.DataConfig.default_ingest_options()
    train_options.preserve_order = True
    return ray.train.DataConfig(datasets_to_split=["train"], execution_options={"train": train_options})


def check_overrides(config: TrainingRun, run_config_overrides: dict | None) -> dict:
    """The RunConfig overrides, unless they would move the run: its location is the config's alone."""
    overrides = dict(run_config_overrides or {})
    clash = sorted(set(overrides) & set(RESERVED_RUN_CONFIG))
    if clash:
        name = type(config).__name__
        raise ValueError(f"run_config_overrides may not set {clash}: set {name}.storage / .name instead")
    return overrides


def torch_trainer(
    config: TrainingRun,
    loop,
    loop_config: dict,
    datasets: dict,
    keep_best: tuple[str, str],
    run_config_overrides: dict | None = None,
):
    """A Ray Train TorchTrainer for ``config``: gloo on CPU, NCCL with --use-gpu; the run lives at
    <storage>/<name> and keeps the best checkpoint by ``keep_best`` (metric, "max" or "min") and the last.

    ``run_config_overrides`` go into ray.train.RunConfig (e.g. callbacks=[TuneReportCallback()]); the run's
    location comes from config.storage and config.name only, so it cannot be overridden.
    """
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    overrides = check_overrides(config, run_config_overrides)
    filesystem, path = storage.resolve(config.storage)
    metric, order = keep_best
    run_config = ray.train.RunConfig(
        name=config.name,
        storage_path=path,
        storage_filesystem=filesystem,
        failure_config=ray.train.FailureConfig(max_failures=config.max_failures),
        checkpoint_config=ray.train.CheckpointConfig(
            num_to_keep=1, checkpoint_score_attribute=metric, checkpoint_score_order=order
        ),
        **overrides,
    )
    return TorchTrainer(
        loop,
        train_loop_config=loop_config,
        scaling_config=ray.train.ScalingConfig(
            num_workers=config.num_workers, use_gpu=config.use_gpu, resources_per_worker={"CPU": config.cpus_per_worker}
        ),
        torch_config=TorchConfig(backend="nccl" if config.use_gpu else "gloo"),
        datasets=datasets,
        dataset_config=ingest_config(),
        run_config=run_config,
    )


def check_gpus(config: TrainingRun, resources: dict, tag: str) -> None:
    """--use-gpu needs a GPU a worker: refused on a local Ray (nothing will add one), a warning on a cluster
    (the autoscaler may)."""
    gpus = resources.get("GPU", 0)
    if not config.use_gpu or gpus >= config.num_workers:
        return
    message = f"--use-gpu with {config.num_workers} workers but the Ray cluster has {gpus:g} GPUs"
    if not os.environ.get("RAY_ADDRESS"):
        from speech2face.errors import InputError

        raise InputError(f"{message}; drop --use-gpu or use fewer --num-workers")
    print(f"[{tag}] warning: {message}; waiting for the autoscaler to add GPU nodes", file=sys.stderr)


def fit(trainer, config: TrainingRun, tag: str):
    """``trainer.fit()``'s result, or None after a failure the retries did not cure (the message says how to go on)."""
    import ray.train

    run_uri = storage.join(config.storage, config.name)
    try:
        return trainer.fit()
    except ray.train.TrainingFailedError as error:
        print(
            f"[{tag}] run failed after {config.max_failures} retries: {error}\nFix the cause and rerun the same "
            f"command: it resumes from the last checkpoint in {run_uri}.",
            file=sys.stderr,
        )
        return None
