"""Train the face decoder on Ray Train: ``python -m trainer.train_decoder --data D --storage S --name RUN``.

It learns face feature -> face image from the **train** split only (test speakers are never seen).
Outputs in <storage>/<name>/: config.json, metrics.csv, curves.png, samples.png (val faces and their
drawings), tensorboard/, checkpoints, and decoder.safetensors + decoder.json (the last epoch: see
trainer/decoder_loop.py; ``trainer.decoder_io.read_decoder`` loads it without Ray). The same --storage/--name resumes.
"""

from __future__ import annotations

import sys

from speech2face import storage
from speech2face.decoder import DECODER_PRESETS
from speech2face.hashing import sha256_file
from trainer.data import manifest_of
from trainer.decoder_config import DecoderConfig, parse_args
from trainer.train import TrainSetupError, data_config, start_ray


def feature_loss_spec(config: DecoderConfig, embedder: dict) -> dict | None:
    """The VGG-Face network the workers differentiate through for --loss-feature, checked against the data."""
    if config.loss_feature == 0:
        return None
    if embedder["name"] != "vggface":
        raise TrainSetupError(f"--loss-feature needs data embedded with --face-embedder vggface; this data's "
                              f"{embedder['name']} embedder has no gradients. Drop --loss-feature.")  # fmt: skip
    weights = config.vggface_weights or embedder.get("weights")
    if not weights:
        raise TrainSetupError("--loss-feature needs --vggface-weights: the VGG-Face .h5 the data was embedded with")
    if weights == "random":
        sha = "random"
    else:
        with storage.local_copy(weights) as path:
            sha = sha256_file(path)
    if sha != embedder["weights_sha256"]:
        raise TrainSetupError(f"--vggface-weights {weights} (sha256 {sha[:12]}) are not the weights the data was "
                              f"embedded with ({embedder['weights_sha256'][:12]}); pass the same .h5 as to "
                              "pipelines.preprocess")  # fmt: skip
    return {"weights": weights, "weights_sha256": sha}


def check_setup(config: DecoderConfig) -> dict:
    """Everything that can fail before Ray starts; returns the facts the workers need."""
    manifest = manifest_of(config.data)
    per_split = manifest.get("counts", {}).get("per_split", {})
    for split in ("train", "val"):
        if not per_split.get(split):
            raise TrainSetupError(f"{config.data} has no '{split}' clips (counts: {per_split}); the decoder trains "
                                  "on train and reports its losses on val")  # fmt: skip
    embedder = manifest["embedder"]
    return {
        "config": config.to_dict(),
        "run_uri": storage.join(config.storage, config.name),
        "in_dim": int(embedder["dim"]),
        "embedder": {k: embedder.get(k) for k in ("name", "dim", "weights_sha256")},
        "feature_loss": feature_loss_spec(config, embedder),
    }


def build_trainer(config: DecoderConfig, loop_config: dict, datasets: dict):
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    from trainer.decoder_loop import train_decoder_loop_per_worker

    filesystem, path = storage.resolve(config.storage)
    return TorchTrainer(
        train_decoder_loop_per_worker,
        train_loop_config=loop_config,
        scaling_config=ray.train.ScalingConfig(num_workers=config.num_workers, use_gpu=config.use_gpu,
                                               resources_per_worker={"CPU": config.cpus_per_worker}),
        torch_config=TorchConfig(backend="nccl" if config.use_gpu else "gloo"),
        datasets=datasets,
        dataset_config=data_config(),
        run_config=ray.train.RunConfig(
            name=config.name, storage_path=path, storage_filesystem=filesystem,
            failure_config=ray.train.FailureConfig(max_failures=config.max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=1, checkpoint_score_attribute="val_total",
                                                         checkpoint_score_order="min"),
        ),
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)
    try:
        loop_config = check_setup(config)
        storage.makedirs(config.storage)
    except (TrainSetupError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    import ray.data
    import ray.train

    from trainer.decoder_data import decoder_datasets, has_landmarks, mean_landmarks, mean_unit_feature

    start_ray(config)
    ray.data.DataContext.get_current().enable_progress_bars = False  # datasets carry it to the workers
    if not has_landmarks(config.data):
        print(f"[train_decoder] {config.data} has no face_landmarks column (preprocessed before it existed): "
              "computing them with dlib once, for this run; re-preprocessing to a new --out stores them")  # fmt: skip
    datasets = decoder_datasets(config.data, DECODER_PRESETS[config.preset].resolution, seed=config.seed,
                                cache=config.cache_data)  # fmt: skip
    loop_config["mean_shape_px"] = mean_landmarks(config.data, datasets["train"]).tolist()
    loop_config["mean_feature"] = mean_unit_feature(config.data).tolist()
    storage.write_json(storage.join(loop_config["run_uri"], "config.json"), config.to_dict())
    try:
        result = build_trainer(config, loop_config, datasets).fit()
    except ray.train.TrainingFailedError as error:
        print(f"[train_decoder] run failed: {error}\nFix the cause and rerun the same command: it resumes from "
              f"the last checkpoint in {loop_config['run_uri']}.", file=sys.stderr)  # fmt: skip
        return 1
    decoder = storage.join(loop_config["run_uri"], "decoder.safetensors")
    print(f"[train_decoder] done: {loop_config['run_uri']} (decoder: {decoder})")
    last = {k: round(v, 5) for k, v in (result.metrics or {}).items() if k.startswith(("train_total", "val_"))}
    print(f"[train_decoder] last metrics: {last}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
