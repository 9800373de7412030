"""The torch STFT and compressed spectrogram against TensorFlow's tf.signal.stft, the reference
the Speech2Face input was defined with (598 x 257 x 2, periodic Hann, no centring)."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
import tensorflow as tf
import torch

from demo_corpus.voices import speak
from speech2face.audio import (
    NUM_BINS,
    NUM_FRAMES,
    NUM_SAMPLES,
    compress,
    int16_to_waveform,
    load_audio,
    model_input,
    num_frames,
    samples_for_frames,
    spectrogram,
    stft,
    waveform_to_int16,
)
from tests.support.tf_reference import numpy_compress, tf_stft

try:  # Small footprint on shared 2-core machines; fails harmlessly if TF already ran ops.
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
except RuntimeError:
    pass


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> np.ndarray:
    path = tmp_path_factory.mktemp("speech") / "speech.wav"
    speak("Speech to face: what does a voice say about a face?", path, variant="Alicia", sample_rate=16000)
    return load_audio(path)


@pytest.fixture(scope="module")
def noise() -> np.ndarray:
    return np.random.default_rng(0).uniform(-1.0, 1.0, size=(2, NUM_SAMPLES)).astype(np.float32)


@pytest.fixture(params=["noise", "speech"])
def wave(request) -> np.ndarray:
    return request.getfixturevalue(request.param)


def test_complex_stft_matches_tensorflow(wave):
    reference = tf_stft(wave)
    ours = stft(torch.from_numpy(wave))
    assert ours.dtype == torch.complex64
    assert ours.shape == reference.shape == (*wave.shape[:-1], NUM_FRAMES, NUM_BINS)
    error = np.abs(ours.numpy() - reference).max()
    assert error <= 1e-5 * np.abs(reference).max()


def test_compressed_spectrogram_matches_compressed_tensorflow_stft(wave):
    reference_stft = tf_stft(wave)
    reference = np.stack([numpy_compress(reference_stft.real), numpy_compress(reference_stft.imag)], axis=-1)
    ours = spectrogram(torch.from_numpy(wave))
    assert ours.dtype == torch.float32
    assert ours.shape == (*wave.shape[:-1], NUM_FRAMES, NUM_BINS, 2)
    difference = np.abs(ours.numpy() - reference)
    # |x|**0.3 magnifies float32 round-off near zero, hence a quantile bound plus a loose maximum.
    assert np.mean(difference <= 1e-4) >= 0.999
    assert difference.max() < 1e-2
    # The [real, imag] order and compression are not a no-op: the raw STFT differs a lot.
    assert np.abs(reference - np.stack([reference_stft.real, reference_stft.imag], -1)).max() > 1.0


@pytest.mark.parametrize(
    ("length", "frames"), [(96000, 598), (400, 1), (559, 1), (560, 2), (48000, 298), (16000, 98), (1000, 4)]
)
def test_frame_counts_match_tensorflow(length, frames):
    wave = np.random.default_rng(length).uniform(-1.0, 1.0, size=length).astype(np.float32)
    assert num_frames(length) == frames
    assert tf_stft(wave).shape == (frames, NUM_BINS)
    assert spectrogram(wave).shape == (frames, NUM_BINS, 2)


def test_too_short_input_raises_clear_error():
    with pytest.raises(ValueError, match="at least 400 samples"):
        spectrogram(np.zeros(399, dtype=np.float32))
    with pytest.raises(ValueError, match="at least 400 samples"):
        num_frames(10)


def test_numpy_input_any_float_dtype_and_leading_batch_dims():
    waves = np.random.default_rng(1).uniform(-1.0, 1.0, size=(3, 2, 16000))  # float64
    result = spectrogram(waves)
    assert isinstance(result, torch.Tensor)
    assert result.device.type == "cpu"
    assert result.dtype == torch.float32
    assert result.shape == (3, 2, 98, NUM_BINS, 2)
    # Each batch element is computed independently, as if passed alone.
    single = spectrogram(waves[2, 1].astype(np.float32))
    torch.testing.assert_close(result[2, 1], single, rtol=0, atol=1e-6)


def test_integer_samples_are_rejected_with_a_hint():
    with pytest.raises(TypeError, match="int16_to_waveform"):
        spectrogram(np.zeros(16000, dtype=np.int16))


def test_compress_is_signed_power_law():
    x = torch.tensor([-8.0, -1.0, 0.0, 1e-6, 2.0**10])
    expected = torch.tensor([-(8.0**0.3), -1.0, 0.0, 1e-6**0.3, 8.0])
    torch.testing.assert_close(compress(x), expected)


def test_model_input_from_int16_equals_the_spectrogram_and_its_crop_the_cropped_spectrogram(noise):
    samples = torch.from_numpy(waveform_to_int16(noise))
    full = model_input(samples)
    torch.testing.assert_close(full, spectrogram(int16_to_waveform(samples.numpy())), rtol=0, atol=0)
    crop = model_input(samples, crop_frames=300, generator=torch.Generator().manual_seed(3))
    offset = int(torch.randint(0, NUM_FRAMES - 300 + 1, (1,), generator=torch.Generator().manual_seed(3)))
    assert crop.shape == (2, 300, NUM_BINS, 2) and offset > 0
    torch.testing.assert_close(crop, full[:, offset : offset + 300], rtol=1e-5, atol=1e-5)
    assert samples_for_frames(NUM_FRAMES) <= NUM_SAMPLES < samples_for_frames(NUM_FRAMES + 1)
