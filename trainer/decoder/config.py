"""DecoderConfig: every setting of a face-decoder run; its fields are trainer.train_decoder's flags. No Ray here."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from speech2face.decoder import DECODER_PRESETS, DecoderLossWeights
from speech2face.flags import field_of, flag
from trainer.runtime.config import TrainingRun

_LOSS = DecoderLossWeights()


@dataclass(kw_only=True)
class DecoderConfig(TrainingRun):
    preset: str = flag(
        "tiny", choices=tuple(sorted(DECODER_PRESETS)), help="tiny: 64x64, minutes on a laptop CPU; paper: 224x224"
    )
    epochs: int = field_of(TrainingRun, "epochs", 100)
    batch_size: int = field_of(TrainingRun, "batch_size", 16)
    loss_texture: float = flag(
        _LOSS.texture, minimum=0, help="weight of the texture L1 (against the face warped to the mean shape)"
    )
    loss_landmarks: float = flag(
        _LOSS.landmarks, minimum=0, help="weight of the landmark MSE (in units of the crop's side)"
    )
    loss_image: float = flag(_LOSS.image, minimum=0, help="weight of the rendered face's L1")
    loss_feature: float = flag(
        _LOSS.feature,
        minimum=0,
        help="weight of 1 - cosine between VGG-Face features of the drawn face and the input "
        "(vggface data only: dlib has no gradients)",
    )
    flip: float = flag(0.5, minimum=0, maximum=1, help="probability of mirroring a training face (and its landmarks)")
    # 0.38 is how far the demo encoder's normalised predictions lie from their faces' on val (0.39 on test).
    feature_noise: float = flag(
        0.38,
        minimum=0,
        help="expected length of Gaussian noise added to each training face's L2-normalised feature, so that a "
        "voice's prediction (a noisy face feature) is drawn as a face: about the distance between your encoder's "
        "normalised predictions and their faces' on val (trainer.evaluate_decoder prints it); 0 for none",
    )

    def problems(self) -> list[str]:
        found = super().problems()
        if max(dataclasses.astuple(self.loss_weights())) == 0:
            found.append(
                "every loss weight is 0: set at least one of --loss-texture, --loss-landmarks, "
                "--loss-image, --loss-feature"
            )
        return found

    def loss_weights(self) -> DecoderLossWeights:
        return DecoderLossWeights(
            texture=self.loss_texture, landmarks=self.loss_landmarks, image=self.loss_image, feature=self.loss_feature
        )
