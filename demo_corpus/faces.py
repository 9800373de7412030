"""Real face frames made offline from scikit-image's LFW subset, for tests and the demo corpus.

``skimage.data.lfw_subset()`` ships 200 grey 25x25 crops: 100 real faces from Labeled Faces in the
Wild first, then 100 non-face patches. Upscaled to about 150 px, dlib's HOG detector finds most faces.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
from PIL import Image

NUM_LFW_FACES = 100
FRAME_WIDTH = 640
FRAME_HEIGHT = 360
BACKGROUND_GREY = 128


@functools.cache
def _lfw_subset() -> np.ndarray:
    import skimage.data

    images = skimage.data.lfw_subset()
    if images.shape != (2 * NUM_LFW_FACES, 25, 25):
        raise RuntimeError(f"skimage.data.lfw_subset() has shape {images.shape}, expected (200, 25, 25)")
    images.setflags(write=False)
    return images


def lfw_faces() -> np.ndarray:
    """The 100 LFW faces, float in [0, 1], shape (100, 25, 25)."""
    return _lfw_subset()[:NUM_LFW_FACES]


def lfw_non_faces() -> np.ndarray:
    """The 100 non-face patches of the same subset, float in [0, 1], shape (100, 25, 25)."""
    return _lfw_subset()[NUM_LFW_FACES:]


def _grey_to_rgb(grey: np.ndarray, size: int) -> np.ndarray:
    image = Image.fromarray(np.round(grey * 255).astype(np.uint8), mode="L")
    image = image.resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(image.convert("RGB"))


def face_rgb(index: int, size: int = 150) -> np.ndarray:
    """LFW face ``index`` (0-99) upscaled to ``size`` x ``size``, as uint8 RGB."""
    if not 0 <= index < NUM_LFW_FACES:
        raise ValueError(f"LFW face index must be in 0..{NUM_LFW_FACES - 1}, got {index}")
    if size < 1:
        raise ValueError(f"size must be positive, got {size}")
    return _grey_to_rgb(lfw_faces()[index], size)


def _background(background, width: int, height: int) -> np.ndarray:
    if isinstance(background, np.ndarray) and background.ndim == 3:
        if background.shape != (height, width, 3):
            raise ValueError(f"background image has shape {background.shape}, expected {(height, width, 3)}")
        return background.astype(np.uint8, copy=True)
    frame = np.empty((height, width, 3), dtype=np.uint8)
    frame[...] = np.asarray(background, dtype=np.uint8)  # a grey level or an (r, g, b) colour
    return frame


def compose_frame(
    faces: Sequence[tuple[np.ndarray, float, float]],
    width: int = FRAME_WIDTH,
    height: int = FRAME_HEIGHT,
    background=BACKGROUND_GREY,
) -> np.ndarray:
    """A uint8 RGB frame with each ``(image, x, y)`` pasted centred at ``(x * width, y * height)``.

    ``x`` and ``y`` are fractions of the frame, as in AVSpeech. Parts falling outside are clipped.
    ``background`` is a grey level, an (r, g, b) colour, or a (height, width, 3) image.
    """
    frame = _background(background, width, height)
    for image, x, y in faces:
        face_height, face_width = image.shape[:2]
        top = int(round(y * height - face_height / 2))
        left = int(round(x * width - face_width / 2))
        frame_top, frame_left = max(top, 0), max(left, 0)
        frame_bottom, frame_right = min(top + face_height, height), min(left + face_width, width)
        if frame_bottom <= frame_top or frame_right <= frame_left:
            continue  # entirely outside the frame
        frame[frame_top:frame_bottom, frame_left:frame_right] = image[
            frame_top - top : frame_bottom - top, frame_left - left : frame_right - left
        ]
    return frame


def no_face_frame(width: int = FRAME_WIDTH, height: int = FRAME_HEIGHT) -> np.ndarray:
    """A frame with texture but no face: a colour gradient with a few LFW non-face patches on it."""
    ramp_x = np.linspace(0, 255, width)[None, :]
    ramp_y = np.linspace(0, 255, height)[:, None]
    gradient = np.stack(np.broadcast_arrays(ramp_x, ramp_y, (ramp_x + ramp_y) / 2), axis=-1).astype(np.uint8)
    patches = [(_grey_to_rgb(lfw_non_faces()[i], 120), x, 0.5) for i, x in ((0, 0.2), (2, 0.5), (4, 0.8))]
    return compose_frame(patches, width, height, background=gradient)


@functools.cache
def _detectable_faces(size: int) -> tuple[int, ...]:
    from speech2face.faces import detect_faces

    return tuple(
        index
        for index in range(NUM_LFW_FACES)
        if len(detect_faces(compose_frame([(face_rgb(index, size), 0.5, 0.5)]))) == 1
    )


def detectable_faces(size: int = 150) -> list[int]:
    """Indices of LFW faces that dlib HOG finds exactly once, alone at the centre of a 640x360 frame.

    Costs about 10 s (100 HOG detections), so the answer is cached for the process.
    """
    return list(_detectable_faces(size))
