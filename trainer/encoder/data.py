"""The voice encoder's data: the clips of each split as Ray Datasets, waveform in, face feature out.

``split_datasets`` gives Ray Datasets for training (each worker then streams its own shard): lazy, or
read once with pyarrow (``read_splits``) and cached in the object store for small data.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from speech2face import dataset, shards
from speech2face.dataset import CLIP_ID, FACE_FEATURE, TRAIN, VAL, WAVEFORM, YTID
from trainer.runtime.clips import read_split

# The int16 waveform, not a stored spectrogram: 3.2x fewer bytes to read and ship, and the trainer
# computes the spectrogram on its device (speech2face.audio.model_input). Data written with
# --store-spectrogram has the waveform too, so it trains the same way.
TRAIN_COLUMNS = [WAVEFORM, FACE_FEATURE]
# Strings cannot become torch tensors: a val row's video and clip travel as int64 keys (``stable_keys``).
YTID_KEY, CLIP_KEY = "ytid_key", "clip_key"
VAL_COLUMNS = [WAVEFORM, FACE_FEATURE, YTID_KEY, CLIP_KEY]


def stable_keys(strings) -> np.ndarray:
    """int64 keys from the first 8 bytes of SHA-256: equal strings, equal keys, in every process."""
    return np.array(
        [int.from_bytes(hashlib.sha256(str(s).encode()).digest()[:8], "big", signed=True) for s in strings],
        dtype=np.int64,
    )


def _with_keys(table: pa.Table) -> pa.Table:
    table = table.append_column(YTID_KEY, pa.array(stable_keys(table[YTID].to_pylist())))
    return table.append_column(CLIP_KEY, pa.array(stable_keys(table[CLIP_ID].to_pylist())))


def split_datasets(
    data_uri: str, splits=(TRAIN, VAL), seed: int = 0, cache: bool = False, audio_column: str = WAVEFORM
) -> dict:
    """{split: ray.data.Dataset} of numeric columns only (train: waveform + face_feature).

    ``audio_column="spectrogram"`` streams a stored spectrogram instead (data written with
    --store-spectrogram): the trainer's input before it read waveforms, which benchmarks/data_loading.py
    measures against.

    Lazy by default: every epoch streams the Parquet files again, with the train blocks in a seeded
    order. ``cache`` is for data that fits in memory: the splits are read once, here, with pyarrow and
    put into Ray's object store (one shared copy, not one per worker), train rows in a seeded order.
    That saves the seconds each epoch spends starting reads, and the seconds Ray Data's read tasks
    take to start at all (2-5 s a split on 2 cores, longer than reading a small dataset).
    """
    if cache:
        return _cached_datasets(data_uri, splits, seed)
    train_columns = [audio_column if c == WAVEFORM else c for c in TRAIN_COLUMNS]
    datasets = {}
    for split in splits:
        if split == TRAIN:
            datasets[split] = read_split(data_uri, split, train_columns).randomize_block_order(seed=seed)
        else:
            rows = read_split(data_uri, split, [CLIP_ID, YTID, *train_columns])
            datasets[split] = rows.map_batches(_with_keys, batch_format="pyarrow").select_columns(VAL_COLUMNS)
    return datasets


def _cached_datasets(data_uri: str, splits, seed: int) -> dict:
    import ray.data

    tables = read_splits(data_uri, splits, [YTID, *TRAIN_COLUMNS])
    datasets = {}
    for split, table in tables.items():
        if split == TRAIN:
            order = np.random.default_rng(seed).permutation(len(table))
            datasets[split] = ray.data.from_arrow(table.take(order).select(TRAIN_COLUMNS))
        else:
            datasets[split] = ray.data.from_arrow(_with_keys(table).select(VAL_COLUMNS))
    return datasets


def read_splits(data_uri: str, splits, columns: list[str]) -> dict[str, pa.Table]:
    """{split: its rows, given columns only, sorted by clip_id} (a fixed order for every reader)."""
    wanted = list(dict.fromkeys([CLIP_ID, *columns]))
    tables = {}
    for split in splits:
        table = shards.read_table(dataset.clips_uri(data_uri), wanted, split)
        tables[split] = table.take(pc.sort_indices(table, [(CLIP_ID, "ascending")])) if len(table) else pa.table({})
    return tables
