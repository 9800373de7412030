"""SweepConfig: every setting of a sweep; its fields are tuning.sweep's flags. No Ray here.

The flags a sweep shares with trainer.train are TrainConfig's own fields (``field_of``): declared once, and
passed to every trial by name (``tuning.sweep.base_train_config``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from speech2face.flags import field_of, flag
from trainer.encoder.config import TrainConfig
from tuning.space import SearchSpace

METRIC_MODES = ("max", "min")
WEIGHTED_METRICS = ("val_loss", "train_loss")
TRIAL_DRIVER_CPUS = 0.01  # the trial's own actor: see tuning.sweep.build_tuner


@dataclass(kw_only=True)
class SweepConfig:
    data: str = field_of(TrainConfig, "data")
    storage: str = flag(help="local dir or s3://bucket/prefix for the sweep")
    name: str = flag(help="sweep name; outputs in <storage>/<name>/")
    preset: str = field_of(TrainConfig, "preset")
    batch_size: int = field_of(TrainConfig, "batch_size")
    epochs: int = flag(10, minimum=1, help="epochs per trial at most (ASHA's max_t)")
    num_samples: int = flag(8, minimum=1, help="number of trials")
    workers_per_trial: int = flag(
        1, minimum=1, names=("--workers-per-trial", "--num-workers"), help="Ray Train DDP workers per trial"
    )
    use_gpu: bool = flag(False, help="trials train on GPUs")
    gpus_per_worker: float = flag(1.0, above=0, help="GPUs per training worker with --use-gpu")
    cpus_per_worker: float = field_of(TrainConfig, "cpus_per_worker")
    max_concurrent_trials: int | None = flag(
        None, minimum=1, help="default: as many trials as the cluster's GPUs (or CPUs) can run at once"
    )
    scheduler: str = flag("asha", choices=("asha", "none"), help="ASHA stops poor trials early")
    search: str = flag(
        "random",
        choices=("random", "optuna"),
        help="how trials are picked: random sampling, or Optuna's TPE, which models the results so far",
    )
    grace_period: int = flag(1, minimum=1, help="epochs every trial runs before ASHA may stop it")
    reduction_factor: float = flag(2, above=1, help="ASHA keeps the top 1/this at each rung")
    metric: str = flag(
        "val_r10",
        help="metric reported by trainer.train to optimise: val_r1/5/10, or the unweighted val_l2norm or "
        "val_l1 (with --mode min) on a val gallery too small for R@K; not val_loss, which the swept loss "
        "weights scale",
    )
    mode: str = flag("max", choices=METRIC_MODES, help="maximise or minimise --metric")
    seed: int = flag(0, help="seed of the search (and of every trial's training)")
    vggface_weights: str | None = field_of(TrainConfig, "vggface_weights")
    amp: str = field_of(TrainConfig, "amp")
    compile: str = field_of(TrainConfig, "compile")
    crop_frames: int | None = field_of(TrainConfig, "crop_frames")
    cache_data: bool = field_of(TrainConfig, "cache_data")
    l2norm_range: tuple[float, float] = flag(
        SearchSpace.l2norm_range, metavar=("LOW", "HIGH"), help="log-uniform range of the L2norm loss weight"
    )
    distill_range: tuple[float, float] = flag(
        SearchSpace.distill_range, metavar=("LOW", "HIGH"), help="log-uniform range of the distillation weight"
    )
    l1_choices: tuple[float, ...] = flag(SearchSpace.l1_choices, help="comma-separated L1 weights to choose from")
    temperature_range: tuple[float, float] = flag(
        SearchSpace.temperature_range, metavar=("LOW", "HIGH"), help="uniform range of the distillation temperature"
    )
    lr_range: tuple[float, float] = flag(
        SearchSpace.lr_range, metavar=("LOW", "HIGH"), help="log-uniform range of the learning rate"
    )
    decoder: str | None = flag(
        None, help="a trainer.train_decoder run's decoder.safetensors: sweep the face-decoder loss"
    )
    loss_decoder_choices: tuple[float, ...] = flag(
        (0.0, 1.0), help="with --decoder: comma-separated face-decoder loss weights to choose from"
    )
    points_to_evaluate: list | None = flag(
        None,
        parse=json.loads,
        metavar="JSON",
        help='trials to run first, e.g. \'[{"lr": 0.001, "loss_l2norm": 0.025, "loss_l1": 0}]\'',
    )
    resume: bool = flag(False, help="continue the interrupted sweep at <storage>/<name>")

    def space(self, distill: bool = True) -> SearchSpace:
        """What is swept; without a classifier (dlib data) distillation is off and T is not swept."""
        return SearchSpace(
            self.l2norm_range,
            self.distill_range,
            self.l1_choices,
            self.temperature_range,
            self.lr_range,
            distill=distill,
            decoder_choices=self.loss_decoder_choices if self.decoder else (),
        )

    def trial_cpus(self) -> float:
        return self.workers_per_trial * self.cpus_per_worker + TRIAL_DRIVER_CPUS

    def problems(self) -> list[str]:
        found = []
        try:
            self.space().validate()
        except ValueError as error:
            found.append(str(error))
        if self.metric in WEIGHTED_METRICS:
            found.append(
                f"--metric {self.metric} is scaled by the loss weights being swept, so trials would not "
                "compare; use val_r10 (or val_r1/val_r5), or val_l2norm"
            )
        return found
