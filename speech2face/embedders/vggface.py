"""VGG-Face (Parkhi et al. 2015) in PyTorch, layer for layer as keras-vggface's "vgg16", and its weights loader.

Speech2Face's face feature is fc7 *before* its ReLU (4096-D). The identity classifier on a feature v is
fc8(relu(v)) (2622 identities); the distillation loss uses it on predicted features too.

Weights come from keras-vggface's ``rcmalli_vggface_tf_vgg16.h5`` (Keras weights-HDF5 layout), which the user
supplies: no package ships VGG-Face weights. ``VGGFaceEmbedder(allow_random=True)`` gives a seeded random
stand-in for tests and demos; its features mean nothing about faces.
"""

import os
from pathlib import Path

import h5py
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from speech2face.dataset import RANDOM_WEIGHTS
from speech2face.embedders.base import check_face_batch
from speech2face.hashing import sha256_file

IMAGE_SIZE = 224
FEATURE_DIM = 4096
NUM_IDENTITIES = 2622
NUM_PARAMETERS = 145_002_878
# Per-channel means of VGG-Face's training faces, in BGR order, on the 0-255 pixel scale.
MEAN_BGR = (93.5940, 104.7624, 129.1863)
RANDOM_WEIGHTS_SEED = 0

CONV_BLOCKS = (
    (("conv1_1", 64), ("conv1_2", 64)),
    (("conv2_1", 128), ("conv2_2", 128)),
    (("conv3_1", 256), ("conv3_2", 256), ("conv3_3", 256)),
    (("conv4_1", 512), ("conv4_2", 512), ("conv4_3", 512)),
    (("conv5_1", 512), ("conv5_2", 512), ("conv5_3", 512)),
)
POOL5_SHAPE = (512, 7, 7)  # (C, H, W) entering fc6
LAYER_NAMES = tuple(name for block in CONV_BLOCKS for name, _ in block) + ("fc6", "fc7", "fc8")

MISSING_WEIGHTS_HELP = (
    "VGG-Face needs weights, and no package ships them: pass weights=<path of keras-vggface's vgg16 .h5 file "
    "(rcmalli_vggface_tf_vgg16.h5)>, or allow_random=True for tests/demos (a seeded random stand-in whose "
    "features mean nothing about faces)."
)


def preprocess(images: np.ndarray | torch.Tensor, device: torch.device | str | None = None) -> torch.Tensor:
    """uint8 RGB images (N, H, W, 3) -> float32 (N, 3, H, W) BGR minus MEAN_BGR, on the 0-255 scale.

    The result is a channels_last view (a permuted NHWC tensor), which convolutions take without a copy.
    """
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(np.require(images, requirements=["W"]))  # torch warns on read-only arrays
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(
            f"VGG-Face expects uint8 RGB images shaped (N, H, W, 3) with pixels 0-255; got {images.dtype} "
            f"{tuple(images.shape)}. Float images in [0, 1] would silently corrupt the features."
        )
    images = images.to(device)
    mean_bgr = torch.tensor(MEAN_BGR, dtype=torch.float32, device=images.device)
    bgr = images.flip(-1).float() - mean_bgr
    return bgr.permute(0, 3, 1, 2)


def preprocess_unit_images(images: torch.Tensor) -> torch.Tensor:
    """Float RGB (N, 3, H, W) in [0, 1] (a face decoder's output) -> VGG-Face's input, differentiably."""
    mean_bgr = torch.tensor(MEAN_BGR, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    return images.flip(1) * 255 - mean_bgr


class VGGFace(nn.Module):
    """VGG-16 face network; submodules are named after keras-vggface's layers (conv1_1 ... conv5_3, fc6, fc7, fc8)."""

    preprocess = staticmethod(preprocess)

    def __init__(self):
        super().__init__()
        in_channels = 3
        for block in CONV_BLOCKS:
            for name, out_channels in block:
                setattr(self, name, nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1))
                in_channels = out_channels
        self.fc6 = nn.Linear(int(np.prod(POOL5_SHAPE)), FEATURE_DIM)
        self.fc7 = nn.Linear(FEATURE_DIM, FEATURE_DIM)
        self.fc8 = nn.Linear(FEATURE_DIM, NUM_IDENTITIES)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Preprocessed images (N, 3, 224, 224) -> fc7 before its ReLU (N, 4096): the Speech2Face face feature."""
        if tuple(x.shape[1:]) != (3, IMAGE_SIZE, IMAGE_SIZE):
            raise ValueError(f"VGG-Face takes (N, 3, 224, 224) preprocessed images, got {tuple(x.shape)}")
        for block in CONV_BLOCKS:
            for name, _ in block:
                x = F.relu(getattr(self, name)(x), inplace=True)
            x = F.max_pool2d(x, kernel_size=2, stride=2)
        x = torch.flatten(x, 1)  # logical (C, H, W) order, whatever the memory format
        x = F.relu(self.fc6(x), inplace=True)
        return self.fc7(x)

    def classifier_logits(self, feature: torch.Tensor) -> torch.Tensor:
        """fc8(relu(feature)): identity logits (N, 2622) for any (N, 4096) feature, differentiable."""
        return self.fc8(F.relu(feature))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


@torch.no_grad()
def init_random_weights(model: VGGFace, seed: int = RANDOM_WEIGHTS_SEED) -> VGGFace:
    """Seeded VGG-style init, drawn on the CPU so every device and machine gets bit-identical weights."""
    generator = torch.Generator().manual_seed(seed)
    for name in LAYER_NAMES:
        layer = getattr(model, name)
        weight = torch.empty(layer.weight.shape)
        if isinstance(layer, nn.Conv2d):
            nn.init.kaiming_normal_(weight, mode="fan_out", nonlinearity="relu", generator=generator)
        else:
            nn.init.normal_(weight, mean=0.0, std=0.01, generator=generator)
        layer.weight.copy_(weight)
        layer.bias.zero_()
    return model


def _keras_shapes(layer: nn.Module) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(kernel, bias) shapes as Keras stores them: conv (kh, kw, in, out), dense (in, out)."""
    out_dim, in_dim = layer.weight.shape[:2]
    kernel = (*layer.weight.shape[2:], in_dim, out_dim) if isinstance(layer, nn.Conv2d) else (in_dim, out_dim)
    return kernel, (out_dim,)


def _torch_weight(name: str, kernel: np.ndarray) -> torch.Tensor:
    """A Keras kernel in torch layout. fc6's inputs are Keras' flattened (H, W, C); torch flattens (C, H, W)."""
    if kernel.ndim == 4:
        weight = kernel.transpose(3, 2, 0, 1)
    elif name == "fc6":
        channels, height, width = POOL5_SHAPE
        weight = kernel.reshape(height, width, channels, -1).transpose(3, 2, 0, 1).reshape(-1, kernel.shape[0])
    else:
        weight = kernel.T
    return torch.from_numpy(np.ascontiguousarray(weight, dtype=np.float32))


def _as_names(values) -> list[str]:
    """An HDF5 string-array attribute (bytes or str; empty arrays come back as float64) as a list of str."""
    return [v.decode() if isinstance(v, bytes) else str(v) for v in np.asarray(values).ravel()]


def read_keras_vggface_h5(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The torch state dict of VGGFace from a Keras weights HDF5 (keras-vggface's file, or ``save_weights('x.h5')``).

    Names come from the file's ``layer_names`` / ``weight_names`` attributes, as Keras reads them.

    Takes a local path only; fetch remote files (s3://...) to a local path first.
    """
    if isinstance(path, str) and "://" in path:
        raise ValueError(f"{path} is a URI; VGG-Face weights are read from a local path: copy the file locally first")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"VGG-Face weights file not found: {path}. Give the path of keras-vggface's rcmalli_vggface_tf_vgg16.h5."
        )
    try:
        h5 = h5py.File(path, "r")
    except OSError as error:
        raise ValueError(f"{path} is not an HDF5 file ({error}); expected keras-vggface's vgg16 .h5 weights") from error
    with torch.device("meta"):  # shapes only, no memory
        reference = VGGFace()
    state = {}
    with h5:
        if "layer_names" not in h5.attrs:
            raise ValueError(
                f"{path} is not a Keras weights HDF5 file (no 'layer_names' attribute); "
                "expected keras-vggface's rcmalli_vggface_tf_vgg16.h5 or a model.save_weights('....h5') file"
            )
        layer_names = _as_names(h5.attrs["layer_names"])
        for name in LAYER_NAMES:
            if name not in layer_names:
                raise ValueError(
                    f"{path} has no layer {name!r} (its layers: {layer_names}); is it keras-vggface's vgg16 weights?"
                )
            group = h5[name]
            weight_names = _as_names(group.attrs.get("weight_names", []))
            if len(weight_names) != 2:
                raise ValueError(f"{path}: layer {name!r} holds weights {weight_names}; expected a kernel and a bias")
            for weight_name, expected in zip(weight_names, _keras_shapes(getattr(reference, name)), strict=True):
                found = group[weight_name].shape
                if found != expected:
                    raise ValueError(
                        f"{path}: layer {name!r} weight {weight_name!r} has shape {found}, expected {expected}"
                        " (keras-vggface vgg16 with the 2622-identity top)"
                    )
            kernel, bias = (np.asarray(group[weight_name]) for weight_name in weight_names)
            state[f"{name}.weight"] = _torch_weight(name, kernel)
            state[f"{name}.bias"] = torch.from_numpy(bias.astype(np.float32))
    return state


def load_keras_vggface_h5(model: VGGFace, path: str | os.PathLike) -> VGGFace:
    """Load keras-vggface vgg16 weights from a local HDF5 file into ``model`` (on any device); returns it."""
    model.load_state_dict(read_keras_vggface_h5(path))
    return model


def _default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class VGGFaceEmbedder:
    """Face images -> VGG-Face fc7 features before ReLU (the FaceEmbedder interface of speech2face.embedders).

    ``weights``: local path of keras-vggface's vgg16 .h5; ``weights_id`` is its SHA-256.
    ``allow_random=True`` without weights: the seeded random stand-in, ``weights_id == "random"``.
    """

    name = "vggface"
    dim = FEATURE_DIM
    has_classifier = True

    def __init__(
        self,
        weights: str | os.PathLike | None = None,
        allow_random: bool = False,
        device: torch.device | str | None = None,
        batch_size: int = 32,
    ):
        if weights is None and not allow_random:
            raise ValueError(MISSING_WEIGHTS_HELP)
        self.device = torch.device(device) if device is not None else _default_device()
        self.batch_size = batch_size
        with torch.device("meta"):  # skip torch's default init: every weight is overwritten below
            model = VGGFace()
        model.to_empty(device=self.device)
        if weights is None:
            init_random_weights(model)
            self.weights_id = RANDOM_WEIGHTS
        else:
            load_keras_vggface_h5(model, weights)
            self.weights_id = sha256_file(weights)
        self.model = model.to(memory_format=torch.channels_last).eval()

    def embed(self, images: np.ndarray) -> np.ndarray:
        """uint8 RGB (N, 224, 224, 3) -> float32 (N, 4096), in batches of ``batch_size``."""
        images = check_face_batch(images)
        features = np.empty((len(images), self.dim), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(images), self.batch_size):
                batch = preprocess(images[start : start + self.batch_size], device=self.device)
                features[start : start + len(batch)] = self.model.features(batch).float().cpu().numpy()
        return features

    def classifier_logits(self, feature: torch.Tensor) -> torch.Tensor:
        """fc8(relu(feature)) (N, 2622); differentiable with respect to ``feature``."""
        return self.model.classifier_logits(feature)
