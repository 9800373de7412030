"""Data as earlier versions wrote it: what every reader must still take."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import torch

from speech2face import audio, dataset, shards


def make_old_layout(data: Path, out: Path | None = None) -> Path:
    """``data`` (or a copy at ``out``) in the oldest layout: every split's clips mixed in clips/*.parquet with a
    ``split`` column, the stored float16 ``spectrogram``, no ``face_landmarks``, no ``speaker`` or ``media``, and a
    version-1 manifest.json
    (no "version", no "layout", and a config from before --store-spectrogram and landmarks existed)."""
    if out is not None:
        shutil.copytree(data, out)
        data = out
    clips = data / "clips"
    tables = []
    for path in sorted(clips.rglob("*.parquet")):
        table = pq.read_table(path)
        if split := shards.split_of(str(path)):
            table = table.append_column(dataset.SPLIT, pa.array([split] * len(table), pa.string()))
        tables.append(table)
    for path in [data, clips, *clips.rglob("*")]:  # a copy of a read-only fixture
        path.chmod(0o755 if path.is_dir() else 0o644)
    shutil.rmtree(clips)
    clips.mkdir()
    table = pa.concat_tables(tables, promote_options="permissive").sort_by(dataset.CLIP_ID)  # splits interleaved
    newer = (dataset.FACE_LANDMARKS, *dataset.SOURCE_COLUMNS, *dataset.DOWNLOAD_COLUMNS)
    table = table.drop_columns([name for name in newer if name in table.column_names])
    if dataset.SPECTROGRAM not in table.column_names:
        waves = torch.from_numpy(dataset.tensor_column(table, dataset.WAVEFORM))
        stored = dataset.tensor_array(audio.model_input(waves).to(torch.float16).numpy())
        table = table.add_column(table.schema.get_field_index(dataset.WAVEFORM) + 1, dataset.SPECTROGRAM, stored)
    half = len(table) // 2
    for index, part in enumerate((table.slice(0, half), table.slice(half))):
        pq.write_table(part, clips / f"part-{index}.parquet")
    manifest_path = data / "manifest.json"
    manifest_path.chmod(0o644)
    manifest = json.loads(manifest_path.read_text())
    for key in ("version", "layout"):
        manifest.pop(key, None)
    for key in ("store_spectrogram", "store_landmarks"):
        manifest["config"].pop(key, None)
    manifest_path.write_text(json.dumps(manifest, indent=2))
    return data
