"""The face decoder's data: faces, their features and landmarks from a preprocess output, as Ray Datasets.

Faces are decoded from ``face_jpeg`` and resized to the decoder's resolution in Ray Data's tasks, so
workers get uint8 tensors. Data preprocessed before ``face_landmarks`` existed gets them from dlib
here, once: the datasets are then materialized in the object store instead of re-read every epoch.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from speech2face import dataset, shards
from speech2face.dataset import FACE_FEATURE, FACE_JPEG, FACE_LANDMARKS, TRAIN, VAL
from speech2face.faces import CROP_SIZE
from speech2face.landmarks import NUM_LANDMARKS, crop_landmarks, mean_shape
from trainer.runtime.clips import read_split

FACE = "face"  # the decoded face crop, uint8 (resolution, resolution, 3): what the workers get instead of the JPEG
COLUMNS = [FACE, FACE_FEATURE, FACE_LANDMARKS]


def has_landmarks(data_uri: str) -> bool:
    """Whether the clips carry ``face_landmarks`` (every file has one schema: preprocess keeps the layout)."""
    files = shards.shard_files(dataset.clips_uri(data_uri))
    if not files:
        raise FileNotFoundError(f"{data_uri}/clips holds no Parquet files: run python -m pipelines.preprocess")
    return FACE_LANDMARKS in shards.read_schema(files[0]).names


def decode_faces(batch: dict, resolution: int) -> dict:
    """A batch with ``face_jpeg`` -> uint8 faces (B, resolution, resolution, 3), features, landmarks (224 px)."""
    crops = np.stack([np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB")) for jpeg in batch[FACE_JPEG]])
    points = batch.get(FACE_LANDMARKS)
    points = crop_landmarks(crops) if points is None else np.asarray(points, np.float32)
    if resolution != CROP_SIZE:
        crops = np.stack(
            [np.asarray(Image.fromarray(c).resize((resolution, resolution), Image.Resampling.LANCZOS)) for c in crops]
        )
    return {
        FACE: crops,
        FACE_FEATURE: np.asarray(batch[FACE_FEATURE], np.float32),
        FACE_LANDMARKS: points.reshape(len(crops), NUM_LANDMARKS, 2),
    }


def decoder_datasets(data_uri: str, resolution: int, splits=(TRAIN, VAL), seed: int = 0, cache: bool = False) -> dict:
    """{split: ray.data.Dataset of COLUMNS}; train rows in a seeded block order; ``cache``: materialized."""
    stored = has_landmarks(data_uri)
    wanted = [FACE_JPEG, FACE_FEATURE, *([FACE_LANDMARKS] if stored else [])]
    datasets = {}
    for split in splits:
        rows = read_split(data_uri, split, wanted).select_columns(wanted)
        if split == TRAIN:
            rows = rows.randomize_block_order(seed=seed)
        rows = rows.map_batches(decode_faces, fn_kwargs={"resolution": resolution}, batch_format="numpy", batch_size=64)
        datasets[split] = rows.materialize() if cache or not stored else rows  # dlib's landmarks: once, not per epoch
    return datasets


def _train_column(data_uri: str, column: str):
    """One stored column of the train rows, shard by shard (only that column's pages are read)."""
    for _, table in shards.read_shards(shards.shard_files(dataset.clips_uri(data_uri), TRAIN), [column], TRAIN):
        yield dataset.tensor_column(table, column) if len(table) else None


def mean_unit_feature(data_uri: str) -> np.ndarray:
    """The mean of the train faces' L2-normalised features (in_dim,): the decoder centres its input on it."""
    from speech2face.metrics import unit_vectors  # torch: not in the Ray Data tasks that decode faces

    total, count = None, 0
    for features in _train_column(data_uri, FACE_FEATURE):
        if features is not None:
            units = unit_vectors(np.asarray(features, np.float64))
            total = units.sum(axis=0) + (0 if total is None else total)
            count += len(units)
    if count == 0:
        raise ValueError(f"{data_uri} has no train faces to take the mean feature of")
    return (total / count).astype(np.float32)


def mean_landmarks(data_uri: str, train) -> np.ndarray:
    """The train faces' mean shape (68, 2) (with their mirror images): from the stored column, file by file,
    or from ``train`` (the materialized dataset) where dlib computed them."""
    if has_landmarks(data_uri):
        batches = _train_column(data_uri, FACE_LANDMARKS)
    else:
        batches = (b[FACE_LANDMARKS] for b in train.iter_batches(batch_size=4096, batch_format="numpy"))
    total, count = np.zeros((NUM_LANDMARKS, 2), np.float64), 0
    for points in batches:
        if points is not None and len(points):
            total += mean_shape(np.asarray(points, np.float32).reshape(-1, NUM_LANDMARKS, 2)) * len(points)
            count += len(points)
    if count == 0:
        raise ValueError(f"{data_uri} has no train faces to take the mean shape of")
    return (total / count).astype(np.float32)
