"""Face detection, choice by (x, y), cropping and best_face, with dlib HOG on real LFW faces."""

import numpy as np
import pytest

from demo_corpus.faces import compose_frame, detectable_faces, face_rgb, lfw_faces, no_face_frame
from speech2face.embedders.dlib import DlibFace
from speech2face.faces import (
    DISTANCE_TIE,
    Box,
    FaceError,
    best_face,
    choose_face,
    crop_face,
    detect_faces,
)

WIDTH, HEIGHT = 640, 360
CENTER_TOLERANCE_PX = 40  # HOG boxes sit on an 8-px grid and LFW crops are not exactly centred


@pytest.fixture(scope="module")
def faces():
    """Two LFW faces (different people) that HOG detects."""
    first, second = detectable_faces()[:2]
    return face_rgb(first), face_rgb(second)


def test_lfw_subset_has_100_faces_and_most_are_detectable():
    assert lfw_faces().shape == (100, 25, 25)
    assert len(detectable_faces()) >= 85  # 93 with dlib 20


def test_no_face_frame_has_no_face():
    frame = no_face_frame()
    assert frame.shape == (HEIGHT, WIDTH, 3) and frame.std() > 30  # textured, not blank
    assert detect_faces(frame) == []


@pytest.mark.parametrize(("x", "y"), [(0.25, 0.4), (0.7, 0.6)])
def test_detected_box_is_where_the_face_was_placed(faces, x, y):
    (box,) = detect_faces(compose_frame([(faces[0], x, y)]))
    assert abs(box.center[0] - x * WIDTH) < CENTER_TOLERANCE_PX
    assert abs(box.center[1] - y * HEIGHT) < CENTER_TOLERANCE_PX
    assert 70 < box.width < 180  # the pasted face is 150 px


def test_cnn_detector_finds_the_face():
    frame = compose_frame([(face_rgb(detectable_faces()[0], 120), 0.4, 0.5)], width=320, height=240)
    (box,) = detect_faces(frame, model="cnn", upsample=0)  # small frame, no upsampling: about 1 s on CPU
    assert abs(box.center[0] - 0.4 * 320) < CENTER_TOLERANCE_PX and abs(box.center[1] - 120) < CENTER_TOLERANCE_PX


@pytest.mark.parametrize("target_x", [0.25, 0.75])
def test_choose_face_picks_the_face_at_xy_not_the_distractor(faces, target_x):
    target, distractor = faces
    distractor_x = 1 - target_x
    frame = compose_frame([(target, target_x, 0.5), (distractor, distractor_x, 0.5)])
    boxes = detect_faces(frame)
    assert len(boxes) == 2
    for ordered in (boxes, boxes[::-1]):
        box, distance = choose_face(ordered, frame.shape, target_x, 0.5)
        assert abs(box.center[0] - target_x * WIDTH) < CENTER_TOLERANCE_PX
        assert distance < CENTER_TOLERANCE_PX / WIDTH * 1.5


def test_choose_face_rejects_no_face_and_far_face(faces):
    with pytest.raises(FaceError, match="no face"):
        choose_face(detect_faces(no_face_frame()), (HEIGHT, WIDTH, 3), 0.5, 0.5)
    frame = compose_frame([(faces[0], 0.2, 0.5)])
    boxes = detect_faces(frame)
    with pytest.raises(FaceError, match=r"nearest face is d=0\.\d+ from .* more than max_distance=0.15"):
        choose_face(boxes, frame.shape, 0.8, 0.5)
    _, distance = choose_face(boxes, frame.shape, 0.8, 0.5, max_distance=0.7)
    assert distance == pytest.approx(0.6, abs=0.07)


def test_distance_is_in_fractions_of_each_side():
    box = Box(top=170, right=330, bottom=190, left=310)  # centre (320, 180) of a 640x360 frame
    _, distance = choose_face([box], (360, 640, 3), 0.5 + 0.03, 0.5 - 0.04)
    assert distance == pytest.approx(0.05)


def test_crop_is_the_target_face(faces):
    target, distractor = faces
    frame = compose_frame([(target, 0.3, 0.5), (distractor, 0.7, 0.5)])
    box, _ = choose_face(detect_faces(frame), frame.shape, 0.3, 0.5)
    crop = crop_face(frame, box)
    assert crop.shape == (224, 224, 3) and crop.dtype == np.uint8

    def alone(face):
        single = compose_frame([(face, 0.5, 0.5)])
        return crop_face(single, detect_faces(single)[0])

    features = DlibFace().embed(np.stack([crop, alone(target), alone(distractor)]))
    to_target, to_distractor = np.linalg.norm(features[1:] - features[0], axis=1)
    assert to_target < 0.3 < to_distractor


def test_crop_pads_with_black_at_the_border_without_distortion():
    frame = np.random.default_rng(0).integers(1, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    box = Box(top=0, right=50, bottom=50, left=0)  # margin 0.2 -> square (-10, -10) to (60, 60)
    crop = crop_face(frame, box, margin=0.2, size=70)
    assert (crop[:10] == 0).all() and (crop[:, :10] == 0).all()
    np.testing.assert_array_equal(crop[10:, 10:], frame[:60, :60])


def test_crop_of_a_wide_box_is_square_around_its_centre():
    frame = np.random.default_rng(1).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    box = Box(top=150, right=300, bottom=170, left=200)  # 100 x 20, centre (250, 160)
    crop = crop_face(frame, box, margin=0.0, size=100)
    np.testing.assert_array_equal(crop, frame[110:210, 200:300])


def test_bad_frames_and_arguments_are_rejected():
    with pytest.raises(ValueError, match="uint8"):
        detect_faces(np.zeros((HEIGHT, WIDTH, 3), dtype=np.float32))
    with pytest.raises(ValueError, match=r"\(height, width, 3\)"):
        detect_faces(np.zeros((HEIGHT, WIDTH), dtype=np.uint8))
    with pytest.raises(ValueError, match="hog"):
        detect_faces(np.zeros((HEIGHT, WIDTH, 3), dtype=np.uint8), model="haar")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        choose_face([], (HEIGHT, WIDTH, 3), 320, 180)  # pixels instead of fractions


def frame_with(face_index, size, x):
    return compose_frame([(face_rgb(face_index, size), x, 0.5)])


def detected_center(frame):
    (box,) = detect_faces(frame)
    return box.center[0] / WIDTH, box.center[1] / HEIGHT


def test_best_face_prefers_the_nearest_face(faces):
    index = detectable_faces()[0]
    near_small = frame_with(index, 130, 0.5)
    far_large = frame_with(index, 190, 0.62)
    x, y = detected_center(near_small)
    frames = [(0.5, far_large), (1.5, no_face_frame()), (2.5, near_small)]
    chosen = best_face(frames, x, y, max_distance=0.3)
    assert chosen.frame_time == 2.5 and chosen.distance == 0
    assert chosen.image.shape == (224, 224, 3)
    np.testing.assert_array_equal(chosen.image, crop_face(near_small, chosen.box))


@pytest.mark.parametrize("large_first", [True, False])
def test_best_face_prefers_the_larger_face_when_nearly_as_near(large_first):
    index = detectable_faces()[0]
    small, large = frame_with(index, 120, 0.5), frame_with(index, 190, 0.5)
    small_center, large_center = np.array(detected_center(small)), np.array(detected_center(large))
    gap = np.linalg.norm(large_center - small_center)
    edge = DISTANCE_TIE / 2  # how much nearer the small face will be
    assert gap > edge  # HOG places the two boxes apart enough to build the case below
    # On the line between the centres, a point (gap - edge) / 2 from the small face is `edge` nearer to it.
    x, y = small_center + (gap - edge) / 2 * (large_center - small_center) / gap
    frames = [(1.0, large), (2.0, small)] if large_first else [(1.0, small), (2.0, large)]
    chosen = best_face(frames, x, y)
    assert chosen.frame_time == (1.0 if large_first else 2.0)
    assert chosen.box.width > 150
    assert chosen.distance == pytest.approx((gap + edge) / 2)


def test_best_face_says_how_many_frames_it_tried(faces):
    frames = [(0.0, no_face_frame()), (1.0, compose_frame([(faces[0], 0.1, 0.5)]))]
    with pytest.raises(FaceError, match="in any of 2 frame"):
        best_face(frames, 0.9, 0.5)
