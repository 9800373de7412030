"""Reading the preprocess output: the manifest, its embedder check, and the clips of a split.

``split_datasets`` gives lazy Ray Datasets for training (each worker then streams its own shard);
``read_split`` reads one split with pyarrow only, for evaluation and prediction without Ray.
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

TRAIN_COLUMNS = ["spectrogram", "face_feature"]
VAL_COLUMNS = ["spectrogram", "face_feature", "ytid_key", "clip_key"]


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


def split_datasets(data_uri: str, splits=("train", "val"), seed: int = 0, cache: bool = False) -> dict:
    """{split: ray.data.Dataset} of numeric columns only (train: spectrogram + face_feature).

    Lazy by default: every epoch streams the Parquet files again. ``cache`` materializes each split
    once in Ray's object store (one shared copy, not one per worker), which saves the seconds each
    epoch spends starting the reads; only for data that fits in the object store.
    """
    import ray.data
    from ray.data.expressions import col

    filesystem, path = storage.resolve(storage.join(data_uri, "clips"))
    base = ray.data.read_parquet(path, filesystem=filesystem).select_columns(
        ["clip_id", "ytid", "split", "spectrogram", "face_feature"]
    )
    datasets = {}
    for split in splits:
        rows = base.filter(expr=col("split") == split)
        if split == "train":
            datasets[split] = rows.select_columns(TRAIN_COLUMNS).randomize_block_order(seed=seed)
        else:
            datasets[split] = rows.map_batches(_with_keys, batch_format="pyarrow").select_columns(VAL_COLUMNS)
        if cache:
            datasets[split] = _materialize_in_order(datasets[split])
    return datasets


def _materialize_in_order(dataset):
    """Materialize with blocks in read order, not completion order, so a seeded run repeats exactly.
    A Dataset keeps its own copy of the DataContext, so the option is set on that copy."""
    dataset.context.execution_options.preserve_order = True
    cached = dataset.materialize()
    cached.context.execution_options.preserve_order = True
    return cached


def read_split(data_uri: str, split: str, columns: list[str]) -> pa.Table:
    """All rows of one split, given columns only, sorted by clip_id (a fixed order for every reader)."""
    wanted = list(dict.fromkeys(["clip_id", "split", *columns]))
    tables = []
    for file_uri in storage.list_files(storage.join(data_uri, "clips"), suffix=".parquet"):
        table = pq.read_table(io.BytesIO(storage.read_bytes(file_uri)), columns=wanted)
        tables.append(table.filter(pc.equal(table["split"], split)))
    if not tables or sum(len(t) for t in tables) == 0:
        found = storage.list_files(storage.join(data_uri, "clips"), suffix=".parquet")
        raise ValueError(
            f"no '{split}' clips in {data_uri} ({len(found)} Parquet files); preprocess a CSV into this split "
            f"(for test: `python -m pipelines.preprocess --csv avspeech_test.csv --split-name test --out {data_uri}`)"
        )
    table = pa.concat_tables(tables)
    return table.take(pc.sort_indices(table, [("clip_id", "ascending")]))


def tensor_column(table: pa.Table, name: str) -> np.ndarray:
    """A fixed_shape_tensor column as one numpy array (rows, *shape)."""
    column = table[name].combine_chunks()
    return column.to_numpy_ndarray() if hasattr(column, "to_numpy_ndarray") else np.stack(column.to_pylist())
