"""Reading the preprocess output: the manifest, its embedder check, and the clips of a split.

``split_datasets`` gives Ray Datasets for training (each worker then streams its own shard): lazy, or
read once with pyarrow (``read_splits``) and cached in the object store for small data.
String columns cannot become torch tensors, so ytid and clip_id travel as stable int64 keys.
"""

from __future__ import annotations

import hashlib
import io

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from speech2face import storage

# The int16 waveform, not a stored spectrogram: 3.2x fewer bytes to read and ship, and the trainer
# computes the spectrogram on its device (speech2face.audio.model_input). Data written with
# --store-spectrogram has the waveform too, so it trains the same way.
TRAIN_COLUMNS = ["waveform", "face_feature"]
VAL_COLUMNS = ["waveform", "face_feature", "ytid_key", "clip_key"]


def manifest_of(data_uri: str) -> dict:
    uri = storage.join(data_uri, "manifest.json")
    if not storage.exists(uri):
        raise FileNotFoundError(
            f"{uri} not found: --data must be the --out of `python -m pipelines.preprocess` "
            "(a directory or s3:// prefix holding clips/ and manifest.json)"
        )
    return storage.read_json(uri)


def stable_keys(strings) -> np.ndarray:
    """int64 keys from the first 8 bytes of SHA-256: equal strings, equal keys, in every process."""
    return np.array(
        [int.from_bytes(hashlib.sha256(str(s).encode()).digest()[:8], "big", signed=True) for s in strings],
        dtype=np.int64,
    )


def _with_keys(table: pa.Table) -> pa.Table:
    table = table.append_column("ytid_key", pa.array(stable_keys(table["ytid"].to_pylist())))
    return table.append_column("clip_key", pa.array(stable_keys(table["clip_id"].to_pylist())))


def split_datasets(data_uri: str, splits=("train", "val"), seed: int = 0, cache: bool = False,
                   audio_column: str = "waveform") -> dict:  # fmt: skip
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
    import ray.data

    if cache:
        return _cached_datasets(data_uri, splits, seed)
    from ray.data.expressions import col

    filesystem, path = storage.resolve(storage.join(data_uri, "clips"))
    train_columns = [audio_column if c == "waveform" else c for c in TRAIN_COLUMNS]
    base = ray.data.read_parquet(path, filesystem=filesystem).select_columns(
        ["clip_id", "ytid", "split", *train_columns]
    )
    datasets = {}
    for split in splits:
        rows = base.filter(expr=col("split") == split)
        if split == "train":
            datasets[split] = rows.select_columns(train_columns).randomize_block_order(seed=seed)
        else:
            datasets[split] = rows.map_batches(_with_keys, batch_format="pyarrow").select_columns(VAL_COLUMNS)
    return datasets


def _cached_datasets(data_uri: str, splits, seed: int) -> dict:
    import ray.data

    tables = read_splits(data_uri, splits, ["ytid", *TRAIN_COLUMNS])
    datasets = {}
    for split, table in tables.items():
        if split == "train":
            order = np.random.default_rng(seed).permutation(len(table))
            datasets[split] = ray.data.from_arrow(table.take(order).select(TRAIN_COLUMNS))
        else:
            datasets[split] = ray.data.from_arrow(_with_keys(table).select(VAL_COLUMNS))
    return datasets


def read_splits(data_uri: str, splits, columns: list[str]) -> dict[str, pa.Table]:
    """{split: its rows, given columns only, sorted by clip_id} (a fixed order for every reader), in one pass."""
    wanted = list(dict.fromkeys(["clip_id", "split", *columns]))
    parts: dict[str, list[pa.Table]] = {split: [] for split in splits}
    for file_uri in storage.list_files(storage.join(data_uri, "clips"), suffix=".parquet"):
        table = pq.read_table(io.BytesIO(storage.read_bytes(file_uri)), columns=wanted)
        for split in splits:
            parts[split].append(table.filter(pc.equal(table["split"], split)))
    tables = {}
    for split, found in parts.items():
        table = pa.concat_tables(found) if found else pa.table({})
        tables[split] = table.take(pc.sort_indices(table, [("clip_id", "ascending")])) if len(table) else table
    return tables


def tensor_column(table: pa.Table, name: str) -> np.ndarray:
    """A fixed_shape_tensor column as one numpy array (rows, *shape)."""
    column = table[name].combine_chunks()
    return column.to_numpy_ndarray() if hasattr(column, "to_numpy_ndarray") else np.stack(column.to_pylist())
