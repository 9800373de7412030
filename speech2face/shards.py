"""Reading a preprocess output's Parquet shards with only the bytes a reader needs.

A shard is opened as a random-access file on its filesystem (local or S3), so pyarrow reads its
footer and then only the pages of the columns asked for (ranged GETs on S3), never the whole object:
the resume plan reads ``clip_id`` of a 256 MB shard, not its audio. Where the output is partitioned
by split (``clips/split=val/…``, see ``speech2face.dataset``), a split's reader opens only that
split's files; in older, unpartitioned outputs it filters rows by the ``split`` column. A few shards
are read at once in threads (pyarrow releases the GIL), each read retried as a whole on transient S3
errors (``storage.retried``), and results come back in file order.
"""

from __future__ import annotations

import concurrent.futures
import posixpath
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from speech2face import storage
from speech2face.dataset import SPLIT

PARALLEL_READS = 8  # shards in flight: S3 latency hidden, memory bounded to a few shards' columns
FOOTER_READ = 20 << 10  # a shard's footer: ~2.7 KB a row group, 5-6 row groups of 256 clips a ~256 MB shard
MAGIC = b"PAR1"  # a Parquet file's first and last four bytes
ROW = "__row__"  # not stored: a row's position in its shard, asked for like a column, for ``read_rows_at`` later


def split_of(file_uri: str) -> str | None:
    """The split of a shard of a partitioned output (its ``split=<name>`` directory), else None."""
    parent = posixpath.basename(posixpath.dirname(file_uri.replace("\\", "/")))
    key, _, value = parent.partition("=")
    return value if key == SPLIT and value else None


def shard_files(uri: str, split: str | None = None) -> list[str]:
    """The Parquet files below ``uri`` that can hold rows of ``split`` (None: all of them), sorted."""
    return storage.list_files(uri, suffix=".parquet") if split is None else split_files(uri, split)[0]


def split_files(uri: str, split: str) -> tuple[list[str], bool]:
    """(the files that can hold rows of ``split``, whether those rows must still be picked by the ``split``
    column): a partitioned output's split directory, else every file (an older output, or no such directory)."""
    files = storage.list_files(uri, suffix=".parquet")
    mine = [f for f in files if split_of(f) == split]
    return (mine, False) if mine else (files, True)


def read_schema(file_uri: str) -> pa.Schema:
    """A shard's schema, from its footer alone (a few KB of a 256 MB file)."""
    filesystem, path = storage.resolve(file_uri)

    def read() -> pa.Schema:
        with filesystem.open_input_file(path) as handle:
            return _open(handle).schema_arrow

    return storage.retried(read, file_uri)


def _open(handle) -> pq.ParquetFile:
    """The file, its footer read in one read of ``FOOTER_READ`` bytes (pyarrow's own first read is 64 KB:
    for a resume plan over thousands of shards that is more than the ids it came for)."""
    size = handle.size()
    tail = handle.read_at(min(size, FOOTER_READ), max(0, size - FOOTER_READ))
    footer_size = int.from_bytes(tail[-8:-4], "little") + 8 if tail[-4:] == MAGIC else size + 1
    if footer_size + 4 > size:  # not a whole Parquet file: pyarrow says what is wrong with it
        return pq.ParquetFile(handle)
    if footer_size > len(tail):
        tail = handle.read_at(footer_size, size - footer_size)
    # the footer is a file of its own once it has a leading magic: "PAR1" + metadata + length + "PAR1"
    metadata = pq.read_metadata(pa.BufferReader(MAGIC + tail[-footer_size:]))
    return pq.ParquetFile(handle, metadata=metadata, pre_buffer=True)  # a column's pages in few ranged reads


def read_shard(file_uri: str, columns: list[str], split: str | None = None) -> pa.Table:
    """``columns`` of one shard (a column the shard lacks, such as an older file's, reads as nulls; ``split``
    of a partitioned shard comes from its path; ``ROW`` is each row's position), rows of ``split`` only."""
    filesystem, path = storage.resolve(file_uri)
    path_split = split_of(file_uri)
    filter_rows = split is not None and path_split is None

    def read() -> pa.Table:
        with filesystem.open_input_file(path) as handle:
            file = _open(handle)
            present = set(file.schema_arrow.names)
            wanted = [c for c in dict.fromkeys([*columns, *([SPLIT] if filter_rows else [])]) if c in present]
            return file.read(columns=wanted)

    table = storage.retried(read, file_uri)
    if ROW in columns:
        table = table.append_column(ROW, pa.array(np.arange(len(table), dtype=np.int64)))
    if filter_rows:
        table = table.filter(pc.equal(table[SPLIT], split))
    elif split is not None and path_split != split:
        table = table.slice(0, 0)
    for name in columns:
        if name not in table.column_names:
            fill = pa.array([path_split] * len(table), pa.string()) if name == SPLIT and path_split else None
            table = table.append_column(name, fill if fill is not None else pa.nulls(len(table)))
    return table.select(columns)


def read_rows_at(file_uri: str, rows: Sequence[int], columns: list[str]) -> pa.Table:
    """``columns`` of the rows at the given positions (``ROW``) of one shard, in that order: only the row
    groups holding them are read (a gallery's top faces, not the shard's JPEGs)."""
    filesystem, path = storage.resolve(file_uri)

    def read() -> pa.Table:
        with filesystem.open_input_file(path) as handle:
            file = _open(handle)
            sizes = np.array([file.metadata.row_group(i).num_rows for i in range(file.num_row_groups)])
            starts = np.concatenate([[0], np.cumsum(sizes)])
            positions = np.asarray(rows, dtype=np.int64)
            groups = np.searchsorted(starts, positions, side="right") - 1
            chosen = np.unique(groups)
            table = file.read_row_groups(chosen.tolist(), columns=columns)
            chosen_starts = dict(zip(chosen.tolist(), np.concatenate([[0], np.cumsum(sizes[chosen])]), strict=False))
            return table.take(
                [chosen_starts[g] + p - starts[g] for g, p in zip(groups.tolist(), positions, strict=True)]
            )

    return storage.retried(read, file_uri)


def read_shards(
    files: Iterable[str],
    columns: list[str],
    split: str | None = None,
    on_unreadable: Callable[[str, Exception], None] | None = None,
    parallel: int = PARALLEL_READS,
) -> Iterator[tuple[str, pa.Table]]:
    """(file, its table) for every file, in order, ``parallel`` files in flight at most.

    ``on_unreadable(file, error)`` is called for a file that is not valid Parquet (a killed writer's);
    without it, the error is raised. Errors reading a file, such as a lasting S3 outage, are raised."""

    def read(file_uri: str) -> pa.Table | None:
        try:
            return read_shard(file_uri, columns, split)
        except (pa.ArrowInvalid, OSError) as error:
            if on_unreadable is None or _is_storage_error(error):
                raise
            on_unreadable(file_uri, error)
            return None

    with concurrent.futures.ThreadPoolExecutor(parallel, thread_name_prefix="shard-read") as pool:
        in_flight: deque = deque()
        for file_uri in files:
            in_flight.append((file_uri, pool.submit(read, file_uri)))
            if len(in_flight) >= parallel:
                yield from _done(in_flight.popleft())
        while in_flight:
            yield from _done(in_flight.popleft())


def _done(entry) -> Iterator[tuple[str, pa.Table]]:
    file_uri, future = entry
    table = future.result()
    if table is not None:
        yield file_uri, table


def _is_storage_error(error: Exception) -> bool:
    """An error of the store (missing file, network), not of the file's bytes: never a reason to delete it."""
    return isinstance(error, FileNotFoundError) or storage.is_transient(error)


def read_table(
    uri: str,
    columns: list[str],
    split: str | None = None,
    on_unreadable: Callable[[str, Exception], None] | None = None,
) -> pa.Table:
    """``columns`` of every row (of ``split``) below ``uri``, as one table in file order."""
    tables = [t for _, t in read_shards(shard_files(uri, split), columns, split, on_unreadable)]
    if not tables:
        return pa.table({name: pa.array([], pa.string()) for name in columns})
    return pa.concat_tables(tables, promote_options="permissive")
