"""68-point face landmarks of 224x224 face crops, with dlib's shape predictor (shipped in face_recognition_models).

The predictor runs on the same box the dlib embedder uses: the crop's central square, where
``faces.crop_face`` framed the detected face. Points are (x, y) in crop pixels (iBUG 300-W order:
jaw 0-16, brows 17-26, nose 27-35, eyes 36-47, mouth 48-67).
"""

from __future__ import annotations

import functools

import numpy as np

from speech2face.embedders.base import check_face_batch
from speech2face.faces import CROP_MARGIN, CROP_SIZE, face_box_in_crop, face_recognition_module

NUM_LANDMARKS = 68

# The point each landmark becomes in the mirror image (left eye <-> right eye, and so on).
_MIRROR_PAIRS = [
    *((i, 16 - i) for i in range(8)),  # jaw
    *((17 + i, 26 - i) for i in range(5)),  # eyebrows
    *((31 + i, 35 - i) for i in range(2)),  # nostrils
    (36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46),  # eyes
    (48, 54), (49, 53), (50, 52), (55, 59), (56, 58),  # outer lips
    (60, 64), (61, 63), (65, 67),  # inner lips
]  # fmt: skip
MIRROR_ORDER = np.arange(NUM_LANDMARKS)
for _a, _b in _MIRROR_PAIRS:
    MIRROR_ORDER[_a], MIRROR_ORDER[_b] = _b, _a


@functools.cache
def _predictor():
    face_recognition_module()  # imports face_recognition_models without its pkg_resources warning
    import dlib
    import face_recognition_models

    return dlib.shape_predictor(face_recognition_models.pose_predictor_model_location())


def crop_landmarks(images: np.ndarray, margin: float = CROP_MARGIN) -> np.ndarray:
    """uint8 (N, 224, 224, 3) RGB face crops -> float32 (N, 68, 2) landmarks, (x, y) in crop pixels."""
    import dlib

    images = check_face_batch(images)
    box = face_box_in_crop(margin, CROP_SIZE)
    rectangle = dlib.rectangle(box.left, box.top, box.right, box.bottom)
    predictor = _predictor()
    points = np.empty((len(images), NUM_LANDMARKS, 2), dtype=np.float32)
    for i, image in enumerate(images):
        shape = predictor(image, rectangle)
        points[i] = [(part.x, part.y) for part in shape.parts()]
    return points


# Craniofacial measures from dlib's 68 points (0-based): ratios, so a face's size and place do not count
MEASURES = {
    "nasal_index": ((31, 35), (27, 33)),  # nose width (alae) / nose height (nasion to subnasale)
    "face_width_to_height": ((0, 16), (27, 8)),  # jaw width / nasion to chin
    "mouth_to_face_width": ((48, 54), (0, 16)),
    "eye_width_to_spacing": ((36, 39), (39, 42)),  # an eye's width / the gap between the eyes
}


def craniofacial_measures(landmarks: np.ndarray) -> dict[str, np.ndarray]:
    """Each of ``MEASURES`` for every face of (N, 68, 2) landmarks: {name: (N,) ratios}."""
    points = check_landmarks(landmarks).astype(np.float64)

    def length(pair):
        return np.linalg.norm(points[:, pair[0]] - points[:, pair[1]], axis=1)

    return {name: length(top) / np.maximum(length(bottom), 1e-9) for name, (top, bottom) in MEASURES.items()}


def check_landmarks(landmarks: np.ndarray) -> np.ndarray:
    """``landmarks`` as float32 (N, 68, 2), or ValueError saying what is wrong."""
    landmarks = np.asarray(landmarks)
    if landmarks.ndim != 3 or landmarks.shape[1:] != (NUM_LANDMARKS, 2):
        raise ValueError(f"landmarks must have shape (N, {NUM_LANDMARKS}, 2), got {landmarks.shape}")
    if not np.isfinite(landmarks).all():
        raise ValueError("landmarks hold NaN or infinite values")
    return landmarks.astype(np.float32, copy=False)


def mirror(images: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Faces flipped left-right, with their landmarks moved and renumbered to match (augmentation).

    ``images`` (N, H, W, C); landmarks in pixels of those images.
    """
    landmarks = check_landmarks(landmarks)
    width = images.shape[2]
    flipped = landmarks[:, MIRROR_ORDER].copy()
    flipped[..., 0] = (width - 1) - flipped[..., 0]
    return images[:, :, ::-1].copy(), flipped


def mean_shape(landmarks: np.ndarray) -> np.ndarray:
    """The mean face shape (68, 2) of a set of faces and their mirror images (so it is symmetric)."""
    landmarks = check_landmarks(landmarks)
    if len(landmarks) == 0:
        raise ValueError("the mean shape needs at least one face's landmarks")
    mirrored = landmarks[:, MIRROR_ORDER].copy()
    mirrored[..., 0] = (CROP_SIZE - 1) - mirrored[..., 0]
    return np.concatenate([landmarks, mirrored]).mean(axis=0)
