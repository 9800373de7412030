"""Train the Speech2Face voice encoder with Ray Train (DDP): ``python -m trainer.train --data D --storage S --name R``.

Outputs in <storage>/<name>/: config.json, metrics.csv, tensorboard/, curves.png, Ray Train's
checkpoint_* dirs (the best by val R@10 and the last), model.safetensors + model.json (the best
weights, loadable without Ray by ``speech2face.inference.load_model``). Rerunning with the same
--storage and --name resumes from the last checkpoint.
"""

from __future__ import annotations

import sys

from speech2face import flags, storage
from trainer.encoder.config import TrainConfig
from trainer.encoder.job import build_trainer, loop_config_for, run_uri_of
from trainer.runtime import cluster

PROG = "python -m trainer.train"


def train(config: TrainConfig) -> int:
    loop_config = loop_config_for(config)  # every check that can fail runs before Ray starts
    storage.makedirs(config.storage)
    cluster.check_gpus(config, cluster.start_ray(cluster.workers_cpus(config)), "train")
    result = cluster.fit(build_trainer(config, loop_config=loop_config), config, "train")
    if result is None:
        return 1
    run_uri = run_uri_of(config)
    print(f"[train] done: {run_uri} (best weights: {storage.join(run_uri, 'model.safetensors')})")
    last = {k: v for k, v in (result.metrics or {}).items() if k.startswith(("epoch", "val_r"))}
    print(f"[train] last metrics: {last}")
    return 0


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    return flags.run_command(train, flags.parse(TrainConfig, argv, prog, __doc__))


if __name__ == "__main__":
    sys.exit(main())
