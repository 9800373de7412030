"""The faces a voice is ranked against, read from a preprocess output shard by shard (no Ray).

``read_rows`` keeps only the small columns (and, given a model, turns each shard's waveforms into
predictions and drops them), so a large split's audio is never held in memory.
"""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from speech2face import dataset, storage
from speech2face.dataset import CLIP_ID, FACE_FEATURE, FACE_JPEG, SPLIT, WAVEFORM, YTID, Manifest
from speech2face.errors import InputError
from speech2face.inference.embedding import embed
from speech2face.inference.encoder_file import embedder_of
from speech2face.inference.retrieval import BY_VIDEO, gallery_indices

PREDICTION = "prediction"  # beside a clip's columns: the encoder's predicted face feature of its waveform


def check_same_embedder(model_meta: dict, data_uri: str) -> Manifest:
    """The data's manifest; refuses face features from another embedder than the model was trained on."""
    manifest = Manifest.read(data_uri)
    embedder_of(model_meta).require_same(
        manifest.embedder,
        "the model was trained on",
        f"{data_uri} holds",
        "retrieval only makes sense in the same feature space: use data preprocessed with the same embedder",
    )
    return manifest


def read_rows(data_uri: str, split: str | None, columns: list[str], model=None, batch_size: int = 16) -> dict:
    """Columns of every row in ``split`` (None: all splits), sorted by clip id, as numpy arrays.

    With ``model``, the waveforms are turned into ``prediction`` shard by shard and not kept.
    """
    wanted = list(dict.fromkeys([CLIP_ID, SPLIT, *columns, *([WAVEFORM] if model is not None else [])]))
    parts: list[pa.Table] = []
    predictions: list[np.ndarray] = []
    files = storage.list_files(dataset.clips_uri(data_uri), suffix=".parquet")
    for file_uri in files:
        table = pq.read_table(io.BytesIO(storage.read_bytes(file_uri)), columns=wanted)
        if split is not None:
            table = table.filter(pc.equal(table[SPLIT], split))
        if len(table) == 0:
            continue
        if model is not None:
            predictions.append(embed(model, dataset.tensor_column(table, WAVEFORM), batch_size))
            if WAVEFORM not in columns:
                table = table.drop_columns([WAVEFORM])
        parts.append(table)
    if not parts:
        raise InputError(
            f"no {split or 'any'} clips in {data_uri} ({len(files)} Parquet files under clips/); "
            "check --data/--gallery and --split (the test split comes from preprocessing with --split-name test)"
        )
    table = pa.concat_tables(parts)
    order = np.argsort(np.array(table[CLIP_ID].to_pylist()), kind="stable")
    rows = {}
    for name in table.column_names:
        if isinstance(table[name].type, pa.FixedShapeTensorType):
            rows[name] = dataset.tensor_column(table, name)[order]
        else:
            rows[name] = np.array(table[name].to_pylist(), dtype=object)[order]
    if model is not None:
        rows[PREDICTION] = np.concatenate(predictions)[order]
    return rows


def read_face_jpegs(data_uri: str, clip_ids) -> dict[str, bytes]:
    """{clip id: face crop JPEG} for the given clips only, file by file, reading just those two columns."""
    wanted = pa.array(sorted(set(clip_ids)), pa.string())
    jpegs: dict[str, bytes] = {}
    for file_uri in storage.list_files(dataset.clips_uri(data_uri), suffix=".parquet"):
        filesystem, path = storage.resolve(file_uri)  # ranged reads: not the file's audio
        table = pq.read_table(path, columns=[CLIP_ID, FACE_JPEG], filesystem=filesystem)
        table = table.filter(pc.is_in(table[CLIP_ID], value_set=wanted))
        jpegs.update(zip(table[CLIP_ID].to_pylist(), table[FACE_JPEG].to_pylist(), strict=True))
    return jpegs


class Gallery:
    """The faces a predicted feature is ranked against: one per video (or per clip) of a preprocess output.

    Shared by trainer.predict and serving, so both rank the same faces the same way.
    """

    def __init__(self, data_uri: str, split: str | None = None, gallery_by: str = BY_VIDEO):
        rows = read_rows(data_uri, split, [YTID, FACE_FEATURE, FACE_JPEG])
        groups = rows[YTID] if gallery_by == BY_VIDEO else rows[CLIP_ID]
        chosen, _ = gallery_indices(groups.astype(str), rows[CLIP_ID].astype(str), gallery_by)
        self.clip_ids, self.ytids = rows[CLIP_ID][chosen], rows[YTID][chosen]
        self.face_jpegs = rows[FACE_JPEG][chosen]
        faces = rows[FACE_FEATURE][chosen].astype(np.float64)
        self.unit_faces = faces / np.linalg.norm(faces, axis=1, keepdims=True)

    def __len__(self) -> int:
        return len(self.clip_ids)

    def nearest(self, prediction: np.ndarray, top: int) -> list[dict]:
        """The ``top`` most similar faces (cosine), best first; ``index`` points into this gallery."""
        prediction = np.asarray(prediction, dtype=np.float64)
        similarity = self.unit_faces @ (prediction / np.linalg.norm(prediction))
        best = np.argsort(-similarity, kind="stable")[:top]
        return [
            {
                "rank": i + 1,
                CLIP_ID: self.clip_ids[g],
                YTID: self.ytids[g],
                "similarity": float(similarity[g]),
                "index": int(g),
            }
            for i, g in enumerate(best)
        ]
