"""DecoderConfig: every setting of a face-decoder run, from trainer.train_decoder's flags; no Ray here."""

from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass

from speech2face.decoder import DECODER_PRESETS, DecoderLossWeights
from trainer.config import AMP_MODES

_LOSS = DecoderLossWeights()


@dataclass
class DecoderConfig:
    data: str
    storage: str
    name: str
    preset: str = "tiny"
    num_workers: int = 1
    use_gpu: bool = False
    cpus_per_worker: float = 1.0
    epochs: int = 100
    batch_size: int = 16  # per worker
    lr: float = 1e-3
    loss_texture: float = _LOSS.texture
    loss_landmarks: float = _LOSS.landmarks
    loss_image: float = _LOSS.image
    loss_feature: float = _LOSS.feature
    vggface_weights: str | None = None  # for --loss-feature: the network the data was embedded with
    flip: float = 0.5  # probability of mirroring a training face (and its landmarks)
    # Expected length of Gaussian noise added to a training face's normalised feature: the decoder
    # then draws a voice's prediction, a noisy face feature, as a face. 0.38 is how far the demo
    # encoder's normalised predictions lie from their faces' on val (0.39 on test).
    feature_noise: float = 0.38
    amp: str = "auto"
    seed: int = 0
    cache_data: bool = False  # decode the faces once into the object store instead of every epoch
    max_failures: int = 1

    def validate(self) -> None:
        problems = []
        if self.preset not in DECODER_PRESETS:
            problems.append(f"--preset must be one of {sorted(DECODER_PRESETS)}, got {self.preset!r}")
        if self.amp not in AMP_MODES:
            problems.append(f"--amp must be one of {AMP_MODES}, got {self.amp!r}")
        for name in ("num_workers", "epochs", "batch_size"):
            if getattr(self, name) < 1:
                problems.append(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            problems.append(f"--lr must be > 0, got {self.lr}")
        weights = self.loss_weights()
        if min(dataclasses.astuple(weights)) < 0 or max(dataclasses.astuple(weights)) == 0:
            problems.append("loss weights must be >= 0 and at least one > 0")
        if not 0 <= self.flip <= 1:
            problems.append(f"--flip must be in [0, 1], got {self.flip}")
        if self.feature_noise < 0:
            problems.append(f"--feature-noise must be >= 0, got {self.feature_noise}")
        if self.amp == "fp16" and not self.use_gpu:
            problems.append("--amp fp16 needs --use-gpu (CPU autocast supports bf16 only); use --amp bf16 or off")
        if self.max_failures < 0:
            problems.append(f"--max-failures must be >= 0, got {self.max_failures}")
        if problems:
            raise ValueError("; ".join(problems))

    def loss_weights(self) -> DecoderLossWeights:
        return DecoderLossWeights(texture=self.loss_texture, landmarks=self.loss_landmarks, image=self.loss_image,
                                  feature=self.loss_feature)  # fmt: skip

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"


def build_parser() -> argparse.ArgumentParser:
    d = DecoderConfig(data="", storage="", name="")
    p = argparse.ArgumentParser(
        prog="python -m trainer.train_decoder",
        description="Train the face decoder (face feature -> face image, Cole et al.'s shape) with Ray Train on "
        "the train split of a preprocess output. Rerunning with the same --storage and --name resumes.",
    )
    p.add_argument("--data", required=True, help="preprocess output (local dir or s3://): clips/ + manifest.json")
    p.add_argument("--storage", required=True, help="where runs live: local dir or s3://bucket/prefix")
    p.add_argument("--name", required=True, help="run name; the same name resumes; outputs in <storage>/<name>/")
    p.add_argument(
        "--preset",
        choices=sorted(DECODER_PRESETS),
        default=d.preset,
        help="tiny: 64x64, minutes on a laptop CPU; paper: Cole et al.'s 224x224",
    )
    p.add_argument("--num-workers", type=int, default=d.num_workers, help="DDP workers (one GPU each with --use-gpu)")
    p.add_argument("--use-gpu", action="store_true", help="train on GPUs (NCCL); default CPU (gloo)")
    p.add_argument("--cpus-per-worker", type=float, default=d.cpus_per_worker, help="CPUs reserved per worker")
    p.add_argument("--epochs", type=int, default=d.epochs, help="total epochs (a resumed run continues up to this)")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="faces per step per worker")
    p.add_argument("--lr", type=float, default=d.lr, help="Adam learning rate")
    p.add_argument(
        "--loss-texture",
        type=float,
        default=d.loss_texture,
        help="weight of the texture L1 (against the face warped to the mean shape)",
    )
    p.add_argument(
        "--loss-landmarks",
        type=float,
        default=d.loss_landmarks,
        help="weight of the landmark MSE (in units of the crop's side)",
    )
    p.add_argument("--loss-image", type=float, default=d.loss_image, help="weight of the rendered face's L1")
    p.add_argument(
        "--loss-feature",
        type=float,
        default=d.loss_feature,
        help="weight of 1 - cosine between VGG-Face features of the drawn face and the input "
        "(vggface data only: dlib has no gradients)",
    )
    p.add_argument(
        "--vggface-weights",
        metavar="PATH_OR_URI|random",
        help="for --loss-feature: the VGG-Face .h5 the data was embedded with (default: the manifest's)",
    )
    p.add_argument("--flip", type=float, default=d.flip, help="probability of mirroring a training face")
    p.add_argument("--feature-noise", type=float, default=d.feature_noise,
                   help="expected length of Gaussian noise added to each training face's L2-normalised feature, "
                        "so that a voice's prediction (a noisy face feature) is drawn as a face: about the distance "
                        "between your encoder's normalised predictions and their faces' on val (0.38 on the demo "
                        "corpus); 0 for none")  # fmt: skip
    p.add_argument("--amp", choices=AMP_MODES, default=d.amp, help="autocast dtype, as in trainer.train")
    p.add_argument("--seed", type=int, default=d.seed, help="seed for initialisation, flips and shuffling")
    p.add_argument(
        "--cache-data",
        action="store_true",
        help="decode the faces once into Ray's object store instead of every epoch (data that fits in memory)",
    )
    p.add_argument("--max-failures", type=int, default=d.max_failures, help="worker failures to retry")
    return p


def parse_args(argv: list[str] | None = None) -> DecoderConfig:
    parser = build_parser()
    config = DecoderConfig(**vars(parser.parse_args(argv)))
    try:
        config.validate()
    except ValueError as error:
        parser.error(str(error))
    return config
