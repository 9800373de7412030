"""Feeding the training step: stored float16 spectrograms vs int16 waveforms turned into spectrograms.

Part 1, per batch in one process: bytes on disk (Parquet, snappy) and the time to read a batch and
make the model's float32 input, (a) from a stored spectrogram (598 x 257 x 2 float16, 615 KB), (b)
from the same float16 bits stored in an int16 column, (c) from the waveform (96,000 int16, 192 KB)
through speech2face.audio.spectrogram on the CPU, and (d) the spectrogram computation alone.

Part 2, the trainer's real input path (``trainer.encoder.data.split_datasets`` streaming Parquet through Ray
Data into ``iter_torch_batches``, as trainer/encoder/loop.py reads it), on data in the clips/ layout with and
without the stored spectrogram: clips per CPU-second, counting every process on the machine (Ray's
read tasks included), so run it on a quiet machine. Before: the model input is the stored
spectrogram. After: the waveform is read and ``speech2face.audio.model_input`` runs on the device;
on a GPU that STFT leaves the CPU, so both "read only" and "with the STFT on this CPU" are shown.

The audio is real synthetic speech (espeak-ng), shifted and scaled per clip so rows differ.

    python -m benchmarks.data_loading --clips 32 --trainer-clips 1024
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
from speech2face.dataset import CLIP_ID, FACE_FEATURE, SPECTROGRAM, SPLIT, TRAIN, WAVEFORM, YTID, tensor_array

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


def busy_cpu_seconds() -> float:
    """CPU seconds every process on the machine has used since boot (user, nice, system, irq, softirq; Linux)."""
    with open("/proc/stat") as stat:
        user, nice, system, _idle, _iowait, irq, softirq = map(int, stat.readline().split()[1:8])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def write_clips_dir(path: str, waves: np.ndarray, with_spectrogram: bool, files: int = 8) -> int:
    """A clips/ directory as pipelines.preprocess writes it (the columns training reads); returns bytes."""
    os.makedirs(os.path.join(path, "clips"))
    rng = np.random.default_rng(1)
    for index, part in enumerate(np.array_split(np.arange(len(waves)), files)):
        columns = {
            CLIP_ID: [f"clip{i:07d}" for i in part],
            YTID: [f"vid{i:07d}" for i in part],
            SPLIT: [TRAIN] * len(part),
            WAVEFORM: tensor_array(waves[part]),
            FACE_FEATURE: tensor_array(rng.standard_normal((len(part), 4096)).astype(np.float32)),
        }
        if with_spectrogram:
            columns[SPECTROGRAM] = tensor_array(
                audio.model_input(torch.from_numpy(waves[part])).to(torch.float16).numpy()
            )
        pq.write_table(pa.table(columns), os.path.join(path, "clips", f"part-{index:03d}.parquet"))
    return sum(entry.stat().st_size for entry in os.scandir(os.path.join(path, "clips")))


def trainer_path_rate(data_dir: str, model_input, batch_size: int, passes: int, audio_column=WAVEFORM) -> dict:
    """The best of ``passes`` epochs over the train split as the trainer streams it: clips/s and clips per CPU-s."""
    from trainer.encoder.data import split_datasets

    best = None
    for _ in range(passes):
        dataset = split_datasets(data_dir, (TRAIN,), audio_column=audio_column)[TRAIN]
        cpu, wall, clips = busy_cpu_seconds(), time.perf_counter(), 0
        for batch in dataset.iter_torch_batches(batch_size=batch_size):
            clips += len(model_input(batch))
        cpu, wall = busy_cpu_seconds() - cpu, time.perf_counter() - wall
        figures = {
            "clips": clips,
            "wall_s": wall,
            "cpu_s": cpu,
            "clips_per_s": clips / wall,
            "clips_per_cpu_s": clips / cpu,
        }
        if best is None or figures["clips_per_cpu_s"] > best["clips_per_cpu_s"]:
            best = figures
    return best


def trainer_path(waves: np.ndarray, work_dir: str, batch_size: int, passes: int) -> dict:
    import ray

    old_dir, new_dir = os.path.join(work_dir, "with_spectrogram"), os.path.join(work_dir, "waveform_only")
    sizes = {
        "with_spectrogram": write_clips_dir(old_dir, waves, True),
        "waveform_only": write_clips_dir(new_dir, waves, False),
    }
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    try:
        rates = {
            "before: stored spectrogram -> float32": trainer_path_rate(
                old_dir, lambda batch: batch[SPECTROGRAM].float(), batch_size, passes, SPECTROGRAM
            ),
            "after: waveform read (STFT on the GPU)": trainer_path_rate(
                new_dir, lambda batch: batch[WAVEFORM], batch_size, passes
            ),
            "after: waveform + model_input on this CPU": trainer_path_rate(
                new_dir, lambda batch: audio.model_input(batch[WAVEFORM]), batch_size, passes
            ),
        }
    finally:
        ray.shutdown()
    return {"bytes_per_clip_on_disk": {k: v / len(waves) for k, v in sizes.items()}, "rates": rates}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=32, help="rows per Parquet file: one batch, read whole")
    parser.add_argument("--repeats", type=int, default=3, help="best of this many")
    parser.add_argument(
        "--trainer-clips",
        type=int,
        default=1024,
        help="clips in part 2 (the trainer's input path through Ray Data); 0 skips it",
    )
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as work_dir:
        waves = speech_clips(args.clips, work_dir)
        spectrograms = audio.spectrogram(audio.int16_to_waveform(waves)).to(torch.float16).numpy()
        wave_path, spec_path = os.path.join(work_dir, "wave.parquet"), os.path.join(work_dir, "spec.parquet")
        bits_path = os.path.join(work_dir, "spec_bits.parquet")
        sizes = {
            WAVEFORM: write_column(wave_path, WAVEFORM, waves),
            SPECTROGRAM: write_column(spec_path, SPECTROGRAM, spectrograms),
            "spectrogram_bits_as_int16": write_column(bits_path, SPECTROGRAM, spectrograms.view(np.int16)),
        }
        batch = args.clips

        def from_spectrogram():
            return read_column(spec_path, SPECTROGRAM).float()

        def from_waveform():
            return audio.spectrogram(read_column(wave_path, WAVEFORM).float() / audio.INT16_SCALE)

        assert from_spectrogram().shape == from_waveform().shape == (batch, audio.NUM_FRAMES, audio.NUM_BINS, 2)
        int16_batch = torch.from_numpy(waves)

        def compute_only():
            return audio.spectrogram(int16_batch.float() / audio.INT16_SCALE)

        seconds = {
            "read_float16_spectrogram_only": best_of(args.repeats, lambda: read_column(spec_path, SPECTROGRAM)),
            "read_float16_spectrogram_to_float32": best_of(args.repeats, from_spectrogram),
            "read_spectrogram_bits_as_int16_to_float32": best_of(
                args.repeats, lambda: read_column(bits_path, SPECTROGRAM).view(torch.float16).float()
            ),
            "read_int16_waveform_only": best_of(args.repeats, lambda: read_column(wave_path, WAVEFORM)),
            "read_int16_waveform_and_compute": best_of(args.repeats, from_waveform),
            "compute_spectrogram_only": best_of(args.repeats, compute_only),
        }
        if args.trainer_clips:
            tiled = np.resize(waves, (args.trainer_clips, audio.NUM_SAMPLES))  # the clips repeated: same speech
            trainer = trainer_path(tiled, work_dir, batch_size=batch, passes=args.repeats)
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
    if args.trainer_clips:
        result["trainer_input_path"] = trainer
        before = trainer["rates"]["before: stored spectrogram -> float32"]["clips_per_cpu_s"]
        print(f"trainer input path, {args.trainer_clips} clips, best of {args.repeats} epochs:")
        for kind, rate in trainer["rates"].items():
            per_cpu = rate["clips_per_cpu_s"]
            print(
                f"{kind:>43}: {per_cpu:7.0f} clips per CPU-s ({per_cpu / before:4.1f}x), "
                f"{rate['clips_per_s']:6.0f} clips/s"
            )
    if args.json:
        with open(args.json, "w") as file:
            json.dump(result, file, indent=2)


if __name__ == "__main__":
    main()
