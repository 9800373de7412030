"""A split's clips as a lazy Ray Dataset that reads only that split's files where the output is partitioned.

The encoder's and decoder's training data and batch inference all read one split at a time through here:
a validation epoch of a partitioned output reads the val files alone, not every clip's waveform. An older,
unpartitioned output reads every file and keeps the split's rows by the ``split`` column.
"""

from __future__ import annotations

from speech2face import dataset, shards, storage
from speech2face.dataset import SPLIT


def read_split(data_uri: str, split: str, columns: list[str]):
    """``columns`` of the clips of ``split`` (``split`` itself may be among them: it comes from the path)."""
    import ray.data
    from ray.data.datasource import Partitioning
    from ray.data.expressions import col

    clips_uri = dataset.clips_uri(data_uri)
    files, must_filter = shards.split_files(clips_uri, split)
    if not files:
        raise FileNotFoundError(f"{clips_uri} holds no Parquet files: run python -m pipelines.preprocess")
    filesystem, base = storage.resolve(clips_uri)
    paths = [storage.resolve(f)[1] for f in files]
    rows = ray.data.read_parquet(paths, filesystem=filesystem, partitioning=Partitioning("hive", base_dir=base))
    if must_filter:
        return rows.select_columns(list(dict.fromkeys([SPLIT, *columns]))).filter(expr=col(SPLIT) == split)
    return rows.select_columns(columns)
