"""Data as earlier versions wrote it: what every reader must still take."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import torch

from speech2face import audio, dataset


def make_old_layout(data: Path, out: Path | None = None) -> Path:
    """``data`` (or a copy at ``out``) in the oldest layout: clips with the stored float16 ``spectrogram`` and
    without ``face_landmarks``, and a version-1 manifest.json (no "version", no "layout", and a config from
    before --store-spectrogram and landmarks existed)."""
    if out is not None:
        shutil.copytree(data, out)
        data = out
    for path in sorted((data / "clips").glob("*.parquet")):
        path.chmod(0o644)
        table = pq.read_table(path)
        if dataset.FACE_LANDMARKS in table.column_names:
            table = table.drop_columns([dataset.FACE_LANDMARKS])
        if dataset.SPECTROGRAM not in table.column_names:
            waves = torch.from_numpy(dataset.tensor_column(table, dataset.WAVEFORM))
            stored = dataset.tensor_array(audio.model_input(waves).to(torch.float16).numpy())
            table = table.add_column(table.schema.get_field_index(dataset.WAVEFORM) + 1, dataset.SPECTROGRAM, stored)
        pq.write_table(table, path)
    manifest_path = data / "manifest.json"
    manifest_path.chmod(0o644)
    manifest = json.loads(manifest_path.read_text())
    for key in ("version", "layout"):
        manifest.pop(key, None)
    for key in ("store_spectrogram", "store_landmarks"):
        manifest["config"].pop(key, None)
    manifest_path.write_text(json.dumps(manifest, indent=2))
    return data
