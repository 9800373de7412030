"""The failures/ table: one row per clip that did not make it, with its stage, error and reason.

Kept apart from pipelines.stages (which imports torch and the face models) so that reading and
planning, --dry-run included, stay light on a driver with millions of rows.
"""

from __future__ import annotations

import hashlib
import io

import pyarrow as pa
import pyarrow.parquet as pq

from speech2face import storage
from speech2face.dataset import CLIP_ID, FAILURE_COLUMNS, FAILURE_SCHEMA, REASON


def write_failures(rows: list[dict], failures_uri: str, name_prefix: str) -> None:
    """One small Parquet file per call, named by its clips: a batch that Ray runs again (its node died after
    this write, e.g. a reclaimed spot node) overwrites its own file instead of recording its failures twice.
    A clip is in one batch of a run, so two calls of a run never share a name."""
    if not rows:
        return
    table = failures_table(rows)
    digest = hashlib.sha256("\n".join(sorted(str(row[CLIP_ID]) for row in rows)).encode()).hexdigest()[:32]
    storage.write_bytes(storage.join(failures_uri, f"{name_prefix}-{digest}.parquet"), parquet_bytes(table))


def failures_table(rows: list[dict]) -> pa.Table:
    """``reason`` is null where there is none (parse and non-download failures)."""
    records = [{c: row.get(c) for c in FAILURE_COLUMNS} | {REASON: row.get(REASON) or None} for row in rows]
    return pa.Table.from_pylist(records, schema=FAILURE_SCHEMA)


def parquet_bytes(table: pa.Table) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()
