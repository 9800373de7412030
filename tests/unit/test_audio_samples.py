"""Waveform samples as stored: int16 and back (speech2face.audio)."""

import numpy as np

from speech2face.audio import NUM_SAMPLES, SAMPLE_RATE, first_seconds_looped, int16_to_waveform, waveform_to_int16


def test_int16_round_trip_and_clipping():
    wave = np.array([-1.5, -1.0, -0.25, 0.0, 1e-5, 0.5, 1.0, 2.0], dtype=np.float32)
    stored = waveform_to_int16(wave)
    assert stored.dtype == np.int16
    assert stored.tolist() == [-32767, -32767, -8192, 0, 0, 16384, 32767, 32767]
    restored = int16_to_waveform(stored)
    assert restored.dtype == np.float32
    np.testing.assert_allclose(restored, np.clip(wave, -1, 1), atol=0.5 / 32767)


def test_first_seconds_looped_keeps_the_start_and_repeats_it_to_six_seconds():
    waves = np.stack([np.arange(NUM_SAMPLES), -np.arange(NUM_SAMPLES)]).astype(np.int16)
    looped = first_seconds_looped(waves, 2.5)
    kept = int(2.5 * SAMPLE_RATE)
    assert looped.shape == waves.shape
    np.testing.assert_array_equal(looped[:, :kept], waves[:, :kept])
    np.testing.assert_array_equal(looped[:, kept : 2 * kept], waves[:, :kept])  # looped, as preprocessing loops
    np.testing.assert_array_equal(first_seconds_looped(waves, 6.0), waves)
