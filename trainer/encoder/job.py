"""A voice-encoder run as a Ray Train job: every check on the driver before a worker starts, then the TorchTrainer.

The tuning layer calls ``build_trainer`` once per trial, so a sweep's trials run exactly as trainer.train.
"""

from __future__ import annotations

import sys

from speech2face import storage
from speech2face.dataset import EMBEDDER, TRAIN, VAL, EmbedderRecord, Manifest, check_weights, weights_sha256
from speech2face.errors import InputError
from speech2face.models import min_frames_for
from trainer.encoder.config import TrainConfig
from trainer.encoder.data import split_datasets
from trainer.runtime import cluster

KEEP_BEST = ("val_r10", "max")  # the best checkpoint by val R@10 (Ray always keeps the latest one too)


def run_uri_of(config: TrainConfig) -> str:
    return storage.join(config.storage, config.name)


def distillation_spec(config: TrainConfig, embedder: EmbedderRecord) -> dict | None:
    """What the workers need to rebuild the fc8 teacher, after checking it matches the data's embedder."""
    if config.loss_distill == 0:
        return None
    if not embedder.has_classifier:
        print(
            f"[train] distillation disabled: the data's {embedder.name} embedder has no identity classifier "
            "(fc8); --loss-distill needs data embedded with --face-embedder vggface",
            file=sys.stderr,
        )
        return None
    weights = check_weights(config.vggface_weights, embedder)
    return {"weights": weights, "weights_sha256": weights_sha256(weights)}


def decoder_spec(config: TrainConfig, embedder: EmbedderRecord) -> str | None:
    """The --decoder the workers load for --loss-decoder, after checking it decodes the data's features."""
    if config.loss_decoder == 0:
        return None
    from speech2face.inference import check_embedder, read_decoder

    check_embedder(read_decoder(config.decoder)[1], embedder, f"--data {config.data}")
    return config.decoder


def loop_config_for(config: TrainConfig) -> dict:
    """Everything the workers get: the config plus facts checked here, on the driver, before any worker starts."""
    from speech2face import flags

    flags.validate(config)
    manifest = Manifest.read(config.data)
    manifest.require_splits(
        config.data,
        (TRAIN, VAL),
        "preprocess more videos (val takes --val-fraction of the videos) so both train and val are non-empty",
    )
    if config.crop_frames is not None and config.crop_frames < min_frames_for(config.preset):
        raise InputError(f"--crop-frames must be >= {min_frames_for(config.preset)} for preset {config.preset!r}")
    embedder = manifest.embedder
    return {
        "train_config": config.to_dict(),
        "run_uri": run_uri_of(config),
        "out_dim": int(embedder.dim),
        EMBEDDER: embedder.identity(),
        "distill": distillation_spec(config, embedder),
        "decoder": decoder_spec(config, embedder),
    }


def build_trainer(config: TrainConfig, run_config_overrides: dict | None = None, loop_config: dict | None = None):
    """A ready TorchTrainer for ``config`` (config.json written); ``loop_config``: ``loop_config_for(config)``
    when already checked."""
    from trainer.encoder.loop import train_loop_per_worker

    cluster.check_overrides(config, run_config_overrides)
    loop_config = loop_config or loop_config_for(config)
    storage.makedirs(config.storage)
    storage.write_bytes(storage.join(loop_config["run_uri"], "config.json"), config.to_json().encode())
    datasets = split_datasets(config.data, seed=config.seed, cache=config.cache_data)
    return cluster.torch_trainer(config, train_loop_per_worker, loop_config, datasets, KEEP_BEST, run_config_overrides)
