"""The torch VGG-Face port against the real keras-vggface vgg16 (tf_keras), with weights written by Keras itself."""

import hashlib
from types import SimpleNamespace

import h5py
import matplotlib.cbook
import numpy as np
import pytest
import skimage.data
import tf_keras
import torch
from PIL import Image

from speech2face.embedders import make_embedder
from speech2face.embedders.vggface import (
    NUM_PARAMETERS,
    VGGFace,
    VGGFaceEmbedder,
    load_keras_vggface_h5,
    preprocess,
    read_keras_vggface_h5,
)
from tests.support.keras_vggface_compat import build_reference_vggface, preprocess_input

PARITY_TOLERANCE = 1e-3


def relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    return float(np.linalg.norm(actual - expected) / np.linalg.norm(expected))


def face_photos() -> np.ndarray:
    """Three real face photos as uint8 (3, 224, 224, 3) RGB: Grace Hopper, the astronaut, an LFW face."""
    with Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg")) as hopper:
        hopper = hopper.convert("RGB").crop((0, 0, 512, 512))
    astronaut = Image.fromarray(skimage.data.astronaut()).crop((130, 0, 330, 200))
    lfw = Image.fromarray((skimage.data.lfw_subset()[0] * 255).astype(np.uint8)).convert("RGB")
    return np.stack([np.asarray(im.resize((224, 224), Image.BILINEAR)) for im in (hopper, astronaut, lfw)])


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """keras-vggface vgg16 with seeded random weights (random biases too, so bias loading is tested),
    saved with ``save_weights('.h5')``, and its fc7 / fc8 outputs on real face photos."""
    model = build_reference_vggface(seed=0)
    assert model.get_layer("fc8").activation.__name__ == "linear"  # fc8 gives logits; softmax is its own layer
    assert model.get_layer("fc8/softmax").activation.__name__ == "softmax"
    rng = np.random.default_rng(1)
    for layer in model.layers:
        if layer.weights:
            kernel, bias = layer.get_weights()
            layer.set_weights([kernel, rng.normal(0.0, 0.05, bias.shape).astype(np.float32)])
    path = tmp_path_factory.mktemp("vggface") / "keras_vggface_vgg16.h5"
    model.save_weights(str(path))
    faces = face_photos()
    fc7_and_fc8 = tf_keras.Model(model.input, [model.get_layer("fc7").output, model.get_layer("fc8").output])
    fc7, fc8 = fc7_and_fc8.predict(preprocess_input(faces.astype(np.float32)), verbose=0)
    keras_params = model.count_params()
    del model, fc7_and_fc8
    tf_keras.backend.clear_session()
    return SimpleNamespace(path=path, faces=faces, fc7=fc7, fc8=fc8, keras_params=keras_params)


@pytest.fixture(scope="module")
def embedder(reference):
    return VGGFaceEmbedder(weights=reference.path, device="cpu", batch_size=2)  # 3 faces: two batches


def test_parameter_count_matches_keras(embedder, reference):
    assert reference.keras_params == NUM_PARAMETERS == 145_002_878
    assert sum(p.numel() for p in embedder.model.parameters()) == NUM_PARAMETERS


def test_preprocess_matches_keras_vggface(reference):
    ours = preprocess(reference.faces).permute(0, 2, 3, 1).numpy()
    np.testing.assert_array_equal(ours, preprocess_input(reference.faces.astype(np.float32)))


def test_preprocess_rejects_float_images(reference):
    with pytest.raises(ValueError, match="uint8"):
        preprocess(reference.faces.astype(np.float32) / 255)


def test_fc7_and_fc8_match_keras(embedder, reference):
    fc7 = embedder.embed(reference.faces)
    assert fc7.dtype == np.float32 and fc7.shape == (3, 4096)
    assert (fc7 < 0).any()  # before the ReLU
    assert relative_error(fc7, reference.fc7) <= PARITY_TOLERANCE
    with torch.inference_mode():
        fc8 = embedder.classifier_logits(torch.from_numpy(fc7)).numpy()
    assert fc8.shape == (3, 2622)
    assert relative_error(fc8, reference.fc8) <= PARITY_TOLERANCE


def test_fc6_without_the_hwc_to_chw_reorder_breaks_parity(embedder, reference):
    """A loader that copies fc6's kernel transposed, in Keras' (H, W, C) input order, gets fc7 badly wrong."""
    fc6 = embedder.model.fc6.weight
    correct = fc6.detach().clone()
    naive = correct.reshape(4096, 512, 7, 7).permute(0, 2, 3, 1).reshape(4096, 25088)
    try:
        with torch.no_grad():
            fc6.copy_(naive)
        assert relative_error(embedder.embed(reference.faces), reference.fc7) > 0.1
    finally:
        with torch.no_grad():
            fc6.copy_(correct)


def test_weights_id_is_sha256_of_the_file(embedder, reference):
    with open(reference.path, "rb") as file:
        assert embedder.weights_id == hashlib.file_digest(file, "sha256").hexdigest()


def test_classifier_logits_are_differentiable(embedder):
    feature = torch.randn(2, 4096, requires_grad=True)
    embedder.classifier_logits(feature).logsumexp(dim=1).sum().backward()
    assert feature.grad is not None and feature.grad.abs().sum() > 0


def test_refuses_to_run_without_weights():
    with pytest.raises(ValueError, match="allow_random"):
        VGGFaceEmbedder()
    with pytest.raises(ValueError, match="allow_random"):
        make_embedder("vggface")


def test_random_stand_in_is_the_same_everywhere(reference):
    direct = VGGFaceEmbedder(allow_random=True, device="cpu")
    features = direct.embed(reference.faces)
    del direct
    via_factory = make_embedder("vggface", allow_random=True, device="cpu")
    assert via_factory.name == "vggface" and via_factory.dim == 4096 and via_factory.has_classifier
    assert via_factory.weights_id == "random"
    np.testing.assert_array_equal(via_factory.embed(reference.faces), features)
    assert np.isfinite(features).all() and not np.allclose(features[0], features[1])


def _write_weights_h5(path, layers: dict[str, tuple[tuple[int, ...], tuple[int, ...]]]) -> None:
    """A Keras-layout weights HDF5 holding ``layers``: name -> (kernel shape, bias shape), zeros."""
    with h5py.File(path, "w") as h5:
        h5.attrs["layer_names"] = np.array(list(layers), dtype="S")
        for name, shapes in layers.items():
            group = h5.create_group(name)
            weight_names = [f"{name}/kernel:0", f"{name}/bias:0"]
            group.attrs["weight_names"] = np.array(weight_names, dtype="S")
            for weight_name, shape in zip(weight_names, shapes, strict=True):
                group.create_dataset(weight_name, data=np.zeros(shape, np.float32))


def test_wrong_shape_names_layer_and_shapes(tmp_path):
    path = tmp_path / "narrow.h5"
    _write_weights_h5(path, {"conv1_1": ((3, 3, 3, 32), (32,))})
    with pytest.raises(ValueError, match=r"'conv1_1'.*\(3, 3, 3, 32\), expected \(3, 3, 3, 64\)"):
        read_keras_vggface_h5(path)


def test_missing_layer_is_named(tmp_path):
    path = tmp_path / "partial.h5"
    _write_weights_h5(path, {"conv1_1": ((3, 3, 3, 64), (64,))})
    with pytest.raises(ValueError, match="no layer 'conv1_2'"):
        read_keras_vggface_h5(path)


def test_unusable_paths_say_what_is_wrong(tmp_path):
    with torch.device("meta"):  # the loader fails before it touches the weights
        model = VGGFace()
    with pytest.raises(FileNotFoundError, match="rcmalli_vggface_tf_vgg16.h5"):
        load_keras_vggface_h5(model, tmp_path / "absent.h5")
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(ValueError, match="not an HDF5 file"):
        load_keras_vggface_h5(model, tmp_path / "text.h5")
    with h5py.File(tmp_path / "bare.h5", "w") as h5:
        h5.create_dataset("data", data=np.zeros(3))
    with pytest.raises(ValueError, match="not a Keras weights HDF5 file"):
        load_keras_vggface_h5(model, tmp_path / "bare.h5")
    with pytest.raises(ValueError, match="local path"):
        load_keras_vggface_h5(model, "s3://bucket/rcmalli_vggface_tf_vgg16.h5")
