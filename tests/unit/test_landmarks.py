"""dlib's 68 landmarks on real LFW face crops, their mirror images, and the mean shape."""

import numpy as np
import pytest

from demo_corpus.faces import detectable_faces, face_rgb
from speech2face.faces import crop_face, detect_faces
from speech2face.landmarks import MIRROR_ORDER, check_landmarks, crop_landmarks, mean_shape, mirror


@pytest.fixture(scope="module")
def crops() -> np.ndarray:
    """Eight LFW faces as the pipeline crops them (HOG box, crop_face)."""
    images = []
    for index in detectable_faces()[:8]:
        image = face_rgb(index)
        images.append(crop_face(image, detect_faces(image)[0]))
    return np.stack(images)


def test_landmarks_sit_where_faces_have_them(crops):
    points = crop_landmarks(crops)
    assert points.shape == (8, 68, 2) and points.dtype == np.float32
    eyes_y, nose_y, mouth_y = points[:, 36:48, 1].mean(1), points[:, 30, 1], points[:, 48:68, 1].mean(1)
    assert (eyes_y < nose_y).all() and (nose_y < mouth_y).all()
    assert (points[:, 36:42, 0].mean(1) < points[:, 42:48, 0].mean(1)).all()  # image-left eye is 36-41
    assert (np.abs(points[:, 30, 0] - 111.5) < 30).all()  # the nose tip near the crop's centre line


def test_landmarks_on_a_photograph():
    """scikit-image's astronaut (Eileen Collins, 512x512 colour): a real photo, not an LFW crop."""
    from skimage.data import astronaut

    image = astronaut()
    box = min(detect_faces(image), key=lambda found: found.top)  # her face; HOG also fires lower in the picture
    crop = crop_face(image, box)
    (points,) = crop_landmarks(crop[None])
    assert points[36:42, 0].mean() < points[30, 0] < points[42:48, 0].mean()  # nose between the eyes
    assert points[36:48, 1].mean() < points[30, 1] < points[48:68, 1].mean()  # and between eyes and mouth
    assert (points > 0).all() and (points < 224).all()


def test_the_mirror_renumbers_points_as_dlib_sees_the_flipped_face(crops):
    points = crop_landmarks(crops)
    flipped_images, flipped_points = mirror(crops, points)
    error = np.linalg.norm(crop_landmarks(flipped_images) - flipped_points, axis=-1)
    assert error.mean() < 3.0, error.mean()  # measured: 1.2 px
    naive = points.copy()
    naive[..., 0] = 223 - naive[..., 0]  # flipped but not renumbered: far off
    assert np.linalg.norm(crop_landmarks(flipped_images) - naive, axis=-1).mean() > 20
    assert sorted(MIRROR_ORDER) == list(range(68)) and (MIRROR_ORDER[MIRROR_ORDER] == np.arange(68)).all()


def test_the_mean_shape_is_symmetric(crops):
    shape = mean_shape(crop_landmarks(crops))
    mirrored = shape[MIRROR_ORDER].copy()
    mirrored[:, 0] = 223 - mirrored[:, 0]
    np.testing.assert_allclose(shape, mirrored, atol=1e-4)


def test_bad_landmarks_are_refused():
    with pytest.raises(ValueError, match=r"\(N, 68, 2\)"):
        check_landmarks(np.zeros((2, 5, 2)))
    with pytest.raises(ValueError, match="NaN"):
        check_landmarks(np.full((1, 68, 2), np.nan))
    with pytest.raises(ValueError, match="at least one"):
        mean_shape(np.zeros((0, 68, 2)))
