"""The dlib 128-D face descriptor behind the FaceEmbedder interface, on real LFW faces."""

import hashlib

import numpy as np
import pytest

from demo_corpus.faces import compose_frame, detectable_faces, face_rgb
from speech2face.embedders import FaceEmbedder, check_face_batch, make_embedder
from speech2face.embedders.dlib import DlibFace
from speech2face.faces import crop_face, detect_faces, face_recognition_module

NUM_PEOPLE = 5


def crop_alone(face, x, y):
    frame = compose_frame([(face, x, y)])
    (box,) = detect_faces(frame)
    return crop_face(frame, box)


@pytest.fixture(scope="module")
def embedder():
    return make_embedder("dlib")


@pytest.fixture(scope="module")
def two_views():
    """Two crops of each of NUM_PEOPLE faces: as shot, and mirrored, darker, larger, elsewhere in the frame."""
    first, second = [], []
    for index in detectable_faces()[:NUM_PEOPLE]:
        first.append(crop_alone(face_rgb(index, 150), 0.3, 0.45))
        other_view = (face_rgb(index, 190)[:, ::-1] * 0.8).astype(np.uint8)
        second.append(crop_alone(other_view, 0.7, 0.55))
    return np.stack(first), np.stack(second)


def test_is_a_face_embedder_with_the_shipped_weights(embedder):
    assert isinstance(embedder, DlibFace) and isinstance(embedder, FaceEmbedder)
    assert (embedder.name, embedder.dim, embedder.has_classifier) == ("dlib", 128, False)
    with open(face_recognition_module().api.face_recognition_model, "rb") as file:  # the file dlib loaded
        assert embedder.weights_id == hashlib.sha256(file.read()).hexdigest()


def test_embed_shape_dtype_and_determinism(embedder, two_views):
    crops = two_views[0]
    features = embedder.embed(crops)
    assert features.shape == (NUM_PEOPLE, 128) and features.dtype == np.float32
    assert np.isfinite(features).all()
    np.testing.assert_array_equal(embedder.embed(crops[:2]), features[:2])
    assert embedder.embed(crops[:0]).shape == (0, 128)


def test_two_views_of_a_person_are_closer_than_two_people(embedder, two_views):
    first, second = (embedder.embed(view) for view in two_views)
    distances = np.linalg.norm(first[:, None] - second[None], axis=-1)
    same = np.diag(distances)
    different = distances[~np.eye(NUM_PEOPLE, dtype=bool)]
    assert same.max() < 0.45 < different.min(), distances  # dlib calls < 0.6 "same person"
    assert (distances.argmin(axis=1) == np.arange(NUM_PEOPLE)).all()


def test_face_box_in_crop_agrees_with_dlib_detecting_in_the_crop(embedder, two_views):
    """The inset box we hand dlib frames the face as dlib's own detector would."""
    face_recognition = face_recognition_module()
    for crop in two_views[1]:
        detected = face_recognition.face_encodings(crop, face_recognition.face_locations(crop), model="small")
        assert len(detected) == 1
        assert np.linalg.norm(embedder.embed(crop[None])[0] - detected[0]) < 0.1


@pytest.mark.parametrize(
    ("images", "message"),
    [
        (np.zeros((224, 224, 3), np.uint8), r"images\[None\]"),
        (np.zeros((2, 112, 112, 3), np.uint8), r"\(N, 224, 224, 3\)"),
        (np.zeros((2, 224, 224), np.uint8), r"\(N, 224, 224, 3\)"),
        (np.zeros((2, 224, 224, 3), np.float32), "uint8"),
        ([[0]], "numpy array"),
    ],
)
def test_bad_batches_are_rejected_clearly(embedder, images, message):
    with pytest.raises(ValueError, match=message):
        embedder.embed(images)
    with pytest.raises(ValueError, match=message):
        check_face_batch(images)


def test_make_embedder_rejects_unknown_names_and_dlib_weights():
    with pytest.raises(ValueError, match="unknown face embedder 'nope'; valid names: dlib, vggface"):
        make_embedder("nope")
    with pytest.raises(ValueError, match="only for vggface"):
        make_embedder("dlib", weights="some.h5")
