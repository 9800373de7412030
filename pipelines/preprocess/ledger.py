"""What an output already holds, and so what a run still has to do: resume is a matter of reading it back.

The CSVs give the valid rows (their parse failures are written again each run, one file per CSV, so
they are never duplicated); ``clips/`` holds the rows done; ``failures/`` the rows that failed at a
later stage, skipped unless retried.
"""

from __future__ import annotations

import dataclasses
import hashlib
import sys

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.failures import failures_table, parquet_bytes
from pipelines.preprocess.config import PreprocessConfig
from speech2face import shards, sources, storage
from speech2face.avspeech import failure_row, parse_csv
from speech2face.dataset import (
    CLIP_ID,
    ERROR,
    FAILURE_COLUMNS,
    PARSE,
    REASON,
    SEGMENT_COLUMNS,
    SOURCE_COLUMNS,
    STAGE,
    TEST,
)


def read_columns(uri: str, columns: list[str]) -> pd.DataFrame:
    """The given columns of every Parquet file below ``uri`` (only their pages are read); unreadable files
    (a killed write) are deleted. A column that an older file lacks (failures' ``reason``) reads as null."""
    return shards.read_table(uri, columns, on_unreadable=_remove_unreadable).to_pandas()


def _remove_unreadable(file_uri: str, error: Exception) -> None:
    print(f"[preprocess] removing unreadable shard {file_uri}: {error}", file=sys.stderr)
    storage.delete(file_uri)


def _is_parse_file(file_uri: str) -> bool:
    return file_uri.rsplit("/", 1)[-1].startswith(f"{PARSE}-")


def read_segments(config: PreprocessConfig, failures_uri: str, write_failures: bool = True) -> list:
    """The valid rows of the source (and of --test-csv, as split 'test'); each input's parse failures (and a
    VoxCeleb2 tree's skipped entries) go to failures/, one file per input, rewritten each run."""
    inputs = [(source_uri(config), config.split_name)] + ([(config.test_csv, TEST)] if config.test_csv else [])
    if config.media_root:
        sources.require_folder("--media-root", config.media_root)
    segments, seen = [], set()  # a set, not a dict: millions of clip ids
    for index, (uri, split_name) in enumerate(inputs):
        rows, failures = parse_input(config, uri, split_name)
        for segment in rows:  # a segment in both CSVs is kept once, where it came first
            if segment.clip_id in seen:
                earlier = ", ".join(uri for uri, _ in inputs[:index])
                failures.append(
                    failure_row(
                        segment.clip_id,
                        segment.ytid,
                        segment.start,
                        segment.end,
                        PARSE,
                        f"{uri}: duplicate of a row of {earlier}",
                    )
                )
            else:
                seen.add(segment.clip_id)
                segments.append(segment)
        if write_failures:
            key = hashlib.sha256(f"{uri}|{config.limit}".encode()).hexdigest()[:16]
            file_uri = storage.join(failures_uri, f"{PARSE}-{key}.parquet")
            storage.write_bytes(file_uri, parquet_bytes(failures_table(failures)))
    return segments


def source_uri(config: PreprocessConfig) -> str:
    return config.csv or config.voxceleb2 or config.media_csv


def parse_input(config: PreprocessConfig, uri: str, split_name: str | None) -> tuple[list, list[dict]]:
    """(segments, parse failures) of one input: an AVSpeech CSV, a VoxCeleb2 tree or a media CSV."""
    if config.source == "voxceleb2":
        segments, failures = sources.voxceleb2_segments(uri, config.val_fraction, config.test_fraction)
        segments = segments[: config.limit]
    else:
        text = storage.read_bytes(uri).decode("utf-8", errors="replace")
        if config.limit:  # without it, no list of millions of lines
            text = "\n".join(text.splitlines()[: config.limit + (config.source == "media_csv")])
        if config.source == "media_csv":
            segments, failures = sources.media_csv_segments(text, uri, config.val_fraction, config.test_fraction)
        else:
            segments, failures = parse_csv(text, config.val_fraction, split_name, config.split_by)
            if config.media_root:
                segments = sources.with_media(segments, config.media_root, config.media_pattern)
        del text
    if split_name:
        segments = [dataclasses.replace(segment, split=split_name) for segment in segments]
    return segments, failures


def clear_failures(failures_uri: str, retry: str) -> None:
    """Forget earlier stage failures that will be retried: all of them, or those of the given reasons.

    A file keeping some rows is rewritten in place (one PUT on S3), so a crash never duplicates a row.
    """
    reasons = None if retry == "all" else set(retry.split(","))
    files = [f for f in shards.shard_files(failures_uri) if not _is_parse_file(f)]
    for file_uri, table in shards.read_shards(files, list(FAILURE_COLUMNS), on_unreadable=_remove_unreadable):
        keep = [] if reasons is None else [row for row in table.to_pylist() if row.get(REASON) not in reasons]
        if not keep:
            storage.delete(file_uri)
        elif len(keep) < table.num_rows:
            storage.write_bytes(file_uri, parquet_bytes(failures_table(keep)))


def stage_failures(failures_uri: str, columns: tuple[str, ...] = (CLIP_ID, STAGE)) -> pd.DataFrame:
    """Earlier failures at a stage after parsing (parse failures are recomputed from the CSV every run)."""
    failed = read_columns(failures_uri, list(columns))
    return failed[failed[STAGE] != PARSE]


def done_clip_ids(clips_uri: str) -> pa.Array:
    """The ids of the clips already in clips/, as one Arrow array: millions of ids in a fraction of a set's memory."""
    return shards.read_table(clips_uri, [CLIP_ID], on_unreadable=_remove_unreadable)[CLIP_ID].combine_chunks()


def among(clip_ids, value_set) -> np.ndarray:
    """A boolean mask: which of ``clip_ids`` are in ``value_set`` (an Arrow hash lookup, not a Python set)."""
    found = pc.is_in(pa.array(clip_ids, pa.string()), value_set=pa.array(value_set, pa.string()))
    return found.to_numpy(zero_copy_only=False)


def plan(config: PreprocessConfig, segments: list, clips_uri: str, failures_uri: str) -> pd.DataFrame:
    """Rows still to do: not yet in clips/, and not in failures/ unless retried (then those are cleared)."""
    if config.retry_failures:
        clear_failures(failures_uri, config.retry_failures)
    done = done_clip_ids(clips_uri)
    failed = stage_failures(failures_uri)[CLIP_ID].unique()
    ids = [s.clip_id for s in segments]
    skipped = among(ids, done) | among(ids, failed)
    del ids
    todo = [s for s, skip in zip(segments, skipped, strict=True) if not skip]
    print(
        f"[preprocess] {len(segments)} valid rows: {len(done)} already in clips/, "
        f"{len(failed)} failed earlier (skipped), {len(todo)} to process"
    )
    return todo_frame(todo)


def todo_frame(segments: list) -> pd.DataFrame:
    """The rows the stages get: each segment's columns, and its failure columns still empty."""
    rows = [s.as_row() for s in segments]
    columns = list(SEGMENT_COLUMNS + SOURCE_COLUMNS)
    return pd.DataFrame(rows, columns=columns).assign(**{STAGE: "", ERROR: "", REASON: ""})
