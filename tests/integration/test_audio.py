"""Decoding and loading real media made at test time with ffmpeg, sox and espeak-ng."""

import subprocess
import wave as wavfile
from pathlib import Path

import numpy as np
import pytest

from demo_corpus.voices import SpeechSynthesisError, list_variants, speak
from speech2face.audio import (
    NUM_SAMPLES,
    SAMPLE_RATE,
    AudioError,
    decode_audio,
    load_audio,
)

SENTENCE = "The quick brown fox jumps over the lazy dog, and then it runs away."


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-y", "-loglevel", "error", *args], check=True)


def make_tone(path: Path, frequency: float, seconds: float, rate: int = 44100) -> Path:
    source = f"sine=frequency={frequency}:sample_rate={rate}:duration={seconds}"
    ffmpeg("-f", "lavfi", "-i", source, str(path))
    return path


def peak_frequency(wave: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(wave.size)))
    return float(np.argmax(spectrum) * SAMPLE_RATE / wave.size)


def median_f0(wave: np.ndarray) -> float:
    """Median autocorrelation pitch (60-400 Hz) over the loud 40 ms frames."""
    estimates = []
    for i in range(0, wave.size - 640, 320):
        frame = wave[i : i + 640] - wave[i : i + 640].mean()
        if np.abs(frame).max() < 0.05:
            continue
        autocorrelation = np.correlate(frame, frame, "full")[639:]
        shortest, longest = SAMPLE_RATE // 400, SAMPLE_RATE // 60
        estimates.append(SAMPLE_RATE / (shortest + np.argmax(autocorrelation[shortest:longest])))
    return float(np.median(estimates))


def aligned_correlation(wave: np.ndarray, reference: np.ndarray, max_lag: int = 800) -> tuple[int, float]:
    """(lag, Pearson correlation) of ``wave`` against ``reference`` at the best lag within +-max_lag."""
    n = min(wave.size, reference.size) - 2 * max_lag
    middle = reference[max_lag : max_lag + n]
    lag = int(np.argmax(np.correlate(wave[: n + 2 * max_lag], middle, "valid"))) - max_lag
    return lag, float(np.corrcoef(wave[max_lag + lag : max_lag + lag + n], middle)[0, 1])


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("media")
    speak(SENTENCE, folder / "speech_22050.wav", variant="Alicia")  # espeak-ng's native rate
    for rate in (8000, 16000, 48000):
        resampled = folder / f"speech_{rate}.wav"
        subprocess.run(["sox", folder / "speech_22050.wav", "-r", str(rate), resampled], check=True)
    return folder


@pytest.mark.parametrize("rate", [8000, 16000, 22050, 48000])
def test_speech_wav_at_any_rate_loads_as_the_same_16k_signal(media, rate):
    wave = load_audio(media / f"speech_{rate}.wav")
    assert wave.shape == (NUM_SAMPLES,)
    assert wave.dtype == np.float32
    assert np.abs(wave).max() <= 1.0
    lag, correlation = aligned_correlation(wave, decode_audio(media / "speech_16000.wav"))
    assert lag == 0
    assert correlation > (0.95 if rate == 8000 else 0.99)  # 8 kHz loses the 4-8 kHz band


@pytest.mark.parametrize("rate", [8000, 16000, 22050, 48000])
def test_tone_keeps_its_frequency_and_duration(tmp_path, rate):
    path = make_tone(tmp_path / f"tone_{rate}.wav", frequency=1000, seconds=2.5, rate=rate)
    decoded = decode_audio(path)
    assert abs(decoded.size - 40000) <= 16  # 2.5 s at 16 kHz, not looped; resamplers may differ by a ms
    assert peak_frequency(decoded) == pytest.approx(1000, abs=2)
    assert peak_frequency(load_audio(path)) == pytest.approx(1000, abs=2)


def test_mp4_with_aac_audio_loads_its_soundtrack(media, tmp_path):
    video = tmp_path / "talk.mp4"
    ffmpeg(
        "-f", "lavfi", "-i", "color=c=blue:s=64x64:r=10:d=5", "-i", str(media / "speech_22050.wav"),
        "-c:v", "libx264", "-c:a", "aac", "-shortest", str(video),
    )  # fmt: skip
    wave = load_audio(video)
    assert wave.shape == (NUM_SAMPLES,) and wave.dtype == np.float32
    lag, correlation = aligned_correlation(wave, decode_audio(media / "speech_16000.wav"))
    assert abs(lag) <= 80  # within 5 ms: AAC encoder delay is compensated by the container
    assert correlation > 0.95


def test_decode_stops_at_max_seconds(tmp_path):
    path = make_tone(tmp_path / "long.wav", frequency=440, seconds=9.0, rate=SAMPLE_RATE)
    assert decode_audio(path).size == NUM_SAMPLES
    assert decode_audio(path, max_seconds=1.5).size == 24000


def test_start_offset_selects_later_audio(tmp_path):
    path = tmp_path / "a_then_b.wav"
    ffmpeg(
        "-f", "lavfi", "-i", "sine=frequency=500:sample_rate=16000:duration=3",
        "-f", "lavfi", "-i", "sine=frequency=1500:sample_rate=16000:duration=6",
        "-filter_complex", "[0:a][1:a]concat=n=2:v=0:a=1", str(path),
    )  # fmt: skip
    from_start = load_audio(path)
    assert peak_frequency(from_start[:47000]) == pytest.approx(500, abs=2)
    assert peak_frequency(from_start[49000:]) == pytest.approx(1500, abs=2)
    from_three = load_audio(path, start=3.0)
    assert peak_frequency(from_three[:1600]) == pytest.approx(1500, abs=10)  # B from the first 0.1 s
    assert peak_frequency(from_three) == pytest.approx(1500, abs=2)
    with pytest.raises(AudioError, match=r"0\.50 s of audio from start=8\.5 s, need >= 1 s"):
        load_audio(path, start=8.5)


def test_short_clip_is_tiled_exactly(media, tmp_path):
    two_seconds = tmp_path / "two_seconds.wav"
    ffmpeg("-i", str(media / "speech_16000.wav"), "-t", "2", str(two_seconds))
    original = decode_audio(two_seconds)
    assert original.size == 32000
    wave = load_audio(two_seconds)
    assert wave.shape == (NUM_SAMPLES,)
    np.testing.assert_array_equal(wave[:32000], original)
    np.testing.assert_array_equal(wave[32000:64000], wave[:32000])
    np.testing.assert_array_equal(wave[64000:], wave[:32000])


def make_corrupt(path: Path) -> Path:
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    return path


def make_video_without_audio(path: Path) -> Path:
    ffmpeg("-f", "lavfi", "-i", "color=c=red:s=64x64:r=10:d=2", "-c:v", "libx264", str(path))
    return path


def make_silence(path: Path) -> Path:
    ffmpeg("-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-t", "3", str(path))
    return path


@pytest.mark.parametrize(
    ("name", "make", "message"),
    [
        ("corrupt.mp4", make_corrupt, "could not decode"),
        ("no_audio.mp4", make_video_without_audio, "no audio stream"),
        ("silence.wav", make_silence, "digital silence"),
        ("half_second.wav", lambda p: make_tone(p, 440, 0.5), r"0\.50 s of audio .* need >= 1 s"),
        ("missing.wav", lambda p: p, "no such file"),
    ],
)
def test_unusable_audio_raises_audio_error_naming_the_cause(tmp_path, name, make, message):
    path = make(tmp_path / name)
    with pytest.raises(AudioError, match=message) as error:
        load_audio(path)
    assert name in str(error.value)


def test_missing_ffmpeg_says_how_to_install(tmp_path, monkeypatch):
    path = make_tone(tmp_path / "tone.wav", 440, 2.0)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(RuntimeError, match="apt-get install ffmpeg"):
        load_audio(path)


def test_variants_are_discovered_from_espeak_ng():
    variants = list_variants()
    names = {variant.name for variant in variants}
    assert len(variants) >= 20
    assert {"Alicia", "m3", "aunty"} <= names
    assert {variant.gender for variant in variants} >= {"F", "M"}
    assert all(" " not in name for name in names)


def test_speak_pitch_and_variant_change_the_voice(tmp_path):
    def f0(**options) -> float:
        path = speak(SENTENCE, tmp_path / "voice.wav", sample_rate=SAMPLE_RATE, **options)
        with wavfile.open(str(path)) as header:
            assert (header.getframerate(), header.getnchannels()) == (SAMPLE_RATE, 1)
        return median_f0(decode_audio(path))

    assert f0(pitch=90) > 1.5 * f0(pitch=10)
    assert f0(variant="Alicia") > 1.5 * f0(variant="m3")  # female vs male variant


def test_speak_rejects_unknown_variant_and_missing_espeak(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="unknown espeak-ng variant 'nobody'"):
        speak("hello", tmp_path / "x.wav", variant="nobody")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(SpeechSynthesisError, match="apt-get install espeak-ng"):
        speak("hello", tmp_path / "x.wav")
