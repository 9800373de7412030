"""The face decoder: a face feature -> a frontal face image, in the shape of Cole et al. (arXiv 1701.04851).

feature -> ``first_layer`` = ReLU(Linear(in_dim, 1000)) of the L2-normalised feature, the paper's f_dec
(Speech2Face's decoder loss compares it for the face's and the voice's features), then two branches:
- landmarks: an MLP predicting 68 offsets from the mean face shape;
- texture: an FC to a small feature map and four stride-2 transposed convolutions, the face drawn
  on the mean shape;
and the render step warps the texture from the mean shape to the predicted landmarks
(``speech2face.warp``). Images are RGB in [0, 1], framed like ``faces.crop_face``'s crops, at the
preset's resolution; ``to_crops`` makes 224x224 uint8 crops any embedder takes unchanged.
Landmarks here are in image units: (x, y) / (side - 1), 0..1 across the crop.

The feature is L2-normalised because the voice encoder is trained on normalised features only: its
predictions point the right way at any length (35x a dlib face feature's here), and decoding them
unnormalised draws noise. Then the training faces' mean (of normalised features, ``mean_feature``)
is subtracted and the rest normalised again (times sqrt(in_dim), so its entries are ~1): a voice's
prediction regresses toward the mean face (on the demo's val split it lies 0.25 from it, a face 0.35),
and what tells faces apart is the direction it leaves the mean in, not how far.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from speech2face.faces import CROP_SIZE
from speech2face.landmarks import MIRROR_ORDER, NUM_LANDMARKS, check_landmarks
from speech2face.warp import warp

FIRST_LAYER_WIDTH = 1000  # f_dec's width in Cole et al. and Speech2Face


@dataclass(frozen=True)
class DecoderPreset:
    resolution: int  # output side, pixels
    start_side: int  # the texture FC's map is start_side x start_side x start_channels
    start_channels: int
    channels: tuple[int, ...]  # one 5x5 stride-2 transposed conv each, doubling the side
    landmark_hidden: int
    flow_size: int | None  # the warp's sampling grid (None: every pixel)

    def __post_init__(self):
        if self.start_side * 2 ** len(self.channels) != self.resolution:
            raise ValueError(f"{self.start_side} x 2^{len(self.channels)} != resolution {self.resolution}")


DECODER_PRESETS: dict[str, DecoderPreset] = {
    # Cole et al.: 14x14x256 -> 128, 64, 32, 32 channels -> 224x224, then a 1x1 conv to RGB.
    "paper": DecoderPreset(224, 14, 256, (128, 64, 32, 32), landmark_hidden=256, flow_size=56),
    # A laptop-CPU size of the same shape: 4x4x128 -> 64x64.
    "tiny": DecoderPreset(64, 4, 128, (64, 32, 16, 16), landmark_hidden=128, flow_size=32),
}


@dataclass
class DecodedFace:
    first: torch.Tensor  # (N, 1000): f_dec
    landmarks: torch.Tensor  # (N, 68, 2), image units
    texture: torch.Tensor  # (N, 3, R, R): the face on the mean shape
    image: torch.Tensor  # (N, 3, R, R): the texture warped to the landmarks


def unit_landmarks(pixels: np.ndarray | torch.Tensor, side: int = CROP_SIZE) -> torch.Tensor:
    """Landmarks in pixels of a side x side crop -> image units (0..1)."""
    if isinstance(pixels, np.ndarray):
        pixels = torch.from_numpy(check_landmarks(pixels))
    return pixels / (side - 1)


def mirror_faces(
    faces: torch.Tensor, landmarks: torch.Tensor, chosen: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Faces (N, C, H, W) flipped left-right where ``chosen`` (N,) is True, landmarks (image units) to match."""
    order = torch.as_tensor(MIRROR_ORDER, device=landmarks.device)
    mirrored = landmarks[:, order].clone()
    mirrored[..., 0] = 1 - mirrored[..., 0]
    pick = chosen.view(-1, 1, 1, 1)
    return torch.where(pick, faces.flip(-1), faces), torch.where(pick[..., 0], mirrored, landmarks)


class FaceDecoder(nn.Module):
    def __init__(self, in_dim: int, preset: str | DecoderPreset = "tiny", mean_shape: np.ndarray | None = None,
                 mean_feature: np.ndarray | None = None):  # fmt: skip
        """``mean_shape``: (68, 2) in 224-crop pixels (``landmarks.mean_shape`` of the training faces);
        ``mean_feature``: (in_dim,) the mean of their L2-normalised features (zeros: no centring, as
        decoders written before it); without them placeholders until ``load_state_dict`` brings them."""
        super().__init__()
        if in_dim < 1:
            raise ValueError(f"in_dim must be positive, got {in_dim}")
        if isinstance(preset, str) and preset not in DECODER_PRESETS:
            raise ValueError(f"unknown decoder preset {preset!r}; valid: {', '.join(DECODER_PRESETS)}")
        self.preset_name = preset if isinstance(preset, str) else "custom"
        spec = DECODER_PRESETS[preset] if isinstance(preset, str) else preset
        self.spec, self.in_dim = spec, in_dim
        shape = np.full((NUM_LANDMARKS, 2), (CROP_SIZE - 1) / 2, np.float32) if mean_shape is None else mean_shape
        self.register_buffer("mean_shape", unit_landmarks(check_landmarks(np.asarray(shape)[None]))[0].clone())
        center = np.zeros(in_dim, np.float32) if mean_feature is None else np.asarray(mean_feature, np.float32)
        if center.shape != (in_dim,):
            raise ValueError(f"mean_feature must be ({in_dim},), got {center.shape}")
        self.register_buffer("mean_feature", torch.from_numpy(center.copy()))
        self.first = nn.Sequential(nn.Linear(in_dim, FIRST_LAYER_WIDTH), nn.ReLU())
        self.landmark_mlp = nn.Sequential(
            nn.Linear(FIRST_LAYER_WIDTH, spec.landmark_hidden), nn.ReLU(),
            nn.Linear(spec.landmark_hidden, NUM_LANDMARKS * 2),
        )  # fmt: skip
        self.texture_fc = nn.Sequential(
            nn.Linear(FIRST_LAYER_WIDTH, spec.start_side**2 * spec.start_channels), nn.ReLU()
        )
        layers, in_channels = [], spec.start_channels
        for channels in spec.channels:
            layers += [nn.ConvTranspose2d(in_channels, channels, 5, stride=2, padding=2, output_padding=1), nn.ReLU()]
            in_channels = channels
        self.texture_cnn = nn.Sequential(*layers, nn.Conv2d(in_channels, 3, 1), nn.Sigmoid())

    def forward(self, features: torch.Tensor) -> DecodedFace:
        if features.ndim != 2 or features.shape[1] != self.in_dim:
            raise ValueError(f"features must be (N, {self.in_dim}), got {tuple(features.shape)}")
        first = self.first_layer(features)
        offsets = self.landmark_mlp(first).view(-1, NUM_LANDMARKS, 2)
        landmarks = self.mean_shape + offsets
        side = self.spec.start_side
        texture = self.texture_cnn(self.texture_fc(first).view(-1, self.spec.start_channels, side, side))
        image = self.render(texture, landmarks)
        return DecodedFace(first=first, landmarks=landmarks, texture=texture, image=image)

    def first_layer(self, features: torch.Tensor) -> torch.Tensor:
        """f_dec: ReLU(Linear(.)) of the features (N, in_dim) normalised, centred and normalised -> (N, 1000)."""
        centred = F.normalize(features, dim=1) - self.mean_feature.to(features.dtype)
        return self.first(F.normalize(centred, dim=1) * self.in_dim**0.5)

    def render(self, texture: torch.Tensor, landmarks: torch.Tensor) -> torch.Tensor:
        """The texture (on the mean shape) warped so its landmarks land on ``landmarks`` (image units)."""
        scale = self.spec.resolution - 1
        mean = self.mean_shape.expand(len(texture), -1, -1).to(texture.dtype)
        return warp(texture, mean * scale, landmarks.to(texture.dtype) * scale, flow_size=self.spec.flow_size)

    def to_mean_shape(self, images: torch.Tensor, landmarks: torch.Tensor) -> torch.Tensor:
        """Face crops (N, 3, R, R) warped from their landmarks (image units) to the mean shape: the texture target."""
        scale = self.spec.resolution - 1
        mean = self.mean_shape.expand(len(images), -1, -1).to(images.dtype)
        return warp(images, landmarks.to(images.dtype) * scale, mean * scale, flow_size=self.spec.flow_size)


def crops_to_tensor(crops: np.ndarray, resolution: int) -> torch.Tensor:
    """uint8 (N, 224, 224, 3) crops -> float (N, 3, resolution, resolution) in [0, 1], the decoder's targets."""
    images = torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).float() / 255
    if resolution != images.shape[-1]:
        images = F.interpolate(images, size=(resolution, resolution), mode="bilinear", antialias=True,
                               align_corners=False)  # fmt: skip
    return images


def to_crops(images: torch.Tensor) -> np.ndarray:
    """Decoded images (N, 3, R, R) in [0, 1] -> uint8 (N, 224, 224, 3) crops, framed like crop_face's."""
    images = images.detach().float()
    if images.shape[-1] != CROP_SIZE:
        images = F.interpolate(images, size=(CROP_SIZE, CROP_SIZE), mode="bilinear", align_corners=False)
    return (images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


@dataclass(frozen=True)
class DecoderLossWeights:
    texture: float = 1.0  # L1, against the crop warped to the mean shape
    landmarks: float = 10.0  # MSE in image units (an error of 0.05 is 11 px of a 224 crop)
    image: float = 1.0  # L1 of the rendered face against the crop
    feature: float = 0.0  # 1 - cosine through a differentiable embedder (VGG-Face; dlib has no gradients)


def decoder_losses(
    decoder: FaceDecoder,
    decoded: DecodedFace,
    crops: torch.Tensor,
    landmarks: torch.Tensor,
    weights: DecoderLossWeights = DecoderLossWeights(),
    embed=None,
    features: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """The weighted parts and their ``total``. ``crops`` (N, 3, R, R) in [0, 1]; ``landmarks`` image units.

    ``embed``: a differentiable function from (N, 3, 224, 224) images in [0, 1] to features, used with
    ``features`` (the inputs) when ``weights.feature`` > 0.
    """
    with torch.no_grad():
        texture_target = decoder.to_mean_shape(crops, landmarks)
    parts = {
        "texture": F.l1_loss(decoded.texture, texture_target),
        "landmarks": F.mse_loss(decoded.landmarks, landmarks),
        "image": F.l1_loss(decoded.image, crops),
    }
    if weights.feature > 0:
        if embed is None or features is None:
            raise ValueError("a feature loss weight needs embed= (a differentiable embedder) and features=")
        resized = F.interpolate(decoded.image, size=(CROP_SIZE, CROP_SIZE), mode="bilinear", align_corners=False)
        parts["feature"] = 1 - F.cosine_similarity(embed(resized), features, dim=1).mean()
    parts["total"] = sum(getattr(weights, name) * value for name, value in parts.items())
    return parts
