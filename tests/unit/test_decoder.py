"""The face decoder on real LFW faces: its shape, its render step, its losses, and that it learns."""

import numpy as np
import pytest
import torch

from demo_corpus.faces import detectable_faces, face_rgb
from speech2face.decoder import (
    DECODER_PRESETS,
    FIRST_LAYER_WIDTH,
    DecoderLossWeights,
    FaceDecoder,
    crops_to_tensor,
    decoder_losses,
    to_crops,
    unit_landmarks,
)
from speech2face.embedders.dlib import DlibFace
from speech2face.faces import crop_face, detect_faces
from speech2face.landmarks import crop_landmarks, mean_shape


@pytest.fixture(scope="module")
def faces():
    """Eight LFW faces cropped as the pipeline crops them, with dlib landmarks and dlib features."""
    crops = []
    for index in detectable_faces()[:8]:
        image = face_rgb(index)
        crops.append(crop_face(image, detect_faces(image)[0]))
    crops = np.stack(crops)
    return crops, crop_landmarks(crops), DlibFace().embed(crops)


@pytest.mark.parametrize("in_dim", [128, 4096])
@pytest.mark.parametrize("preset", ["tiny", "paper"])
def test_every_output_has_its_shape_the_first_layer_is_f_dec_and_length_is_ignored(preset, in_dim):
    torch.manual_seed(0)
    decoder = FaceDecoder(in_dim, preset)
    side = DECODER_PRESETS[preset].resolution
    features = torch.randn(2, in_dim)
    decoded = decoder(features)
    assert decoded.first.shape == (2, FIRST_LAYER_WIDTH) and (decoded.first >= 0).all()  # after its ReLU
    assert decoded.landmarks.shape == (2, 68, 2)
    assert decoded.texture.shape == decoded.image.shape == (2, 3, side, side)
    assert 0 <= decoded.image.min() and decoded.image.max() <= 1
    linear = decoder.first[0]
    assert isinstance(linear, torch.nn.Linear) and (linear.in_features, linear.out_features) == (in_dim, 1000)
    # a voice encoder's prediction points the right way at any length: the same face
    assert torch.allclose(decoder(features * 35).image, decoded.image, atol=1e-5)
    crops = to_crops(decoded.image)
    assert crops.shape == (2, 224, 224, 3) and crops.dtype == np.uint8  # what every embedder takes
    with pytest.raises(ValueError, match=f"\\(N, {in_dim}\\)"):
        decoder(torch.randn(2, in_dim + 1))


def test_the_input_is_centred_on_the_train_faces_mean_feature(faces):
    _, _, features = faces
    units = features / np.linalg.norm(features, axis=1, keepdims=True)
    centred = FaceDecoder(128, "tiny", mean_feature=units.mean(axis=0))
    plain = FaceDecoder(128, "tiny")
    plain.load_state_dict({**centred.state_dict(), "mean_feature": torch.zeros(128)})  # a decoder without centring
    x, mean = torch.from_numpy(features), torch.from_numpy(units.mean(axis=0))
    # what the centred decoder sees is the feature's direction from the train faces' mean
    assert torch.allclose(centred.first_layer(x), plain.first_layer(torch.from_numpy(units) - mean), atol=1e-5)
    assert not torch.allclose(centred.first_layer(x), plain.first_layer(x), atol=1e-2)
    with pytest.raises(ValueError, match="mean_feature must be \\(128,\\)"):
        FaceDecoder(128, "tiny", mean_feature=np.zeros(4096))


def test_rendering_on_the_mean_shape_keeps_the_texture(faces):
    crops, landmarks, _ = faces
    decoder = FaceDecoder(128, "tiny", mean_shape(landmarks))
    texture = crops_to_tensor(crops[:2], 64)
    mean = decoder.mean_shape.expand(2, -1, -1)
    torch.testing.assert_close(decoder.render(texture, mean), texture, atol=1e-4, rtol=0)
    # a face warped to the mean shape and back again is close to itself (both warps are smooth)
    own = unit_landmarks(landmarks[:2])
    there_and_back = decoder.render(decoder.to_mean_shape(texture, own), own)
    assert (there_and_back - texture).abs().mean() < 0.05


def test_the_feature_loss_needs_a_differentiable_embedder(faces):
    crops, landmarks, features = faces
    decoder = FaceDecoder(128, "tiny", mean_shape(landmarks))
    decoded = decoder(torch.from_numpy(features[:2]))
    targets, units = crops_to_tensor(crops[:2], 64), unit_landmarks(landmarks[:2])
    with pytest.raises(ValueError, match="differentiable embedder"):
        decoder_losses(decoder, decoded, targets, units, DecoderLossWeights(feature=1.0))
    projection = torch.nn.Linear(3, 128)
    parts = decoder_losses(decoder, decoded, targets, units, DecoderLossWeights(feature=1.0),
                           embed=lambda images: projection(images.mean((2, 3))),
                           features=torch.from_numpy(features[:2]))  # fmt: skip
    assert set(parts) == {"texture", "landmarks", "image", "feature", "total"}
    parts["total"].backward()
    assert decoder.first[0].weight.grad.abs().sum() > 0


def test_the_tiny_decoder_learns_faces_dlib_recognises(faces):
    """150 Adam steps on 8 faces: all three losses fall and dlib knows each decoded face as its input's."""
    crops, landmarks, features = faces
    torch.manual_seed(0)
    decoder = FaceDecoder(128, "tiny", mean_shape(landmarks))
    inputs, targets, units = torch.from_numpy(features), crops_to_tensor(crops, 64), unit_landmarks(landmarks)
    optimizer = torch.optim.Adam(decoder.parameters(), lr=1e-3)
    history = []
    for _ in range(150):
        parts = decoder_losses(decoder, decoder(inputs), targets, units)
        optimizer.zero_grad()
        parts["total"].backward()
        optimizer.step()
        history.append({name: value.item() for name, value in parts.items()})
    for name in ("texture", "landmarks", "image", "total"):  # measured: total 0.48 -> 0.07
        assert history[-1][name] < 0.35 * history[0][name], (name, history[0], history[-1])
    with torch.no_grad():
        decoded = to_crops(decoder(inputs).image)
    distances = np.linalg.norm(DlibFace().embed(decoded)[:, None] - features[None], axis=-1)
    assert (distances.argmin(axis=1) == np.arange(8)).mean() >= 0.5  # chance 1/8; measured 7/8


def test_the_baselines_embed_each_training_face_once_in_query_order():
    from trainer.decoder.evaluation import embed_rows

    class CountingJudge:  # a judge whose embedding of a crop is its first pixel, counting the crops it is given
        embedded = 0

        def embed(self, images):
            self.embedded += len(images)
            return images[:, 0, 0, :1].astype(np.float32)

    crops = np.arange(5, dtype=np.uint8)[:, None, None, None] * np.ones((5, 2, 2, 3), np.uint8)
    judge, known = CountingJudge(), {}
    first = embed_rows(judge, crops, np.array([3, 1, 3, 3]), known)
    assert first[:, 0].tolist() == [3, 1, 3, 3] and judge.embedded == 2
    second = embed_rows(judge, crops, np.array([1, 4]), known)  # the next source's nearest faces: 1 is known
    assert second[:, 0].tolist() == [1, 4] and judge.embedded == 3
