"""The stages of preprocessing, as Ray Data batch UDFs around core functions.

Rows carry ``stage``, ``error`` and ``reason`` columns. A stage works on rows whose ``error`` is empty and
turns any exception into a failure (``stage`` = its name, ``error`` = the message, ``reason`` = a download
error's class, see ``speech2face.download``): one bad clip never kills the job, and no row is dropped.
A tool killed by a signal (``speech2face.processes.ProcessKilled``: the job shutting down, the OOM killer)
is not the clip's fault: it fails the task instead, and the clip stays to do for a resumed run.
``DecodeFaceStage`` runs decode and face in one actor and writes the failures out, so the feature
stage sees only good rows and can return fixed-shape tensor columns.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import resource
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pyarrow as pa
import torch
from PIL import Image

from pipelines.failures import write_failures
from speech2face import audio, faces, landmarks, storage, video
from speech2face.download import DownloadConfig, download_segment
from speech2face.embedders import make_embedder

CPU_STAGES = ("download", "decode", "face", "feature")  # per-clip CPU seconds are recorded for these
JPEG_QUALITY = 95


def _children_cpu_seconds() -> float:
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return children.ru_utime + children.ru_stime


def cpu_seconds() -> float:
    """CPU time of this process and of its finished subprocesses (ffmpeg, yt-dlp's ffmpeg)."""
    return time.process_time() + _children_cpu_seconds()


def thread_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_THREAD)
    return usage.ru_utime + usage.ru_stime


class FinishedChildrenCpu:
    """CPU seconds of subprocesses (yt-dlp's ffmpeg) finished since the last ``take``, handed out once.

    With rows in concurrent threads, a row cannot tell its ffmpeg from its neighbour's; each second is
    still counted once, so the stage's total and its mean per clip stay exact.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._seen = _children_cpu_seconds()

    def take(self) -> float:
        with self._lock:
            now = _children_cpu_seconds()
            taken, self._seen = now - self._seen, now
        return taken


def _run_row(row: dict, stage: str, fn: Callable[[dict], dict], clock=cpu_seconds, extra_cpu=None) -> None:
    """``fn(row)`` merged into the row, or the row marked failed; its CPU seconds in ``cpu_<stage>_s``."""
    started = clock()
    try:
        row.update(fn(row))
    except Exception as error:  # noqa: BLE001 - any per-clip error becomes a failure row
        row["stage"], row["error"] = stage, f"{type(error).__name__}: {error}"[:2000]
        row["reason"] = getattr(error, "reason", "")
    row[f"cpu_{stage}_s"] = clock() - started + (extra_cpu() if extra_cpu else 0.0)


class DownloadStage:
    """yt-dlp fetches only the segment; the file's bytes travel on, so later stages may run anywhere.

    Downloads wait on the network, so one actor runs ``threads`` of them at once, shared by the blocks
    it is given concurrently (one slow clip does not idle the others). A cookies file (local or s3://)
    is copied once per actor, so to every node that downloads, into a file only this user can read.
    """

    def __init__(self, config: DownloadConfig, cookies_uri: str | None = None, threads: int = 1):
        self._cookies_dir = tempfile.TemporaryDirectory(prefix="s2f-cookies-") if cookies_uri else None
        if cookies_uri:
            cookies = os.path.join(self._cookies_dir.name, "cookies.txt")
            with os.fdopen(os.open(cookies, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as file:
                file.write(storage.read_bytes(cookies_uri))
            config = dataclasses.replace(config, cookies=cookies)
        self.config = config
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="s2f-download")
        self._children = FinishedChildrenCpu()

    def _download(self, row: dict) -> dict:
        with tempfile.TemporaryDirectory(prefix="s2f-dl-") as tmp:
            path = download_segment(row["ytid"], row["start"], row["end"], tmp, self.config)
            return {"video": path.read_bytes()}

    def _download_row(self, row: dict) -> None:
        _run_row(row, "download", self._download, clock=thread_cpu_seconds, extra_cpu=self._children.take)

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        rows = batch.to_dict("records")
        list(self._pool.map(self._download_row, [row for row in rows if not row["error"]]))
        return pd.DataFrame(rows)


def _with_video_file(data: bytes, clip_id: str, fn):
    with tempfile.NamedTemporaryFile(prefix=f"{clip_id}-", suffix=".mp4") as file:
        file.write(data)
        file.flush()
        return fn(file.name)


def decode_row(row: dict, frames_per_clip: int) -> dict:
    """ffmpeg: 6 s of 16 kHz mono audio (looped when shorter) and a few (time, frame) samples of the segment."""

    def decode(path: str) -> dict:
        wave, seconds = audio.load_audio_with_duration(path)
        return {"waveform": audio.waveform_to_int16(wave).tobytes(), "duration_s": seconds,
                "samples": video.sample_frames(path, count=frames_per_clip)}  # fmt: skip

    return _with_video_file(row.pop("video"), row["clip_id"], decode)


class FaceFinder:
    """dlib finds the face nearest the AVSpeech (x, y) in the sampled frames; keeps the best crop."""

    def __init__(self, model: str = "hog", max_distance: float = faces.MAX_DISTANCE, store_landmarks: bool = True):
        self.model, self.max_distance, self.store_landmarks = model, max_distance, store_landmarks
        faces.face_recognition_module()  # load dlib's models once per actor

    def __call__(self, row: dict) -> dict:
        samples = row.pop("samples")  # in this actor's memory: never serialised
        try:  # without upsampling dlib finds faces of ~80 px and up at a third of the CPU ...
            crop = faces.best_face(samples, row["x"], row["y"], self.max_distance, self.model, upsample=0)
        except faces.FaceError:  # ... and upsampling once finds the smaller ones
            crop = faces.best_face(samples, row["x"], row["y"], self.max_distance, self.model, upsample=1)
        jpeg = io.BytesIO()
        Image.fromarray(crop.image).save(jpeg, format="JPEG", quality=JPEG_QUALITY)
        found = {"face_jpeg": jpeg.getvalue(), "face_box": crop.box.as_list(), "frame_time": crop.frame_time}
        if self.store_landmarks:  # on the crop itself, before JPEG; flat, like face_box, between stages
            found["face_landmarks"] = landmarks.crop_landmarks(crop.image[None])[0].reshape(-1).tolist()
        return found


class DecodeFaceStage:
    """Decode, then find the face, row by row in one actor; then the failures written out and dropped.

    One stage, not three: a clip's decoded frames (~2 MB at 360p) never cross the object store, and a
    block costs one Ray task here instead of three (what Ray Data costs a row is mostly per task).
    """

    def __init__(self, frames_per_clip: int, face_model: str, max_distance: float, store_landmarks: bool,
                 failures_uri: str):  # fmt: skip
        self.frames_per_clip, self.failures_uri = frames_per_clip, failures_uri
        self.find_face = FaceFinder(face_model, max_distance, store_landmarks)

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        rows = batch.to_dict("records")
        for row in rows:
            for stage, fn in (("decode", lambda r: decode_row(r, self.frames_per_clip)), ("face", self.find_face)):
                if not row["error"]:
                    _run_row(row, stage, fn)
        out = pd.DataFrame(rows).drop(columns=["video", "samples"], errors="ignore")
        return divert_failures(out, self.failures_uri)


def divert_failures(batch: pd.DataFrame, failures_uri: str) -> pd.DataFrame:
    """Writes the failure rows of a batch to ``failures/`` and passes the good rows on."""
    failed = batch["error"] != ""
    write_failures(batch[failed].to_dict("records"), failures_uri, "stages")
    return batch[~failed].reset_index(drop=True)


SPECTROGRAM_FIELD = pa.field("spectrogram", pa.fixed_shape_tensor(pa.float16(), [audio.NUM_FRAMES, audio.NUM_BINS, 2]))
LANDMARKS_FIELD = pa.field("face_landmarks", pa.fixed_shape_tensor(pa.float32(), [landmarks.NUM_LANDMARKS, 2]))


def clip_schema(feature_dim: int, store_spectrogram: bool = False, store_landmarks: bool = True) -> pa.Schema:
    """The columns of ``clips/``; tensors use Arrow's canonical fixed-shape tensor type.

    ``spectrogram`` (float16, 3.2x the waveform's bytes) only with --store-spectrogram: readers
    compute it from ``waveform``. ``face_landmarks``: dlib's 68 points in crop pixels; data written
    before the column existed lacks it.
    """
    return pa.schema([
        ("clip_id", pa.string()), ("ytid", pa.string()), ("start", pa.float64()), ("end", pa.float64()),
        ("x", pa.float64()), ("y", pa.float64()), ("split", pa.string()),
        ("waveform", pa.fixed_shape_tensor(pa.int16(), [audio.NUM_SAMPLES])),
        *([SPECTROGRAM_FIELD] if store_spectrogram else []),
        ("face_jpeg", pa.binary()), ("face_box", pa.list_(pa.int32(), 4)),
        *([LANDMARKS_FIELD] if store_landmarks else []), ("frame_time", pa.float64()),
        ("face_feature", pa.fixed_shape_tensor(pa.float32(), [feature_dim])),
        ("embedder", pa.string()), ("duration_s", pa.float64()),
        ("cpu_s", pa.struct([(stage, pa.float64()) for stage in CPU_STAGES])),
    ])  # fmt: skip


def _tensor_column(array: np.ndarray) -> pa.Array:
    return pa.FixedShapeTensorArray.from_numpy_ndarray(np.ascontiguousarray(array))


class FeatureStage:
    """The GPU-capable stage: face features (and, if asked, spectrograms) for a batch, models loaded once per actor.

    The same code runs on CUDA when Ray gave the actor a GPU, else on CPU.
    """

    def __init__(self, embedder: str, weights: str | None, allow_random: bool, failures_uri: str,
                 store_spectrogram: bool = False, store_landmarks: bool = True):  # fmt: skip
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        with storage.local_copy(weights) if weights else contextlib.nullcontext() as local_weights:
            self.embedder = make_embedder(embedder, weights=local_weights, allow_random=allow_random,
                                          device=self.device)  # fmt: skip
        self.failures_uri = failures_uri
        self.store_spectrogram, self.store_landmarks = store_spectrogram, store_landmarks
        self.schema = clip_schema(self.embedder.dim, store_spectrogram, store_landmarks)

    def _features(self, rows: list[dict]) -> pa.Table:
        started = cpu_seconds()
        waves = np.stack([np.frombuffer(r["waveform"], dtype=np.int16) for r in rows])
        stored = {}
        if self.store_spectrogram:
            spectrograms = audio.model_input(torch.from_numpy(waves).to(self.device)).to(torch.float16)
            stored["spectrogram"] = _tensor_column(spectrograms.cpu().numpy())
        crops = np.stack([np.asarray(Image.open(io.BytesIO(r["face_jpeg"])).convert("RGB")) for r in rows])
        features = self.embedder.embed(crops).astype(np.float32)
        columns = {name: [r[name] for r in rows] for name in ("clip_id", "ytid", "start", "end", "x", "y", "split")}
        feature_cpu = (cpu_seconds() - started) / max(len(rows), 1)
        cpu = [{stage: float(r.get(f"cpu_{stage}_s", 0.0)) for stage in CPU_STAGES[:-1]} | {"feature": feature_cpu}
               for r in rows]  # fmt: skip
        return pa.table({
            **columns,
            "waveform": _tensor_column(waves),
            **stored,
            "face_jpeg": pa.array([r["face_jpeg"] for r in rows], pa.binary()),
            "face_box": pa.array([list(map(int, r["face_box"])) for r in rows], pa.list_(pa.int32(), 4)),
            **({"face_landmarks": _tensor_column(np.stack([np.asarray(r["face_landmarks"], np.float32).reshape(
                landmarks.NUM_LANDMARKS, 2) for r in rows]))} if self.store_landmarks else {}),
            "frame_time": pa.array([float(r["frame_time"]) for r in rows], pa.float64()),
            "face_feature": _tensor_column(features),
            "embedder": pa.array([self.embedder.name] * len(rows), pa.string()),
            "duration_s": pa.array([float(r["duration_s"]) for r in rows], pa.float64()),
            "cpu_s": cpu,
        }, schema=self.schema)  # fmt: skip

    def __call__(self, batch: pd.DataFrame) -> pa.Table:
        rows = batch.to_dict("records")
        try:
            return self._features(rows)
        except Exception:  # noqa: BLE001 - find the clip(s) at fault, keep the rest
            good, bad = [], []
            for row in rows:
                try:
                    good.append(self._features([row]))
                except Exception as error:  # noqa: BLE001
                    row["stage"], row["error"] = "feature", f"{type(error).__name__}: {error}"[:2000]
                    bad.append(row)
            write_failures(bad, self.failures_uri, "feature")
            empty = self.schema.empty_table()
            return pa.concat_tables(good) if good else empty
