"""Feeding the training step: stored float16 spectrograms vs int16 waveforms turned into spectrograms.

The preprocess output (pipelines/stages.py) holds both columns as Arrow fixed-shape tensors: the
spectrogram (598 x 257 x 2 float16, 615 KB) and the waveform (96,000 int16, 192 KB). This measures,
per clip, on this machine: bytes on disk (Parquet, snappy) and the time to read a batch and make the
model's float32 input, (a) from the stored spectrogram, (b) from the same float16 bits stored in
an int16 column, (c) from the waveform through speech2face.audio.spectrogram on the CPU, and (d) the
spectrogram computation alone.
The audio is real synthetic speech (espeak-ng), shifted and scaled per clip so rows differ.

    python -m benchmarks.data_loading --clips 32
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from speech2face import audio

SENTENCE = "The quick brown fox jumps over the lazy dog while the speaker keeps on talking for a few seconds."


def speech_clips(count: int, work_dir: str, seed: int = 0) -> np.ndarray:
    """(count, 96000) int16 clips of espeak-ng speech, each circularly shifted and scaled differently."""
    if shutil.which("espeak-ng") is None:
        raise SystemExit("espeak-ng not found: install it (apt-get install espeak-ng) to make the test speech")
    wav = os.path.join(work_dir, "speech.wav")
    subprocess.run(["espeak-ng", "-w", wav, SENTENCE], check=True)
    wave = audio.load_audio(wav)
    rng = np.random.default_rng(seed)
    clips = [np.roll(wave, int(rng.integers(audio.NUM_SAMPLES))) * rng.uniform(0.3, 1.0) for _ in range(count)]
    return audio.waveform_to_int16(np.stack(clips))


def write_column(path: str, name: str, array: np.ndarray) -> int:
    """One-column Parquet file (pyarrow defaults: snappy); returns its size in bytes."""
    pq.write_table(pa.table({name: pa.FixedShapeTensorArray.from_numpy_ndarray(array)}), path)
    return os.path.getsize(path)


def read_column(path: str, name: str) -> torch.Tensor:
    """Every row of a fixed-shape tensor column, as one tensor (zero-copy from Arrow where it can)."""
    column = pq.read_table(path, columns=[name]).column(name).combine_chunks()
    return torch.from_numpy(np.require(column.to_numpy_ndarray(), requirements=["W"]))


def best_of(repeats: int, function) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=32, help="rows per Parquet file: one batch, read whole")
    parser.add_argument("--repeats", type=int, default=3, help="best of this many")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as work_dir:
        waves = speech_clips(args.clips, work_dir)
        spectrograms = audio.spectrogram(audio.int16_to_waveform(waves)).to(torch.float16).numpy()
        wave_path, spec_path = os.path.join(work_dir, "wave.parquet"), os.path.join(work_dir, "spec.parquet")
        bits_path = os.path.join(work_dir, "spec_bits.parquet")
        sizes = {
            "waveform": write_column(wave_path, "waveform", waves),
            "spectrogram": write_column(spec_path, "spectrogram", spectrograms),
            "spectrogram_bits_as_int16": write_column(bits_path, "spectrogram", spectrograms.view(np.int16)),
        }
        batch = args.clips

        def from_spectrogram():
            return read_column(spec_path, "spectrogram").float()

        def from_waveform():
            return audio.spectrogram(read_column(wave_path, "waveform").float() / audio.INT16_SCALE)

        assert from_spectrogram().shape == from_waveform().shape == (batch, audio.NUM_FRAMES, audio.NUM_BINS, 2)
        int16_batch = torch.from_numpy(waves)

        def compute_only():
            return audio.spectrogram(int16_batch.float() / audio.INT16_SCALE)

        seconds = {
            "read_float16_spectrogram_only": best_of(args.repeats, lambda: read_column(spec_path, "spectrogram")),
            "read_float16_spectrogram_to_float32": best_of(args.repeats, from_spectrogram),
            "read_spectrogram_bits_as_int16_to_float32": best_of(
                args.repeats, lambda: read_column(bits_path, "spectrogram").view(torch.float16).float()),
            "read_int16_waveform_only": best_of(args.repeats, lambda: read_column(wave_path, "waveform")),
            "read_int16_waveform_and_compute": best_of(args.repeats, from_waveform),
            "compute_spectrogram_only": best_of(args.repeats, compute_only),
        }  # fmt: skip
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "load_average": os.getloadavg(),
        "torch_threads": torch.get_num_threads(),
        "batch_size": batch,
        "bytes_per_clip_on_disk": {k: v / args.clips for k, v in sizes.items()},
        "ms_per_clip": {k: 1e3 * v / batch for k, v in seconds.items()},
        "clips_per_s": {k: batch / v for k, v in seconds.items()},
    }
    for kind, size in result["bytes_per_clip_on_disk"].items():
        print(f"{kind:>25} on disk: {size / 1e3:7.1f} KB/clip")
    for kind, ms in result["ms_per_clip"].items():
        print(f"{kind:>41}: {ms:6.2f} ms/clip  ({result['clips_per_s'][kind]:7.0f} clips/s, one process)")
    if args.json:
        with open(args.json, "w") as file:
            json.dump(result, file, indent=2)


if __name__ == "__main__":
    main()
