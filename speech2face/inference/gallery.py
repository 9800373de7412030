"""The faces a voice is ranked against, read from a preprocess output shard by shard (no Ray).

``read_rows`` reads only the columns asked for (and, given a model, turns each shard's waveforms into
predictions and drops them), so a large split's audio is never held in memory.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from speech2face import dataset, shards
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


FILE = "file"  # beside a clip's columns with ``shards.ROW``: the index of its shard in ``files``


def read_rows(data_uri: str, split: str | None, columns: list[str], model=None, batch_size: int = 16) -> dict:
    """Columns of every row in ``split`` (None: all splits), sorted by clip id, as numpy arrays.

    Only those columns' pages of only that split's shards are read (``speech2face.shards``). With ``model``,
    the waveforms are turned into ``prediction`` shard by shard and not kept. ``shards.ROW`` among
    ``columns`` also gives each row's ``file`` (an index into ``rows["files"]``), to read more of it later.
    """
    wanted = list(dict.fromkeys([CLIP_ID, SPLIT, *columns, *([WAVEFORM] if model is not None else [])]))
    parts: list[pa.Table] = []
    predictions: list[np.ndarray] = []
    files = shards.shard_files(dataset.clips_uri(data_uri), split)
    parallel = 2 if model is not None else shards.PARALLEL_READS  # whole waveforms in flight: two shards' worth
    for index, (_, table) in enumerate(shards.read_shards(files, wanted, split, parallel=parallel)):
        if len(table) == 0:
            continue
        if model is not None:
            predictions.append(embed(model, dataset.tensor_column(table, WAVEFORM), batch_size))
            if WAVEFORM not in columns:
                table = table.drop_columns([WAVEFORM])
        if shards.ROW in columns:
            table = table.append_column(FILE, pa.array(np.full(len(table), index, np.int32)))
        parts.append(table)
    if not parts:
        raise InputError(
            f"no {split or 'any'} clips in {data_uri} ({len(files)} Parquet files under clips/); "
            "check --data/--gallery and --split (the test split comes from preprocessing with --split-name test)"
        )
    table = pa.concat_tables(parts)
    del parts
    order = np.argsort(np.array(table[CLIP_ID].to_pylist()), kind="stable")
    rows: dict = {"files": files} if shards.ROW in columns else {}
    for name in table.column_names:
        column = table[name]
        if isinstance(column.type, pa.FixedShapeTensorType):
            rows[name] = dataset.tensor_column(table, name)[order]
        elif pa.types.is_integer(column.type):
            rows[name] = column.to_numpy()[order]
        else:
            rows[name] = np.array(column.to_pylist(), dtype=object)[order]
    if model is not None:
        rows[PREDICTION] = np.concatenate(predictions)[order]
    return rows


def read_face_jpegs(data_uri: str, clip_ids) -> dict[str, bytes]:
    """{clip id: face crop JPEG} for the given clips only: each shard's ids, then only the row groups holding them."""
    wanted = pa.array(sorted(set(clip_ids)), pa.string())
    jpegs: dict[str, bytes] = {}
    files = shards.shard_files(dataset.clips_uri(data_uri))
    for file_uri, table in shards.read_shards(files, [CLIP_ID, shards.ROW]):
        found = table.filter(pc.is_in(table[CLIP_ID], value_set=wanted))
        if len(found):
            faces = shards.read_rows_at(file_uri, found[shards.ROW].to_pylist(), [FACE_JPEG])
            jpegs.update(zip(found[CLIP_ID].to_pylist(), faces[FACE_JPEG].to_pylist(), strict=True))
    return jpegs


class Gallery:
    """The faces a predicted feature is ranked against: one per video (or per clip) of a preprocess output.

    Shared by trainer.predict and serving, so both rank the same faces the same way. Memory is the features
    (one float32 array) and ids; a face's JPEG is read from its shard when asked for (``face_jpegs``).
    """

    def __init__(self, data_uri: str, split: str | None = None, gallery_by: str = BY_VIDEO):
        rows = read_rows(data_uri, split, [YTID, FACE_FEATURE, shards.ROW])
        groups = rows[YTID] if gallery_by == BY_VIDEO else rows[CLIP_ID]
        chosen, _ = gallery_indices(groups.astype(str), rows[CLIP_ID].astype(str), gallery_by)
        self.clip_ids, self.ytids = rows[CLIP_ID][chosen], rows[YTID][chosen]
        self.files, self.file_index, self.file_row = rows["files"], rows[FILE][chosen], rows[shards.ROW][chosen]
        faces = rows[FACE_FEATURE][chosen].astype(np.float32)
        del rows
        faces /= np.linalg.norm(faces, axis=1, keepdims=True)
        self.unit_faces = faces

    def face_jpegs(self, indices) -> list[bytes]:
        """The face crops (JPEG) of the given gallery indices, in that order, read from their shards now."""
        indices = [int(i) for i in indices]
        jpegs: dict[int, bytes] = {}
        for file in sorted({int(self.file_index[i]) for i in indices}):
            mine = [i for i in indices if self.file_index[i] == file]
            table = shards.read_rows_at(self.files[file], [int(self.file_row[i]) for i in mine], [FACE_JPEG])
            jpegs.update(zip(mine, table[FACE_JPEG].to_pylist(), strict=True))
        return [jpegs[i] for i in indices]

    def __len__(self) -> int:
        return len(self.clip_ids)

    def nearest(self, prediction: np.ndarray, top: int) -> list[dict]:
        """The ``top`` most similar faces (cosine), best first; ``index`` points into this gallery."""
        prediction = np.asarray(prediction, dtype=np.float32)
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
