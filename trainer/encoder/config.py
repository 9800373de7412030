"""TrainConfig: every setting of a voice-encoder run; its fields are trainer.train's flags, recorded as config.json.

The tuning layer builds TrainConfig objects directly (``dataclasses.replace(config, lr=...)``), so
nothing here imports Ray.
"""

from __future__ import annotations

from dataclasses import dataclass

from speech2face.flags import flag
from speech2face.inference.retrieval import BY_VIDEO, GALLERY_MODES
from speech2face.models import PRESETS
from speech2face.perf import COMPILE_CHOICES
from trainer.runtime.config import TrainingRun


@dataclass(kw_only=True)
class TrainConfig(TrainingRun):
    preset: str = flag("paper", choices=tuple(sorted(PRESETS)), help="voice-encoder size")
    adam_beta1: float = flag(0.5, minimum=0, help="Adam beta1 (paper: 0.5)")
    adam_beta2: float = flag(0.999, minimum=0, help="Adam beta2")
    adam_eps: float = flag(1e-4, above=0, help="Adam epsilon (paper: 1e-4)")
    lr_decay: float = flag(0.95, above=0, maximum=1, help="lr factor every --lr-decay-steps (paper: 0.95)")
    lr_decay_steps: int = flag(10_000, minimum=1, help="optimiser steps per decay")
    loss_l2norm: float = flag(1.0, minimum=0, help="weight of the normalised L2 loss")
    loss_l1: float = flag(0.0, minimum=0, help="weight of the L1 loss")
    loss_distill: float = flag(0.0, minimum=0, help="weight of the VGG-Face fc8 distillation loss (vggface data only)")
    temperature: float = flag(2.0, above=0, help="distillation temperature T")
    loss_decoder: float = flag(
        0.0,
        minimum=0,
        help="weight of the paper's face-decoder loss: L1 between --decoder's frozen first layer of the "
        "face feature and of the prediction",
    )
    decoder: str | None = flag(
        None,
        help="decoder.safetensors (trainer.train_decoder) for --loss-decoder, trained on features of the same "
        "embedder as --data",
    )
    compile: str = flag(
        "auto",
        choices=COMPILE_CHOICES,
        help="torch.compile the training step's forward and backward; auto = on CUDA only (on CPU it made the "
        "paper encoder's step slower: benchmarks/RESULTS.md). The first steps of each batch shape compile",
    )
    gallery_by: str = flag(
        BY_VIDEO, choices=GALLERY_MODES, help="val gallery: one face per video (ytid) or one per clip (the seed's)"
    )
    crop_frames: int | None = flag(
        None, minimum=1, help="train on random crops of this many spectrogram frames (faster; val uses full clips)"
    )
    shuffle_buffer: int = flag(256, minimum=1, help="local shuffle buffer, rows per worker")

    def problems(self) -> list[str]:
        found = super().problems()
        if self.loss_l1 == self.loss_l2norm == self.loss_distill == self.loss_decoder == 0:
            found.append("all loss weights are 0: set --loss-l2norm, --loss-l1, --loss-distill or --loss-decoder")
        if self.loss_decoder > 0 and not self.decoder:
            found.append("--loss-decoder needs --decoder: a trainer.train_decoder run's decoder.safetensors")
        return found
