"""The settings every training run has, encoder or decoder: where the data and the run live, the workers,
the optimiser's basics, mixed precision. Each job's config extends it; its fields are the job's flags."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

from speech2face.flags import flag
from speech2face.perf import AMP_CHOICES


@dataclass(kw_only=True)
class TrainingRun:
    data: str = flag(help="preprocess output (local dir or s3://): clips/ + manifest.json")
    storage: str = flag(help="where runs live: local dir or s3://bucket/prefix")
    name: str = flag(help="run name; the same name resumes; outputs in <storage>/<name>/")
    num_workers: int = flag(1, minimum=1, help="DDP workers (one GPU each with --use-gpu)")
    use_gpu: bool = flag(False, help="train on GPUs (NCCL); default CPU (gloo)")
    cpus_per_worker: float = flag(1.0, above=0, help="CPUs reserved per worker")
    epochs: int = flag(10, minimum=1, help="total epochs (a resumed run continues up to this)")
    batch_size: int = flag(8, minimum=1, help="samples per step per worker")
    lr: float = flag(1e-3, above=0, help="Adam learning rate")
    amp: str = flag(
        "auto",
        choices=AMP_CHOICES,
        help="autocast dtype; auto = bf16 where the device multiplies it natively (GPUs; CPUs with AMX or "
        "AVX512-BF16), else fp32; fp16 adds a GradScaler",
    )
    seed: int = flag(0, help="seed for initialisation, augmentation and shuffling")
    vggface_weights: str | None = flag(
        None,
        metavar="PATH_OR_URI|random",
        help="for the losses through VGG-Face: the .h5 the data was embedded with (default: the manifest's)",
    )
    cache_data: bool = flag(
        False,
        help="read the data once into Ray's object store (one shared copy) instead of every epoch; "
        "saves seconds per epoch on small datasets that fit in memory",
    )
    max_failures: int = flag(1, minimum=0, help="worker failures to retry (from the last checkpoint)")

    def problems(self) -> list[str]:
        if self.amp == "fp16" and not self.use_gpu:
            return ["--amp fp16 needs --use-gpu (CPU autocast supports bf16 only); use --amp bf16 or off"]
        return []

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_dict(cls, values: dict):
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} keys {unknown}; this config.json is from another version")
        return cls(**values)
