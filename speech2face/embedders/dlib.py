"""dlib's 128-D face descriptor, with the weights face_recognition_models ships (real weights, CPU only)."""

from __future__ import annotations

import functools

import numpy as np

from speech2face.embedders.base import check_face_batch
from speech2face.faces import CROP_MARGIN, CROP_SIZE, face_box_in_crop, face_recognition_module
from speech2face.hashing import sha256_file


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
