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
from PIL import Image

import telemetry
from pipelines.failures import write_failures
from pipelines.preprocess.config import PreprocessConfig
from pipelines.preprocess.sizing import PoolSizes
from pipelines.streaming import Resources, Stage
from speech2face import audio, faces, landmarks, storage, video
from speech2face.dataset import (
    AUDIO_FORMAT,
    CLIP_ID,
    CPU_S,
    CPU_STAGES,
    DECODE,
    DOWNLOAD,
    DOWNLOAD_BYTES,
    DOWNLOAD_COLUMNS,
    DURATION_S,
    EMBEDDER,
    END,
    ERROR,
    FACE,
    FACE_BOX,
    FACE_FEATURE,
    FACE_JPEG,
    FACE_LANDMARKS,
    FEATURE,
    FRAME_TIME,
    MEDIA,
    REASON,
    SEGMENT_COLUMNS,
    SOURCE_COLUMNS,
    SPECTROGRAM,
    SPLIT,
    STAGE,
    START,
    VIDEO_FORMAT,
    WAVEFORM,
    YTID,
    EmbedderRecord,
    Layout,
    X,
    Y,
    clip_schema,
    tensor_array,
)
from speech2face.download import DownloadConfig, download_segment
from speech2face.embedders import make_embedder
from speech2face.sources import fetch_media

JPEG_QUALITY = 95
# Between stages, a row also carries the downloaded file and the decoded frames (never written).
VIDEO, SAMPLES = "video", "samples"


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
        row[STAGE], row[ERROR] = stage, f"{type(error).__name__}: {error}"[:2000]
        row[REASON] = getattr(error, "reason", "")
    row[f"cpu_{stage}_s"] = clock() - started + (extra_cpu() if extra_cpu else 0.0)
    telemetry.stage_done(stage, row[f"cpu_{stage}_s"], row[REASON] if row.get(STAGE) == stage else None)


class DownloadStage:
    """yt-dlp fetches only the segment, or a row's own file is read (and cut, for a whole video:
    ``speech2face.sources``); the file's bytes travel on, so later stages may run anywhere.

    Downloads wait on the network, so one actor runs ``threads`` of them at once, shared by the blocks
    it is given concurrently (one slow clip does not idle the others). A cookies file (local or s3://)
    is copied once per actor, so to every node that downloads, into a file only this user can read.
    """

    name = DOWNLOAD

    def __init__(
        self, *, download: DownloadConfig, cookies_uri: str | None = None, threads: int = 1, cut_media: bool = True
    ):
        self.cut_media = cut_media  # a row's file holds the whole video: cut its segment out
        self._cookies_dir = tempfile.TemporaryDirectory(prefix="s2f-cookies-") if cookies_uri else None
        if cookies_uri:
            cookies = os.path.join(self._cookies_dir.name, "cookies.txt")
            with os.fdopen(os.open(cookies, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as file:
                file.write(storage.read_bytes(cookies_uri))
            download = dataclasses.replace(download, cookies=cookies)
        self.config = download
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="s2f-download")
        self._children = FinishedChildrenCpu()

    @classmethod
    def stage(cls, config: PreprocessConfig, sizes: PoolSizes) -> Stage:
        """Threads wait on the network, not on the CPU: a light reservation, two blocks at once per actor."""
        return Stage(
            cls.name,
            cls,
            Resources(cpus=min(0.25, config.cpus_per_actor)),
            pool=(1, sizes.download_actors),
            concurrent_calls=2,
            kwargs={
                "download": config.download_config(),
                "cookies_uri": config.cookies,
                "threads": sizes.download_threads,
                "cut_media": config.cuts_media(),
            },
        )

    def _download(self, row: dict) -> dict:
        with tempfile.TemporaryDirectory(prefix="s2f-dl-") as tmp:
            if row.get(MEDIA):
                return {VIDEO: fetch_media(row[MEDIA], row[START], row[END], self.cut_media, tmp).read_bytes()}
            got = download_segment(row[YTID], row[START], row[END], tmp, self.config)
            telemetry.downloaded(got.bytes_read)
            return {
                VIDEO: got.path.read_bytes(),
                DOWNLOAD_BYTES: got.bytes_read,
                VIDEO_FORMAT: got.video_format,
                AUDIO_FORMAT: got.audio_format,
            }

    def _download_row(self, row: dict) -> None:
        _run_row(row, DOWNLOAD, self._download, clock=thread_cpu_seconds, extra_cpu=self._children.take)

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        rows = batch.to_dict("records")
        list(self._pool.map(self._download_row, [row for row in rows if not row[ERROR]]))
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
        return {
            WAVEFORM: audio.waveform_to_int16(wave).tobytes(),
            DURATION_S: seconds,
            SAMPLES: video.sample_frames(path, count=frames_per_clip),
        }

    return _with_video_file(row.pop(VIDEO), row[CLIP_ID], decode)


class FaceFinder:
    """dlib finds the face nearest the AVSpeech (x, y) in the sampled frames; keeps the best crop."""

    def __init__(self, model: str = "hog", max_distance: float = faces.MAX_DISTANCE, store_landmarks: bool = True):
        self.model, self.max_distance, self.store_landmarks = model, max_distance, store_landmarks
        faces.face_recognition_module()  # load dlib's models once per actor

    def __call__(self, row: dict) -> dict:
        samples = row.pop(SAMPLES)  # in this actor's memory: never serialised
        try:  # without upsampling dlib finds faces of ~80 px and up at a third of the CPU ...
            crop = faces.best_face(samples, row[X], row[Y], self.max_distance, self.model, upsample=0)
        except faces.FaceError:  # ... and upsampling once finds the smaller ones
            crop = faces.best_face(samples, row[X], row[Y], self.max_distance, self.model, upsample=1)
        jpeg = io.BytesIO()
        Image.fromarray(crop.image).save(jpeg, format="JPEG", quality=JPEG_QUALITY)
        found = {FACE_JPEG: jpeg.getvalue(), FACE_BOX: crop.box.as_list(), FRAME_TIME: crop.frame_time}
        if self.store_landmarks:  # on the crop itself, before JPEG; flat, like face_box, between stages
            found[FACE_LANDMARKS] = landmarks.crop_landmarks(crop.image[None])[0].reshape(-1).tolist()
        return found


class DecodeFaceStage:
    """Decode, then find the face, row by row in one actor; then the failures written out and dropped.

    One stage, not three: a clip's decoded frames (~2 MB at 360p) never cross the object store, and a
    block costs one Ray task here instead of three (what Ray Data costs a row is mostly per task).
    """

    name = "decode_face"

    def __init__(
        self, *, frames_per_clip: int, face_model: str, max_distance: float, store_landmarks: bool, failures_uri: str
    ):
        self.frames_per_clip, self.failures_uri = frames_per_clip, failures_uri
        self.find_face = FaceFinder(face_model, max_distance, store_landmarks)

    @classmethod
    def stage(cls, config: PreprocessConfig, sizes: PoolSizes, failures_uri: str) -> Stage:
        """A whole CPU an actor (ffmpeg, then dlib), one call per block."""
        return Stage(
            cls.name,
            cls,
            Resources(cpus=config.cpus_per_actor),
            pool=(1, sizes.face),
            kwargs={
                "frames_per_clip": config.frames_per_clip,
                "face_model": config.face_model,
                "max_distance": config.max_face_distance,
                "store_landmarks": config.store_landmarks,
                "failures_uri": failures_uri,
            },
        )

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        rows = batch.to_dict("records")
        for row in rows:
            for stage, fn in ((DECODE, lambda r: decode_row(r, self.frames_per_clip)), (FACE, self.find_face)):
                if not row[ERROR]:
                    _run_row(row, stage, fn)
        out = pd.DataFrame(rows).drop(columns=[VIDEO, SAMPLES], errors="ignore")
        return divert_failures(out, self.failures_uri)


def _torch_device():
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def divert_failures(batch: pd.DataFrame, failures_uri: str) -> pd.DataFrame:
    """Writes the failure rows of a batch to ``failures/`` and passes the good rows on."""
    failed = batch[ERROR] != ""
    write_failures(batch[failed].to_dict("records"), failures_uri, "stages")
    return batch[~failed].reset_index(drop=True)


class FeatureStage:
    """The GPU-capable stage: face features (and, if asked, spectrograms) for a batch, models loaded once per actor.

    The same code runs on CUDA when Ray gave the actor a GPU, else on CPU.
    """

    name = FEATURE

    def __init__(
        self,
        *,
        embedder: str,
        weights: str | None,
        allow_random: bool,
        failures_uri: str,
        layout: Layout,
    ):
        # torch only where it runs: VGG-Face or the stored spectrogram. dlib's actors, like the download and decode
        # actors that share this module, start without it (~2 CPU-s an actor).
        self.device = _torch_device() if embedder == "vggface" or layout.store_spectrogram else None
        with storage.local_copy(weights) if weights else contextlib.nullcontext() as local_weights:
            self.embedder = make_embedder(
                embedder, weights=local_weights, allow_random=allow_random, device=self.device
            )
        self.failures_uri = failures_uri
        self.layout = layout
        self.schema = clip_schema(self.embedder.dim, layout)

    @classmethod
    def stage(cls, config: PreprocessConfig, sizes: PoolSizes, failures_uri: str, embedder: EmbedderRecord) -> Stage:
        """Batches of ``--batch-size`` clips, a GPU an actor where the cluster has GPUs (the same code on CPU)."""
        return Stage(
            cls.name,
            cls,
            Resources(cpus=config.cpus_per_actor, gpus=sizes.gpus),
            batch_size=config.batch_size,
            pool=(sizes.feature, sizes.feature),
            kwargs={
                "embedder": embedder.name,
                "weights": None if config.random_weights else config.vggface_weights,
                "allow_random": config.random_weights,
                "failures_uri": failures_uri,
                "layout": config.layout(),
            },
        )

    def _features(self, rows: list[dict]) -> pa.Table:
        started = cpu_seconds()
        waves = np.stack([np.frombuffer(r[WAVEFORM], dtype=np.int16) for r in rows])
        stored = {}
        if self.layout.store_spectrogram:
            import torch

            spectrograms = audio.model_input(torch.from_numpy(waves).to(self.device)).to(torch.float16)
            stored[SPECTROGRAM] = tensor_array(spectrograms.cpu().numpy())
        if self.layout.store_landmarks:  # flat between stages, like face_box
            points = [np.asarray(r[FACE_LANDMARKS], np.float32).reshape(landmarks.NUM_LANDMARKS, 2) for r in rows]
            stored[FACE_LANDMARKS] = tensor_array(np.stack(points))
        crops = np.stack([np.asarray(Image.open(io.BytesIO(r[FACE_JPEG])).convert("RGB")) for r in rows])
        features = self.embedder.embed(crops).astype(np.float32)
        feature_cpu = (cpu_seconds() - started) / max(len(rows), 1)
        for _ in rows:  # each clip's share of the batch, as the clips/ rows record it
            telemetry.stage_done(FEATURE, feature_cpu)
        cpu = [
            {stage: float(r.get(f"cpu_{stage}_s", 0.0)) for stage in CPU_STAGES[:-1]} | {FEATURE: feature_cpu}
            for r in rows
        ]
        columns = {name: [r.get(name) for r in rows] for name in SEGMENT_COLUMNS + SOURCE_COLUMNS}
        columns |= {name: [_value(r.get(name)) for r in rows] for name in DOWNLOAD_COLUMNS}
        columns |= {
            WAVEFORM: tensor_array(waves),
            FACE_JPEG: pa.array([r[FACE_JPEG] for r in rows], pa.binary()),
            FACE_BOX: pa.array([list(map(int, r[FACE_BOX])) for r in rows], pa.list_(pa.int32(), 4)),
            FRAME_TIME: pa.array([float(r[FRAME_TIME]) for r in rows], pa.float64()),
            FACE_FEATURE: tensor_array(features),
            EMBEDDER: pa.array([self.embedder.name] * len(rows), pa.string()),
            DURATION_S: pa.array([float(r[DURATION_S]) for r in rows], pa.float64()),
            CPU_S: cpu,
            **stored,
        }
        return pa.table({name: columns[name] for name in self.schema.names}, schema=self.schema)

    def __call__(self, batch: pd.DataFrame) -> pa.Table:
        rows = batch.to_dict("records")
        try:
            table = self._features(rows)
        except Exception:  # noqa: BLE001 - find the clip(s) at fault, keep the rest
            good, bad = [], []
            for row in rows:
                try:
                    good.append(self._features([row]))
                except Exception as error:  # noqa: BLE001
                    row[STAGE], row[ERROR] = FEATURE, f"{type(error).__name__}: {error}"[:2000]
                    bad.append(row)
                    telemetry.failed(FEATURE)
            write_failures(bad, self.failures_uri, FEATURE)
            table = pa.concat_tables(good) if good else self.schema.empty_table()
        telemetry.clips_passed(table.column(SPLIT).to_pylist())
        return table


def _value(value):
    """None for a value a row never had (pandas fills it with NaN between stages); ints stay ints."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return int(value) if isinstance(value, (float, np.integer)) else value


def pipeline_stages(config: PreprocessConfig, failures_uri: str, embedder: EmbedderRecord, sizes: PoolSizes) -> list:
    """The pipeline as data: download -> decode + face -> feature, each with its batch size and resources."""
    return [
        DownloadStage.stage(config, sizes),
        DecodeFaceStage.stage(config, sizes, failures_uri),
        FeatureStage.stage(config, sizes, failures_uri, embedder),
    ]
