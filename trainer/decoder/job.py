"""A face-decoder run as a Ray Train job: the checks before Ray starts, the datasets, then the TorchTrainer."""

from __future__ import annotations

from speech2face import storage
from speech2face.dataset import EMBEDDER, TRAIN, VAL, EmbedderRecord, Manifest, check_weights, weights_sha256
from speech2face.decoder import DECODER_PRESETS
from speech2face.errors import InputError
from trainer.decoder.config import DecoderConfig
from trainer.runtime import cluster

KEEP_BEST = ("val_total", "min")


def feature_loss_spec(config: DecoderConfig, embedder: EmbedderRecord) -> dict | None:
    """The VGG-Face network the workers differentiate through for --loss-feature, checked against the data."""
    if config.loss_feature == 0:
        return None
    if embedder.name != "vggface":
        raise InputError(
            f"--loss-feature needs data embedded with --face-embedder vggface; this data's "
            f"{embedder.name} embedder has no gradients. Drop --loss-feature."
        )
    weights = check_weights(config.vggface_weights, embedder)
    return {"weights": weights, "weights_sha256": weights_sha256(weights)}


def check_setup(config: DecoderConfig) -> dict:
    """Everything that can fail before Ray starts; returns the facts the workers need."""
    manifest = Manifest.read(config.data)
    manifest.require_splits(config.data, (TRAIN, VAL), "the decoder trains on train and reports its losses on val")
    embedder = manifest.embedder
    return {
        "config": config.to_dict(),
        "run_uri": storage.join(config.storage, config.name),
        "in_dim": int(embedder.dim),
        EMBEDDER: embedder.identity(),
        "feature_loss": feature_loss_spec(config, embedder),
    }


def build_trainer(config: DecoderConfig, loop_config: dict):
    """The datasets (faces decoded by Ray Data), the mean shape and feature the decoder centres on, config.json,
    then the TorchTrainer."""
    import ray.data

    from trainer.decoder.data import decoder_datasets, has_landmarks, mean_landmarks, mean_unit_feature
    from trainer.decoder.loop import train_decoder_loop_per_worker

    ray.data.DataContext.get_current().enable_progress_bars = False  # datasets carry it to the workers
    if not has_landmarks(config.data):
        print(
            f"[train_decoder] {config.data} has no face_landmarks column (preprocessed before it existed): "
            "computing them with dlib once, for this run; re-preprocessing to a new --out stores them"
        )
    resolution = DECODER_PRESETS[config.preset].resolution
    datasets = decoder_datasets(config.data, resolution, seed=config.seed, cache=config.cache_data)
    loop_config["mean_shape_px"] = mean_landmarks(config.data, datasets[TRAIN]).tolist()
    loop_config["mean_feature"] = mean_unit_feature(config.data).tolist()
    storage.write_json(storage.join(loop_config["run_uri"], "config.json"), config.to_dict())
    return cluster.torch_trainer(config, train_decoder_loop_per_worker, loop_config, datasets, KEEP_BEST)
