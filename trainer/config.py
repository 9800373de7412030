"""TrainConfig: every setting of a training run, filled from CLI flags and written as config.json.

The tuning layer builds TrainConfig objects directly (``dataclasses.replace(config, lr=...)``), so
nothing here imports Ray.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass

from speech2face.models import PRESETS
from speech2face.perf import COMPILE_CHOICES

AMP_MODES = ("auto", "bf16", "fp16", "off")
GALLERY_MODES = ("ytid", "clip")


@dataclass
class TrainConfig:
    data: str
    storage: str
    name: str
    preset: str = "paper"
    num_workers: int = 1
    use_gpu: bool = False
    cpus_per_worker: float = 1.0
    epochs: int = 10
    batch_size: int = 8  # per worker
    lr: float = 1e-3
    adam_beta1: float = 0.5
    adam_beta2: float = 0.999
    adam_eps: float = 1e-4
    lr_decay: float = 0.95
    lr_decay_steps: int = 10_000
    loss_l2norm: float = 1.0
    loss_l1: float = 0.0
    loss_distill: float = 0.0
    temperature: float = 2.0
    loss_decoder: float = 0.0
    decoder: str | None = None  # decoder.safetensors whose first layer the face-decoder loss uses
    amp: str = "auto"
    compile: str = "auto"  # torch.compile the training forward: auto = on CUDA only
    seed: int = 0
    vggface_weights: str | None = None
    gallery_by: str = "ytid"
    crop_frames: int | None = None  # train on random time crops this long (augmentation; None = full clips)
    shuffle_buffer: int = 256  # rows per worker shuffled locally each epoch
    cache_data: bool = False  # materialize train/val once in the object store instead of re-reading each epoch
    max_failures: int = 1
    fail_at_step: int | None = None  # TEST ONLY: one worker os._exit()s once at this global step

    def validate(self) -> None:
        problems = []
        if self.preset not in PRESETS:
            problems.append(f"--preset must be one of {sorted(PRESETS)}, got {self.preset!r}")
        if self.amp not in AMP_MODES:
            problems.append(f"--amp must be one of {AMP_MODES}, got {self.amp!r}")
        if self.compile not in COMPILE_CHOICES:
            problems.append(f"--compile must be one of {COMPILE_CHOICES}, got {self.compile!r}")
        if self.gallery_by not in GALLERY_MODES:
            problems.append(f"--gallery-by must be one of {GALLERY_MODES}, got {self.gallery_by!r}")
        for name in ("num_workers", "epochs", "batch_size", "lr_decay_steps"):
            if getattr(self, name) < 1:
                problems.append(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0 or not 0 < self.lr_decay <= 1:
            problems.append(f"need --lr > 0 and 0 < --lr-decay <= 1, got {self.lr} and {self.lr_decay}")
        if min(self.loss_l1, self.loss_l2norm, self.loss_distill, self.loss_decoder) < 0:
            problems.append("loss weights must be >= 0")
        if self.loss_l1 == self.loss_l2norm == self.loss_distill == self.loss_decoder == 0:
            problems.append("all loss weights are 0: set --loss-l2norm, --loss-l1, --loss-distill or --loss-decoder")
        if self.loss_decoder > 0 and not self.decoder:
            problems.append("--loss-decoder needs --decoder: a trainer.train_decoder run's decoder.safetensors")
        if self.amp == "fp16" and not self.use_gpu:
            problems.append("--amp fp16 needs --use-gpu (CPU autocast supports bf16 only); use --amp bf16 or off")
        if self.max_failures < 0:
            problems.append(f"--max-failures must be >= 0, got {self.max_failures}")
        if problems:
            raise ValueError("; ".join(problems))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown TrainConfig keys {unknown}; this config.json is from another version")
        return cls(**values)


def build_parser() -> argparse.ArgumentParser:
    d = TrainConfig(data="", storage="", name="")
    p = argparse.ArgumentParser(
        prog="python -m trainer.train",
        description="Train the Speech2Face voice encoder with Ray Train (DDP). Rerunning with the same "
        "--storage and --name resumes from the last checkpoint.",
    )
    p.add_argument("--data", required=True, help="preprocess output (local dir or s3://): clips/ + manifest.json")
    p.add_argument("--storage", required=True, help="where runs live: local dir or s3://bucket/prefix")
    p.add_argument("--name", required=True, help="run name; the same name resumes; outputs in <storage>/<name>/")
    p.add_argument("--preset", choices=sorted(PRESETS), default=d.preset, help="voice-encoder size")
    p.add_argument("--num-workers", type=int, default=d.num_workers, help="DDP workers (one GPU each with --use-gpu)")
    p.add_argument("--use-gpu", action="store_true", help="train on GPUs (NCCL); default CPU (gloo)")
    p.add_argument("--cpus-per-worker", type=float, default=d.cpus_per_worker, help="CPUs reserved per worker")
    p.add_argument("--epochs", type=int, default=d.epochs, help="total epochs (a resumed run continues up to this)")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="clips per step per worker")
    p.add_argument("--lr", type=float, default=d.lr, help="Adam learning rate (paper: 1e-3)")
    p.add_argument("--lr-decay", type=float, default=d.lr_decay, help="lr factor every --lr-decay-steps (paper: 0.95)")
    p.add_argument("--lr-decay-steps", type=int, default=d.lr_decay_steps, help="optimiser steps per decay")
    p.add_argument("--loss-l2norm", type=float, default=d.loss_l2norm, help="weight of the normalised L2 loss")
    p.add_argument("--loss-l1", type=float, default=d.loss_l1, help="weight of the L1 loss")
    p.add_argument(
        "--loss-distill",
        type=float,
        default=d.loss_distill,
        help="weight of the VGG-Face fc8 distillation loss (vggface data only)",
    )
    p.add_argument("--temperature", type=float, default=d.temperature, help="distillation temperature T")
    p.add_argument(
        "--loss-decoder",
        type=float,
        default=d.loss_decoder,
        help="weight of the paper's face-decoder loss: L1 between --decoder's frozen first layer of the "
        "face feature and of the prediction",
    )
    p.add_argument(
        "--decoder",
        help="decoder.safetensors (trainer.train_decoder) for --loss-decoder, trained on "
        "features of the same embedder as --data",
    )
    p.add_argument(
        "--amp",
        choices=AMP_MODES,
        default=d.amp,
        help="autocast dtype; auto = bf16 where the device multiplies it natively (GPUs; CPUs with AMX or "
        "AVX512-BF16), else fp32; fp16 adds a GradScaler. Weights are channels_last and Adam fused either way",
    )
    p.add_argument(
        "--compile",
        choices=COMPILE_CHOICES,
        default=d.compile,
        help="torch.compile the training step's forward and backward; auto = on CUDA only (there it made "
        "the paper encoder's step 1.5x faster; on CPU it made that step slower). The first steps of each batch "
        "shape take longer while it compiles",
    )
    p.add_argument("--seed", type=int, default=d.seed, help="seed for initialisation and shuffling")
    p.add_argument(
        "--vggface-weights",
        metavar="PATH_OR_URI|random",
        help="VGG-Face weights for the distillation head; must be those the data was embedded with "
        "(default: the path recorded in the data's manifest)",
    )
    p.add_argument(
        "--gallery-by",
        choices=GALLERY_MODES,
        default=d.gallery_by,
        help="val gallery: one face per video (ytid) or one per clip (the seed's protocol)",
    )
    p.add_argument(
        "--crop-frames",
        type=int,
        default=None,
        help="train on random crops of this many spectrogram frames (faster; val uses full clips)",
    )
    p.add_argument("--shuffle-buffer", type=int, default=d.shuffle_buffer, help="local shuffle buffer, rows per worker")
    p.add_argument(
        "--cache-data",
        action="store_true",
        help="read the data once into Ray's object store (one shared copy) instead of every epoch; "
        "saves seconds per epoch on small datasets that fit in memory",
    )
    p.add_argument("--max-failures", type=int, default=d.max_failures, help="worker failures to retry")
    p.add_argument("--fail-at-step", type=int, default=None, help=argparse.SUPPRESS)  # test-only fault injection
    return p  # fmt: skip


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    parser = build_parser()
    config = TrainConfig(**vars(parser.parse_args(argv)))
    try:
        config.validate()
    except ValueError as error:
        parser.error(str(error))
    return config
