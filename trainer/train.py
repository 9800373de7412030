"""Train the voice encoder on Ray Train: ``python -m trainer.train --data D --storage S --name RUN``.

Outputs in <storage>/<name>/: config.json, metrics.csv, tensorboard/, curves.png, Ray Train's
checkpoint_* dirs (the best by val R@10 and the last), model.safetensors + model.json (best
weights, loadable without Ray by ``trainer.load_model``). The same --storage/--name resumes.
"""

from __future__ import annotations

import math
import os
import sys

from speech2face import storage
from speech2face.hashing import sha256_file
from speech2face.models import min_frames_for
from trainer.config import TrainConfig, parse_args
from trainer.data import manifest_of, split_datasets

RESERVED_RUN_CONFIG = ("name", "storage_path", "storage_filesystem")


class TrainSetupError(ValueError):
    """The data and the flags do not fit together; the message says how to fix it."""


def run_uri_of(config: TrainConfig) -> str:
    return storage.join(config.storage, config.name)


def distillation_spec(config: TrainConfig, embedder: dict) -> dict | None:
    """What the workers need to rebuild the fc8 teacher, after checking it matches the data's embedder."""
    if config.loss_distill == 0:
        return None
    if not embedder.get("has_classifier"):
        print(f"[train] distillation disabled: the data's {embedder['name']} embedder has no identity classifier "
              "(fc8); --loss-distill needs data embedded with --face-embedder vggface", file=sys.stderr)  # fmt: skip
        return None
    weights = config.vggface_weights or embedder.get("weights")
    if not weights:
        raise TrainSetupError("--loss-distill needs --vggface-weights: the VGG-Face .h5 the data was embedded with")
    if weights == "random":
        sha = "random"
    else:
        with storage.local_copy(weights) as path:
            sha = sha256_file(path)
    if sha != embedder["weights_sha256"]:
        raise TrainSetupError(
            f"--vggface-weights {weights} (sha256 {sha[:12]}) are not the weights the data was embedded with "
            f"(manifest: {embedder['weights_sha256'][:12]}); the distillation teacher must be the same network "
            "as the face features. Pass the same .h5 as to pipelines.preprocess, or re-preprocess."
        )
    return {"weights": weights, "weights_sha256": sha}


def loop_config_for(config: TrainConfig) -> dict:
    """Everything the workers get: the config plus facts checked here, on the driver, before any worker starts."""
    config.validate()
    manifest = manifest_of(config.data)
    embedder = manifest["embedder"]
    per_split = manifest.get("counts", {}).get("per_split", {})
    for split in ("train", "val"):
        if not per_split.get(split):
            raise TrainSetupError(
                f"{config.data} has no '{split}' clips (counts: {per_split}); preprocess more videos "
                "(val takes --val-fraction of the videos) so both train and val are non-empty"
            )
    if config.crop_frames is not None and config.crop_frames < min_frames_for(config.preset):
        raise TrainSetupError(f"--crop-frames must be >= {min_frames_for(config.preset)} for preset {config.preset!r}")
    return {
        "train_config": config.to_dict(),
        "run_uri": run_uri_of(config),
        "out_dim": int(embedder["dim"]),
        "embedder": {k: embedder.get(k) for k in ("name", "dim", "weights_sha256")},
        "distill": distillation_spec(config, embedder),
        "decoder": decoder_spec(config, embedder),
    }


def decoder_spec(config: TrainConfig, embedder: dict) -> str | None:
    """The --decoder the workers load for --loss-decoder, after checking it decodes the data's features."""
    if config.loss_decoder == 0:
        return None
    from trainer.decoder_io import check_embedder, read_decoder
    from trainer.inference import InputError

    try:
        check_embedder(read_decoder(config.decoder)[1], embedder, f"--data {config.data}")
    except InputError as error:
        raise TrainSetupError(str(error)) from None
    return config.decoder


def data_config():
    """Only train is sharded: rank 0 validates on all of val, since R@K needs the whole gallery.
    Train rows keep their (seeded) order, so a run with a fixed --seed and one worker is repeatable."""
    import ray.train

    train_options = ray.train.DataConfig.default_ingest_options()
    train_options.preserve_order = True
    return ray.train.DataConfig(datasets_to_split=["train"], execution_options={"train": train_options})


def build_trainer(config: TrainConfig, run_config_overrides: dict | None = None, loop_config: dict | None = None):
    """A ready TorchTrainer for ``config``; the tuning layer calls this once per trial.

    ``run_config_overrides`` go into ray.train.RunConfig (e.g. callbacks=[TuneReportCallback()]);
    the run's location comes from config.storage and config.name only, so it cannot be overridden.
    ``loop_config``: the result of ``loop_config_for(config)`` when already checked.
    """
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    overrides = dict(run_config_overrides or {})
    clash = sorted(set(overrides) & set(RESERVED_RUN_CONFIG))
    if clash:
        raise ValueError(f"run_config_overrides may not set {clash}: set TrainConfig.storage / .name instead")
    loop_config = loop_config or loop_config_for(config)
    storage.makedirs(config.storage)
    storage.write_bytes(storage.join(loop_config["run_uri"], "config.json"), config.to_json().encode())
    filesystem, path = storage.resolve(config.storage)
    run_config = ray.train.RunConfig(
        name=config.name,
        storage_path=path,
        storage_filesystem=filesystem,
        failure_config=ray.train.FailureConfig(max_failures=config.max_failures),
        # keeps the best checkpoint by val R@10, and Ray always keeps the latest one too
        checkpoint_config=ray.train.CheckpointConfig(
            num_to_keep=1, checkpoint_score_attribute="val_r10", checkpoint_score_order="max"
        ),  # fmt: skip
        **overrides,
    )
    from trainer.loop import train_loop_per_worker

    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config=loop_config,
        scaling_config=ray.train.ScalingConfig(
            num_workers=config.num_workers, use_gpu=config.use_gpu, resources_per_worker={"CPU": config.cpus_per_worker}
        ),  # fmt: skip
        torch_config=TorchConfig(backend="nccl" if config.use_gpu else "gloo"),
        datasets=split_datasets(config.data, seed=config.seed, cache=config.cache_data),
        dataset_config=data_config(),
        run_config=run_config,
    )


def start_ray(config: TrainConfig) -> None:
    """Join the cluster at RAY_ADDRESS (as `ray job submit` sets it), else start a local Ray.

    Locally, Ray gets at least one logical CPU more than the workers reserve: Ray Data's read tasks
    need one, and with every CPU held by a worker the run would wait forever for its data.
    """
    import ray

    if ray.is_initialized():
        return
    if os.environ.get("RAY_ADDRESS"):
        ray.init(address=os.environ["RAY_ADDRESS"])
        return
    needed = math.ceil(config.num_workers * config.cpus_per_worker) + 1
    ray.init(address="local", num_cpus=max(os.cpu_count() or 1, needed))


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)
    import ray.train

    try:  # every check that can fail runs before Ray starts
        loop_config = loop_config_for(config)
        storage.makedirs(config.storage)
    except (TrainSetupError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    start_ray(config)
    gpus = ray.cluster_resources().get("GPU", 0)
    if config.use_gpu and gpus < config.num_workers:
        message = f"--use-gpu with {config.num_workers} workers but the Ray cluster has {gpus:g} GPUs"
        if not os.environ.get("RAY_ADDRESS"):  # a local Ray: no autoscaler will bring more
            print(f"error: {message}; drop --use-gpu or use fewer --num-workers", file=sys.stderr)
            return 2
        print(f"[train] warning: {message}; waiting for the autoscaler to add GPU nodes", file=sys.stderr)
    trainer = build_trainer(config, loop_config=loop_config)
    run_uri = run_uri_of(config)
    try:
        result = trainer.fit()
    except ray.train.TrainingFailedError as error:
        print(f"[train] run failed after {config.max_failures} retries: {error}\n"
              f"Fix the cause and rerun the same command: it resumes from the last checkpoint in {run_uri}.",
              file=sys.stderr)  # fmt: skip
        return 1
    print(f"[train] done: {run_uri} (best weights: {storage.join(run_uri, 'model.safetensors')})")
    last = {k: v for k, v in (result.metrics or {}).items() if k.startswith(("epoch", "val_r"))}
    print(f"[train] last metrics: {last}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
