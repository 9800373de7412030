"""Find the speaker's face in video frames and crop it to 224x224 for a face embedder.

AVSpeech gives the speaker's face centre as ``(x, y)``, fractions of the frame width and height.
We detect faces with dlib (through face_recognition), keep the one nearest ``(x, y)``, and crop it
square with a margin.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from PIL import Image

CROP_SIZE = 224
CROP_MARGIN = 0.2  # fraction of the face box added on each side
MAX_DISTANCE = 0.15  # fractions of the frame, between (x, y) and the chosen face centre
DISTANCE_TIE = 0.02  # across frames, faces this much farther than the nearest still count as tied
DETECTOR_MODELS = ("hog", "cnn")


class FaceError(ValueError):
    """The frames hold no acceptable face for the given (x, y)."""


@dataclass(frozen=True)
class Box:
    """A face box in pixels, in face_recognition's (top, right, bottom, left) order."""

    top: int
    right: int
    bottom: int
    left: int

    @property
    def width(self) -> int:
        return self.right - self.left

    @property
    def height(self) -> int:
        return self.bottom - self.top

    @property
    def area(self) -> int:
        return self.width * self.height

    @property
    def center(self) -> tuple[float, float]:
        """(x, y) in pixels."""
        return ((self.left + self.right) / 2, (self.top + self.bottom) / 2)

    def as_list(self) -> list[int]:
        return [self.top, self.right, self.bottom, self.left]


@dataclass
class FaceCrop:
    image: np.ndarray  # uint8 (224, 224, 3) RGB
    box: Box  # in the frame it came from
    frame_time: float  # seconds, as given with the frame
    distance: float  # from (x, y), in fractions of the frame


@functools.cache
def face_recognition_module():
    """face_recognition, imported once; hides the pkg_resources deprecation warning its models package raises."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
        import face_recognition
    return face_recognition


def check_frame(frame: np.ndarray) -> np.ndarray:
    """Return ``frame`` as a C-contiguous uint8 (H, W, 3) RGB array, or raise ValueError saying what is wrong."""
    if not isinstance(frame, np.ndarray):
        raise ValueError(f"frame must be a numpy array, got {type(frame).__name__}")
    if frame.dtype != np.uint8:
        raise ValueError(f"frame must be uint8 RGB (0-255), got dtype {frame.dtype}; convert with .astype(np.uint8)")
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.shape[0] == 0 or frame.shape[1] == 0:
        raise ValueError(f"frame must have shape (height, width, 3) RGB, got {frame.shape}")
    return np.ascontiguousarray(frame)


def detect_faces(frame: np.ndarray, model: str = "hog", upsample: int = 1) -> list[Box]:
    """All faces dlib finds in a uint8 RGB frame. ``model`` is "hog" (fast) or "cnn" (better, ~6 s on CPU)."""
    frame = check_frame(frame)
    if model not in DETECTOR_MODELS:
        raise ValueError(f"face detector model must be one of {DETECTOR_MODELS}, got {model!r}")
    if upsample < 0:
        raise ValueError(f"upsample must be >= 0, got {upsample}")
    locations = face_recognition_module().face_locations(frame, number_of_times_to_upsample=upsample, model=model)
    return [Box(*map(int, location)) for location in locations]


def _check_point(x: float, y: float) -> None:
    if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
        raise ValueError(f"(x, y) must be fractions of the frame in [0, 1], got ({x}, {y})")


def face_distance(box: Box, frame_shape: tuple[int, ...], x: float, y: float) -> float:
    """Distance from the box centre to (x, y), with dx in fractions of the width and dy of the height."""
    height, width = frame_shape[:2]
    center_x, center_y = box.center
    return math.hypot(center_x / width - x, center_y / height - y)


def choose_face(
    boxes: Iterable[Box], frame_shape: tuple[int, ...], x: float, y: float, max_distance: float = MAX_DISTANCE
) -> tuple[Box, float]:
    """The box whose centre is nearest (x, y), and its distance; FaceError if none is within ``max_distance``."""
    _check_point(x, y)
    scored = [(face_distance(box, frame_shape, x, y), box) for box in boxes]
    if not scored:
        raise FaceError("no face detected in the frame")
    distance, box = min(scored, key=lambda pair: pair[0])
    if distance > max_distance:
        raise FaceError(
            f"nearest face is d={distance:.3f} from (x, y)=({x:.3f}, {y:.3f}), more than max_distance={max_distance}; "
            "it is probably someone else (raise max_distance if the (x, y) are known to be rough)"
        )
    return box, distance


def crop_face(frame: np.ndarray, box: Box, margin: float = CROP_MARGIN, size: int = CROP_SIZE) -> np.ndarray:
    """A uint8 (size, size, 3) square crop around ``box``, grown by ``margin`` of its size on each side.

    The square keeps the face's aspect; where it passes the frame border it is padded with black.
    """
    frame = check_frame(frame)
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    side = max(box.width, box.height) * (1 + 2 * margin)
    if side <= 0:
        raise ValueError(f"face box {box} is empty")
    center_x, center_y = box.center
    left, top = round(center_x - side / 2), round(center_y - side / 2)
    square = (left, top, left + round(side), top + round(side))
    # PIL fills the parts of a crop that lie outside the image with zeros.
    crop = Image.fromarray(frame).crop(square)
    return np.asarray(crop.resize((size, size), Image.Resampling.BILINEAR))


def face_box_in_crop(margin: float = CROP_MARGIN, size: int = CROP_SIZE) -> Box:
    """Where ``crop_face`` puts the detected face box inside its crop (the central square)."""
    inset = round(size * margin / (1 + 2 * margin))
    return Box(top=inset, right=size - inset, bottom=size - inset, left=inset)


def best_face(
    frames: Iterable[tuple[float, np.ndarray]],
    x: float,
    y: float,
    max_distance: float = MAX_DISTANCE,
    model: str = "hog",
    margin: float = CROP_MARGIN,
    size: int = CROP_SIZE,
    upsample: int = 1,
) -> FaceCrop:
    """The speaker's face over several ``(time, frame)`` samples, cropped.

    In each frame we keep the face nearest (x, y). Across frames the nearest wins, except that faces
    within ``DISTANCE_TIE`` of the nearest count as tied and then the largest wins: a detection
    a little off-centre but bigger is a sharper view of the same speaker.
    """
    _check_point(x, y)
    candidates = []  # (distance, box, time, frame)
    frames_tried = 0
    for time, frame in frames:
        frames_tried += 1
        try:
            box, distance = choose_face(detect_faces(frame, model, upsample), frame.shape, x, y, max_distance)
        except FaceError:
            continue
        candidates.append((distance, box, time, frame))
    if not candidates:
        raise FaceError(
            f"no face within max_distance={max_distance} of (x, y)=({x:.3f}, {y:.3f}) "
            f"in any of {frames_tried} frame(s) (detector {model!r}; try model='cnn' or more frames)"
        )
    nearest = min(distance for distance, *_ in candidates)
    tied = [c for c in candidates if c[0] <= nearest + DISTANCE_TIE]
    distance, box, time, frame = max(tied, key=lambda c: (c[1].area, -c[0]))
    return FaceCrop(image=crop_face(frame, box, margin, size), box=box, frame_time=float(time), distance=distance)
