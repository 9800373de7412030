"""The TensorFlow reference the spectrogram must match: tf.signal.stft with the paper's framing."""

import numpy as np
import tensorflow as tf

from speech2face.audio import FFT_LENGTH, FRAME_LENGTH, FRAME_STEP


def tf_stft(wave: np.ndarray) -> np.ndarray:
    frames = tf.signal.stft(wave, frame_length=FRAME_LENGTH, frame_step=FRAME_STEP, fft_length=FFT_LENGTH)
    return frames.numpy()


def numpy_compress(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.abs(x) ** 0.3
