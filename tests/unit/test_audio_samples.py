"""Waveform samples as stored: int16 and back (speech2face.audio)."""

import numpy as np

from speech2face.audio import int16_to_waveform, waveform_to_int16


def test_int16_round_trip_and_clipping():
    wave = np.array([-1.5, -1.0, -0.25, 0.0, 1e-5, 0.5, 1.0, 2.0], dtype=np.float32)
    stored = waveform_to_int16(wave)
    assert stored.dtype == np.int16
    assert stored.tolist() == [-32767, -32767, -8192, 0, 0, 16384, 32767, 32767]
    restored = int16_to_waveform(stored)
    assert restored.dtype == np.float32
    np.testing.assert_allclose(restored, np.clip(wave, -1, 1), atol=0.5 / 32767)
