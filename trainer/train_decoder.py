"""Train the face decoder (face feature -> face image, Cole et al.'s shape) with Ray Train on the train split of a
preprocess output: ``python -m trainer.train_decoder --data D --storage S --name RUN``.

It learns from the **train** split only (test speakers are never seen). Outputs in <storage>/<name>/:
config.json, metrics.csv, curves.png, samples.png (val faces and their drawings), tensorboard/,
checkpoints, and decoder.safetensors + decoder.json (the last epoch: see trainer/decoder/loop.py;
``speech2face.inference.read_decoder`` loads it without Ray). Rerunning with the same --storage and
--name resumes.
"""

from __future__ import annotations

import sys

from speech2face import flags, storage
from trainer.decoder.config import DecoderConfig
from trainer.decoder.job import build_trainer, check_setup
from trainer.runtime import cluster

PROG = "python -m trainer.train_decoder"


def train_decoder(config: DecoderConfig) -> int:
    loop_config = check_setup(config)  # every check that can fail runs before Ray starts
    storage.makedirs(config.storage)
    cluster.check_gpus(config, cluster.start_ray(cluster.workers_cpus(config)), "train_decoder")
    result = cluster.fit(build_trainer(config, loop_config), config, "train_decoder")
    if result is None:
        return 1
    decoder = storage.join(loop_config["run_uri"], "decoder.safetensors")
    print(f"[train_decoder] done: {loop_config['run_uri']} (decoder: {decoder})")
    last = {k: round(v, 5) for k, v in (result.metrics or {}).items() if k.startswith(("train_total", "val_"))}
    print(f"[train_decoder] last metrics: {last}")
    return 0


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    return flags.run_command(train_decoder, flags.parse(DecoderConfig, argv, prog, __doc__))


if __name__ == "__main__":
    sys.exit(main())
