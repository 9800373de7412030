"""Running a trained encoder outside Ray: batches of waveforms in, face features out.

Shared by trainer.evaluate and trainer.predict. Reads Parquet shard by shard, so a large split's
audio is never held in memory (only the small outputs and JPEG crops are kept).
"""

from __future__ import annotations

import io
import sys

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from speech2face import audio, storage
from speech2face.audio import AudioError
from trainer.data import manifest_of, tensor_column


class InputError(ValueError):
    """Bad user input (paths, splits, mismatched data and model): the CLIs print it and exit with 2."""


def run_cli(action, args) -> int:
    """``action(args)`` for a CLI's main: bad input is one line on stderr and exit code 2, not a traceback."""
    try:
        action(args)
    except AudioError as error:
        print(f"error: cannot use this audio: {error}", file=sys.stderr)
        return 2
    except (InputError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


def check_same_embedder(model_meta: dict, data_uri: str) -> dict:
    """The data's manifest; refuses face features from another embedder than the model was trained on."""
    manifest = manifest_of(data_uri)
    trained, data = model_meta.get("embedder") or {}, manifest["embedder"]
    if (trained.get("name"), trained.get("weights_sha256")) != (data["name"], data["weights_sha256"]):
        raise InputError(
            f"the model was trained on {trained.get('name')} features "
            f"(weights {str(trained.get('weights_sha256'))[:12]}) "
            f"but {data_uri} holds {data['name']} features (weights {data['weights_sha256'][:12]}); "
            "retrieval only makes sense in the same feature space: use data preprocessed with the same embedder"
        )
    return manifest


@torch.no_grad()
def embed(model, waveforms, batch_size: int = 16) -> np.ndarray:
    """(N, samples) int16 or float waveforms -> float32 (N, out_dim) predicted face features.

    Spectrograms are computed batch by batch on the model's device (``audio.model_input``).
    """
    device = next(model.parameters()).device
    outputs = []
    for start in range(0, len(waveforms), batch_size):
        batch = torch.from_numpy(np.ascontiguousarray(waveforms[start : start + batch_size])).to(device)
        outputs.append(model(audio.model_input(batch)).float().cpu().numpy())
    return np.concatenate(outputs) if outputs else np.empty((0, model.out_dim), np.float32)


def read_rows(data_uri: str, split: str | None, columns: list[str], model=None, batch_size: int = 16) -> dict:
    """Columns of every row in ``split`` (None: all splits), sorted by clip_id, as numpy arrays.

    With ``model``, the waveforms are turned into ``prediction`` shard by shard and not kept.
    """
    wanted = list(dict.fromkeys(["clip_id", "split", *columns, *(["waveform"] if model is not None else [])]))
    parts: list[pa.Table] = []
    predictions: list[np.ndarray] = []
    files = storage.list_files(storage.join(data_uri, "clips"), suffix=".parquet")
    for file_uri in files:
        table = pq.read_table(io.BytesIO(storage.read_bytes(file_uri)), columns=wanted)
        if split is not None:
            table = table.filter(pc.equal(table["split"], split))
        if len(table) == 0:
            continue
        if model is not None:
            predictions.append(embed(model, tensor_column(table, "waveform"), batch_size))
            if "waveform" not in columns:
                table = table.drop_columns(["waveform"])
        parts.append(table)
    if not parts:
        raise InputError(
            f"no {split or 'any'} clips in {data_uri} ({len(files)} Parquet files under clips/); "
            "check --data/--gallery and --split (the test split comes from preprocessing with --split-name test)"
        )
    table = pa.concat_tables(parts)
    order = np.argsort(np.array(table["clip_id"].to_pylist()), kind="stable")
    rows = {}
    for name in table.column_names:
        if isinstance(table[name].type, pa.FixedShapeTensorType):
            rows[name] = tensor_column(table, name)[order]
        else:
            rows[name] = np.array(table[name].to_pylist(), dtype=object)[order]
    if model is not None:
        rows["prediction"] = np.concatenate(predictions)[order]
    return rows


def read_face_jpegs(data_uri: str, clip_ids) -> dict[str, bytes]:
    """{clip_id: face crop JPEG} for the given clips only, file by file, reading just those two columns."""
    wanted = pa.array(sorted(set(clip_ids)), pa.string())
    jpegs: dict[str, bytes] = {}
    for file_uri in storage.list_files(storage.join(data_uri, "clips"), suffix=".parquet"):
        filesystem, path = storage.resolve(file_uri)  # ranged reads: not the file's audio
        table = pq.read_table(path, columns=["clip_id", "face_jpeg"], filesystem=filesystem)
        table = table.filter(pc.is_in(table["clip_id"], value_set=wanted))
        jpegs.update(zip(table["clip_id"].to_pylist(), table["face_jpeg"].to_pylist(), strict=True))
    return jpegs
