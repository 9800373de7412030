"""Face embedders: turn 224x224 face crops into feature vectors.

Every embedder has the same small interface (``FaceEmbedder``) so the pipeline, trainer and
evaluation can switch between dlib's 128-D descriptor and the paper's 4096-D VGG-Face fc7.
"""

from __future__ import annotations

import functools
from typing import Protocol, runtime_checkable

import numpy as np

from speech2face.faces import CROP_MARGIN, CROP_SIZE, face_box_in_crop, face_recognition_module
from speech2face.hashing import sha256_file

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


@functools.cache
def _sha256(path: str) -> str:
    return sha256_file(path)  # cached: every actor asks once per weights file


class DlibFace:
    """dlib's 128-D ResNet face descriptor (shipped in face_recognition_models), on CPU.

    The crop's central box, where ``crop_face`` framed the detected face, is given to dlib as the
    face location; dlib then finds 5 landmarks in it and aligns the face itself.
    """

    name = "dlib"
    dim = 128
    has_classifier = False

    def __init__(self, margin: float = CROP_MARGIN):
        self._face_recognition = face_recognition_module()
        self._face_location = tuple(face_box_in_crop(margin, CROP_SIZE).as_list())
        import face_recognition_models

        self.weights_id = _sha256(face_recognition_models.face_recognition_model_location())

    def embed(self, images: np.ndarray) -> np.ndarray:
        images = check_face_batch(images)
        features = np.empty((len(images), self.dim), dtype=np.float32)
        for i, image in enumerate(images):
            (features[i],) = self._face_recognition.face_encodings(
                image, known_face_locations=[self._face_location], model="small"
            )
        return features


def make_embedder(name: str, weights: str | None = None, allow_random: bool = False, device=None) -> FaceEmbedder:
    """The embedder called ``name``: "dlib" (128-D, CPU, weights shipped) or "vggface" (4096-D fc7, torch).

    ``weights``, ``allow_random`` and ``device`` are for vggface; dlib uses its shipped model on the CPU.
    """
    if name == "dlib":
        if weights is not None:
            raise ValueError(
                "the dlib embedder uses the model shipped in face_recognition_models; weights= is only for vggface"
            )
        return DlibFace()
    if name == "vggface":
        from speech2face.vggface import VGGFaceEmbedder

        return VGGFaceEmbedder(weights=weights, allow_random=allow_random, device=device)
    raise ValueError(f"unknown face embedder {name!r}; valid names: {', '.join(EMBEDDER_NAMES)}")
