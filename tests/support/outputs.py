"""Reading a preprocess output back in tests, and the preprocess command line the tests run."""

from __future__ import annotations

import contextlib
import io
import sys

import pyarrow as pa
import pyarrow.parquet as pq

from speech2face import dataset, shards, storage

TENSOR_COLUMNS = (dataset.WAVEFORM, dataset.SPECTROGRAM, dataset.FACE_FEATURE, dataset.FACE_LANDMARKS)


def read_file(file_uri: str) -> pa.Table:
    """A whole Parquet file, by a plain GET, with ``split`` from its path where the output is partitioned."""
    table = pq.read_table(io.BytesIO(storage.read_bytes(file_uri)))
    if split := shards.split_of(file_uri):
        table = table.append_column(dataset.SPLIT, pa.array([split] * len(table), pa.string()))
    return table


def read_all(uri: str) -> list[dict]:
    """Every row of every Parquet file below ``uri``."""
    rows = []
    for file_uri in storage.list_files(uri, suffix=".parquet"):
        rows += read_file(file_uri).to_pylist()
    return rows


def read_clips(out: str) -> dict[str, dict]:
    """clip_id -> row of ``out``'s clips/, with tensors as numpy arrays; a duplicate clip fails."""
    clips = {}
    for file_uri in storage.list_files(dataset.clips_uri(out), suffix=".parquet"):
        table = read_file(file_uri)
        tensors = {name: dataset.tensor_column(table, name) for name in TENSOR_COLUMNS if name in table.column_names}
        for i, row in enumerate(table.drop_columns(list(tensors)).to_pylist()):
            assert row[dataset.CLIP_ID] not in clips, f"duplicate clip {row[dataset.CLIP_ID]}"
            clips[row[dataset.CLIP_ID]] = row | {name: values[i] for name, values in tensors.items()}
    return clips


def readable_clip_ids(out: str) -> list[str]:
    """The clip ids of the shards that read whole now (a shard being written, or S3 down, does not)."""
    ids = []
    for file_uri in storage.list_files(dataset.clips_uri(out), suffix=".parquet"):
        with contextlib.suppress(pa.ArrowInvalid, OSError):
            table = pq.read_table(io.BytesIO(storage.read_bytes(file_uri)), columns=[dataset.CLIP_ID])
            ids += table[dataset.CLIP_ID].to_pylist()
    return ids


def preprocess_command(csv, out, base_url, *extra) -> list[str]:
    """``python -m pipelines.preprocess`` over a loopback corpus, with dlib and the test's small resources."""
    return [sys.executable, "-m", "pipelines.preprocess", "--csv", str(csv), "--out", out,
            "--url-template", base_url + "/{ytid}.mp4", "--face-embedder", "dlib", "--cpus-per-actor", "0.5",
            "--batch-size", "2", *extra]  # fmt: skip
