"""What every face embedder is: 224x224 face crops in, one feature vector per crop out."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from speech2face.faces import CROP_SIZE

EMBEDDER_NAMES = ("dlib", "vggface")


@runtime_checkable
class FaceEmbedder(Protocol):
    name: str  # "dlib" / "vggface"
    dim: int  # length of one feature vector
    weights_id: str  # sha256 of the weights file, or "random"
    has_classifier: bool  # True when the embedder also has classifier_logits (vggface)

    def embed(self, images: np.ndarray) -> np.ndarray:
        """uint8 (N, 224, 224, 3) RGB face crops -> float32 (N, dim) features."""
        ...


def check_face_batch(images: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
    """Return ``images`` as a C-contiguous uint8 (N, size, size, 3) array, or raise ValueError saying what is wrong."""
    if not isinstance(images, np.ndarray):
        raise ValueError(f"face batch must be a numpy array, got {type(images).__name__}")
    if images.ndim == 3 and images.shape == (size, size, 3):
        raise ValueError(f"face batch must be 4-D (N, {size}, {size}, 3); for one crop pass images[None]")
    if images.ndim != 4 or images.shape[1:] != (size, size, 3):
        raise ValueError(
            f"face batch must have shape (N, {size}, {size}, 3) RGB, got {images.shape}; "
            "crop faces with speech2face.faces.crop_face"
        )
    if images.dtype != np.uint8:
        raise ValueError(f"face batch must be uint8 RGB (0-255), got dtype {images.dtype}")
    return np.ascontiguousarray(images)
