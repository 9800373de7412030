"""The dataset contract: what preprocessing writes at ``--out`` and every reader reads, declared once.

    <out>/clips/split=<split>/*.parquet
                               one row per clip: the columns below, schema ``clip_schema``; partitioned
                               by split (hive-style: ``split`` is in the path, not the file), so a
                               reader of one split reads only its files
    <out>/failures/*.parquet   one row per clip that did not make it: ``FAILURE_SCHEMA``
    <out>/manifest.json        ``Manifest``: the run's config, versions, ``EmbedderRecord``, counts

Every writer and reader names a column through these constants, never by a string of its own, so a
renamed or added column is one edit here. Data written by earlier versions still reads: clips from
before ``--store-spectrogram`` became optional carry ``spectrogram``, clips from before landmarks lack
``face_landmarks``, outputs from before partitioning hold every split's clips in ``clips/*.parquet``
with a ``split`` column, failures from before reasons lack ``reason``, and manifests without
``version`` are version 1 (``speech2face.shards`` reads either layout). Neither torch nor Ray is
imported here: a driver planning millions of rows reads this module.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from speech2face import storage
from speech2face.errors import InputError

# clips/: a CSV row's segment ...
CLIP_ID = "clip_id"  # <ytid>_<start>_<end> (speech2face.avspeech.clip_id)
YTID = "ytid"
START = "start"  # seconds into the video
END = "end"
X = "x"  # the speaker's face centre, as fractions of the frame
Y = "y"
SPLIT = "split"  # train, val or test
SPEAKER = "speaker"  # who speaks, where the source knows it (VoxCeleb2, a media CSV); null otherwise
MEDIA = "media"  # the file the clip came from, for media you hold (speech2face.sources); null when downloaded
# ... what its download cost (speech2face.download; null for media you hold) ...
DOWNLOAD_BYTES = "download_bytes"  # bytes ffmpeg read from the network for the segment, every attempt's
VIDEO_FORMAT = "video_format"  # the format yt-dlp chose: "<format id> <codec> <height>p"
AUDIO_FORMAT = "audio_format"  # "<format id> <codec> <rate> Hz"
# ... and what preprocessing found in it
WAVEFORM = "waveform"  # int16 [96000]: 6 s at 16 kHz, looped when shorter; the model input
SPECTROGRAM = "spectrogram"  # float16 [598, 257, 2]; only with --store-spectrogram (and in older data)
FACE_JPEG = "face_jpeg"  # the 224x224 face crop
FACE_BOX = "face_box"  # [top, right, bottom, left] in the frame
FACE_LANDMARKS = "face_landmarks"  # float32 [68, 2], dlib's points in crop pixels; absent in older data
FRAME_TIME = "frame_time"  # seconds into the segment of the frame the face came from
FACE_FEATURE = "face_feature"  # float32 [dim]: the training target
EMBEDDER = "embedder"  # the name of the network that made face_feature
DURATION_S = "duration_s"  # real audio before looping
CPU_S = "cpu_s"  # CPU seconds per stage (CPU_STAGES)

# failures/
STAGE = "stage"  # where it failed: one of STAGES
ERROR = "error"  # the error's message
REASON = "reason"  # a download failure's class (speech2face.download.REASONS); null otherwise

SEGMENT_COLUMNS = (CLIP_ID, YTID, START, END, X, Y, SPLIT)
SOURCE_COLUMNS = (SPEAKER, MEDIA)  # absent in data from before them (``Layout.store_source``)
DOWNLOAD_COLUMNS = (DOWNLOAD_BYTES, VIDEO_FORMAT, AUDIO_FORMAT)  # likewise (``Layout.store_download``)
FAILURE_COLUMNS = (CLIP_ID, YTID, START, END, STAGE, ERROR, REASON)

PARSE, DOWNLOAD, DECODE, FACE, FEATURE = "parse", "download", "decode", "face", "feature"
STAGES = (PARSE, DOWNLOAD, DECODE, FACE, FEATURE)
CPU_STAGES = (DOWNLOAD, DECODE, FACE, FEATURE)  # per-clip CPU seconds are recorded for these
TRAIN, VAL, TEST = "train", "val", "test"

_SEGMENT_ID = [(CLIP_ID, pa.string()), (YTID, pa.string()), (START, pa.float64()), (END, pa.float64())]
FAILURE_SCHEMA = pa.schema([*_SEGMENT_ID, (STAGE, pa.string()), (ERROR, pa.string()), (REASON, pa.string())])


@dataclass(frozen=True)
class Layout:
    """Which optional columns a dataset's clips carry; a resumed --out keeps it, so every file has one schema."""

    store_spectrogram: bool = False
    store_landmarks: bool = True
    split_partitioned: bool = True  # clips/split=<name>/; False: every split's clips in clips/ (before version 3)
    store_source: bool = True  # SOURCE_COLUMNS (before version 4: absent)
    store_download: bool = True  # DOWNLOAD_COLUMNS (before version 5: absent)


def clip_schema(feature_dim: int, layout: Layout = Layout()) -> pa.Schema:
    """The columns of ``clips/``; tensors use Arrow's canonical fixed-shape tensor type, so plain pyarrow reads them."""
    from speech2face.audio import NUM_BINS, NUM_FRAMES, NUM_SAMPLES  # torch: only where clips are written
    from speech2face.landmarks import NUM_LANDMARKS

    def tensor(kind: pa.DataType, shape: list[int]) -> pa.DataType:
        return pa.fixed_shape_tensor(kind, shape)

    spectrogram = [(SPECTROGRAM, tensor(pa.float16(), [NUM_FRAMES, NUM_BINS, 2]))] if layout.store_spectrogram else []
    landmarks = [(FACE_LANDMARKS, tensor(pa.float32(), [NUM_LANDMARKS, 2]))] if layout.store_landmarks else []
    source = [(name, pa.string()) for name in SOURCE_COLUMNS] if layout.store_source else []
    download = [(DOWNLOAD_BYTES, pa.int64()), (VIDEO_FORMAT, pa.string()), (AUDIO_FORMAT, pa.string())]
    return pa.schema(
        [
            *_SEGMENT_ID,
            (X, pa.float64()),
            (Y, pa.float64()),
            (SPLIT, pa.string()),
            *source,
            *(download if layout.store_download else []),
            (WAVEFORM, tensor(pa.int16(), [NUM_SAMPLES])),
            *spectrogram,
            (FACE_JPEG, pa.binary()),
            (FACE_BOX, pa.list_(pa.int32(), 4)),
            *landmarks,
            (FRAME_TIME, pa.float64()),
            (FACE_FEATURE, tensor(pa.float32(), [feature_dim])),
            (EMBEDDER, pa.string()),
            (DURATION_S, pa.float64()),
            (CPU_S, pa.struct([(stage, pa.float64()) for stage in CPU_STAGES])),
        ]
    )


def tensor_array(values: np.ndarray) -> pa.Array:
    """(rows, *shape) numpy -> a fixed-shape tensor column."""
    return pa.FixedShapeTensorArray.from_numpy_ndarray(np.ascontiguousarray(values))


def tensor_column(table: pa.Table, name: str) -> np.ndarray:
    """A fixed-shape tensor column as one numpy array (rows, *shape)."""
    column = table[name].combine_chunks()
    return column.to_numpy_ndarray() if hasattr(column, "to_numpy_ndarray") else np.stack(column.to_pylist())


def clips_uri(data_uri: str) -> str:
    return storage.join(data_uri, "clips")


def split_uri(data_uri: str, split: str) -> str:
    """The directory of one split's clips in a partitioned output (``Layout.split_partitioned``)."""
    return storage.join(clips_uri(data_uri), f"{SPLIT}={split}")


def failures_uri(data_uri: str) -> str:
    return storage.join(data_uri, "failures")


# The embedder, its weights, and the manifest

RANDOM_WEIGHTS = "random"  # VGG-Face's seeded random stand-in: asked for explicitly, recorded as such


@dataclass(frozen=True)
class EmbedderRecord:
    """The network that made a dataset's face features: readers refuse features of any other network."""

    name: str  # "dlib" or "vggface"
    dim: int
    weights_sha256: str  # of the weights file, or RANDOM_WEIGHTS
    has_classifier: bool = False  # VGG-Face's fc8: distillation needs it
    weights: str | None = None  # where preprocessing read the weights: later jobs' default

    @classmethod
    def from_dict(cls, values: dict) -> EmbedderRecord:
        """From a manifest's or a model file's record (model files keep only name, dim and weights_sha256)."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def identity(self) -> dict:
        """What a trained model or decoder records of the features it learned from."""
        return {"name": self.name, "dim": self.dim, "weights_sha256": self.weights_sha256}

    def describe(self) -> str:
        return f"{self.name} features (weights {self.weights_sha256[:12]})"

    def same_network(self, other: EmbedderRecord) -> bool:
        return (self.name, self.weights_sha256) == (other.name, other.weights_sha256)

    def require_same(self, other: EmbedderRecord, mine: str, theirs: str, fix: str) -> None:
        """InputError unless ``other`` is this network: ``mine`` and ``theirs`` say whose each record is."""
        if not self.same_network(other):
            raise InputError(f"{mine} {self.describe()}, but {theirs} {other.describe()}; {fix}")


def weights_sha256(weights: str) -> str:
    """The SHA-256 of a weights file (local or s3://), or RANDOM_WEIGHTS for the random stand-in."""
    if weights == RANDOM_WEIGHTS:
        return RANDOM_WEIGHTS
    from speech2face.hashing import sha256_file

    with storage.local_copy(weights) as path:
        return sha256_file(path)


def check_weights(weights: str | None, recorded: EmbedderRecord, flag: str = "--vggface-weights") -> str:
    """The VGG-Face weights to use: ``weights`` or the ones the manifest names, after checking that they are
    the weights the data was embedded with (a loss through another network would teach noise)."""
    weights = weights or recorded.weights
    if not weights:
        raise InputError(f"{flag}: pass the VGG-Face .h5 the data was embedded with")
    sha = weights_sha256(weights)
    if sha != recorded.weights_sha256:
        raise InputError(
            f"{flag} {weights} (sha256 {sha[:12]}) are not the weights the data was embedded with "
            f"(manifest: {recorded.weights_sha256[:12]}); pass the same .h5 as to pipelines.preprocess, "
            "or re-preprocess"
        )
    return weights


# 5: layout.store_download; 4: layout.store_source; 3: layout.split_partitioned; 2: "version" and "layout"; 1: none
MANIFEST_VERSION = 5


@dataclass
class Counts:
    clips: int = 0
    failures: int = 0
    per_split: dict = field(default_factory=dict)
    failures_per_stage: dict = field(default_factory=dict)
    failures_per_reason: dict = field(default_factory=dict)
    speakers_per_split: dict = field(default_factory=dict)  # where the source knows speakers


@dataclass
class Manifest:
    """``<out>/manifest.json``: what a preprocessing run produced, and with what."""

    embedder: EmbedderRecord
    layout: Layout = field(default_factory=Layout)
    counts: Counts = field(default_factory=Counts)
    config: dict = field(default_factory=dict)
    versions: dict = field(default_factory=dict)
    cpu_s_per_clip: dict = field(default_factory=dict)
    processed_this_run: int = 0
    wall_time_s: float = 0.0
    object_store: dict | None = None  # the run's peak object-store use; None if nothing ran
    downloads: dict | None = None  # bytes per downloaded clip and the formats chosen; None if none was
    ray_job: str | None = None  # the Ray job id of the last run that processed rows: its metrics' `job` tag
    version: int = MANIFEST_VERSION

    @classmethod
    def from_dict(cls, values: dict) -> Manifest:
        version = values.get("version", 1)
        if version > MANIFEST_VERSION:
            raise InputError(
                f"this manifest is version {version}, newer than this code reads ({MANIFEST_VERSION}): "
                "update speech2face"
            )
        config = values.get("config", {})
        if "layout" in values:  # version 2 and later; what a version did not record, its data did not have
            absent = {"split_partitioned": False, "store_source": False, "store_download": False}
            layout = Layout(**absent | values["layout"])
        else:  # version 1: manifests from before these settings existed belong to data that stored the
            # spectrogram and had no landmarks
            layout = Layout(config.get("store_spectrogram", True), config.get("store_landmarks", False), False, False,
                            False)  # fmt: skip
        return cls(
            embedder=EmbedderRecord.from_dict(values["embedder"]),
            layout=layout,
            counts=Counts(**values.get("counts", {})),
            config=config,
            versions=values.get("versions", {}),
            cpu_s_per_clip=values.get("cpu_s_per_clip", {}),
            processed_this_run=values.get("processed_this_run", 0),
            wall_time_s=values.get("wall_time_s", 0.0),
            object_store=values.get("object_store"),
            downloads=values.get("downloads"),
            ray_job=values.get("ray_job"),
            version=version,
        )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self) | {"version": MANIFEST_VERSION}

    @classmethod
    def read(cls, data_uri: str) -> Manifest:
        uri = manifest_uri(data_uri)
        if not storage.exists(uri):
            raise FileNotFoundError(
                f"{uri} not found: the data must be the --out of `python -m pipelines.preprocess` "
                "(a directory or s3:// prefix holding clips/ and manifest.json)"
            )
        return cls.from_dict(storage.read_json(uri))

    @classmethod
    def read_if_exists(cls, data_uri: str) -> Manifest | None:
        return cls.read(data_uri) if storage.exists(manifest_uri(data_uri)) else None

    def write(self, data_uri: str) -> None:
        storage.write_json(manifest_uri(data_uri), self.to_dict())

    def require_splits(self, data_uri: str, splits: tuple[str, ...], why: str) -> None:
        """InputError unless each of ``splits`` has clips."""
        for split in splits:
            if not self.counts.per_split.get(split):
                raise InputError(f"{data_uri} has no '{split}' clips (counts: {self.counts.per_split}); {why}")


def manifest_uri(data_uri: str) -> str:
    return storage.join(data_uri, "manifest.json")
