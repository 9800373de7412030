"""The sweep's search space: loss weights (the face-decoder loss's too, given a decoder), distillation
temperature and learning rate."""

from __future__ import annotations

from dataclasses import dataclass

# What a trial may set: fields of trainer.train's TrainConfig.
PARAMS = ("loss_l2norm", "loss_distill", "loss_l1", "loss_decoder", "temperature", "lr")
LOG_SCALE = {"loss_l2norm", "loss_distill", "lr"}


@dataclass
class SearchSpace:
    """Defaults centre on the paper's weights (L2norm 0.025, distillation 200, T = 2, Adam lr 1e-3)."""

    l2norm_range: tuple[float, float] = (0.025 / 4, 0.025 * 4)
    distill_range: tuple[float, float] = (200 / 4, 200 * 4)
    l1_choices: tuple[float, ...] = (0.0, 0.001)
    temperature_range: tuple[float, float] = (1.0, 5.0)
    lr_range: tuple[float, float] = (1e-4, 3e-3)
    distill: bool = True  # False when the data's embedder has no classifier (dlib)
    decoder_choices: tuple[float, ...] = ()  # face-decoder loss weights to choose from (with --decoder)

    def validate(self) -> None:
        for name in ("l2norm_range", "distill_range", "temperature_range", "lr_range"):
            low, high = getattr(self, name)
            if not 0 < low <= high:
                raise ValueError(f"--{name.replace('_', '-')} needs 0 < LOW <= HIGH, got {low} {high}")
        if not self.l1_choices or min(self.l1_choices) < 0:
            raise ValueError(f"--l1-choices needs weights >= 0, got {self.l1_choices}")
        if self.decoder_choices and min(self.decoder_choices) < 0:
            raise ValueError(f"--loss-decoder-choices needs weights >= 0, got {self.decoder_choices}")

    def param_space(self) -> dict:
        """Ray Tune's param_space (ray.tune imported here so the rest stays importable without Ray)."""
        from ray import tune

        self.validate()
        space = {
            "loss_l2norm": tune.loguniform(*self.l2norm_range),
            "loss_l1": tune.choice(list(self.l1_choices)),
            "lr": tune.loguniform(*self.lr_range),
        }
        if self.distill:
            space["loss_distill"] = tune.loguniform(*self.distill_range)
            space["temperature"] = tune.uniform(*self.temperature_range)
        else:  # no classifier: distillation off, so T would be a parameter that changes nothing
            space["loss_distill"] = 0.0
        if self.decoder_choices:
            space["loss_decoder"] = tune.choice(list(self.decoder_choices))
        return space
