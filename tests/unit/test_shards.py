"""speech2face.shards on local Parquet files: the columns asked for, one split's files, rows found again later."""

import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from speech2face import shards
from speech2face.dataset import CLIP_ID, FACE_JPEG, REASON, SPLIT, WAVEFORM, tensor_array

SPLITS = ("train", "val", "test")


def _table(first: int, rows: int, split: str | None) -> pa.Table:
    ids = [f"clip{first + i:04d}" for i in range(rows)]
    columns = {
        CLIP_ID: ids,
        WAVEFORM: tensor_array(np.random.default_rng(first).integers(-3000, 3000, (rows, 4000), np.int16)),
        FACE_JPEG: [f"jpeg of {i}".encode() for i in ids],
    }
    if split is None:  # the unpartitioned layout: the split is a column
        columns[SPLIT] = [SPLITS[(first + i) % 3] for i in range(rows)]
    return pa.table(columns)


@pytest.fixture
def partitioned(tmp_path):
    for index, split in enumerate(SPLITS):
        (tmp_path / f"split={split}").mkdir()
        for part in range(2):
            first = 100 * index + 50 * part
            pq.write_table(_table(first, 50, split), tmp_path / f"split={split}" / f"{part}.parquet", row_group_size=16)
    return tmp_path


@pytest.fixture
def unpartitioned(tmp_path):
    for part in range(3):
        pq.write_table(_table(100 * part, 60, None), tmp_path / f"{part}.parquet", row_group_size=16)
    return tmp_path


def test_a_split_of_a_partitioned_output_reads_only_its_files_and_columns(partitioned):
    files = shards.shard_files(str(partitioned), "val")
    assert [os.path.relpath(f, partitioned) for f in files] == ["split=val/0.parquet", "split=val/1.parquet"]
    assert shards.split_files(str(partitioned), "val") == (files, False)
    table = shards.read_table(str(partitioned), [CLIP_ID, SPLIT], "val")
    assert table.column_names == [CLIP_ID, SPLIT] and set(table[SPLIT].to_pylist()) == {"val"}
    assert table[CLIP_ID].to_pylist() == [f"clip{i:04d}" for i in range(100, 200)]
    everything = shards.read_table(str(partitioned), [CLIP_ID, SPLIT])
    assert len(everything) == 300 and sorted(set(everything[SPLIT].to_pylist())) == sorted(SPLITS)


def test_an_unpartitioned_output_is_filtered_by_its_split_column(unpartitioned):
    assert shards.split_files(str(unpartitioned), "val") == (shards.shard_files(str(unpartitioned)), True)
    table = shards.read_table(str(unpartitioned), [CLIP_ID], "val")
    expected = [f"clip{100 * p + i:04d}" for p in range(3) for i in range(60) if (100 * p + i) % 3 == 1]
    assert table.column_names == [CLIP_ID] and table[CLIP_ID].to_pylist() == expected


def test_a_column_a_file_lacks_reads_as_nulls(unpartitioned):
    table = shards.read_table(str(unpartitioned), [CLIP_ID, REASON])
    assert table[REASON].null_count == len(table) == 180


def test_rows_found_by_position_are_read_again_from_their_row_groups_alone(partitioned):
    file = shards.shard_files(str(partitioned), "test")[1]
    table = shards.read_shard(file, [CLIP_ID, shards.ROW])
    assert table[shards.ROW].to_pylist() == list(range(50))
    wanted = [47, 3, 20, 3]  # across row groups of 16, out of order, repeated
    faces = shards.read_rows_at(file, wanted, [FACE_JPEG])
    assert faces[FACE_JPEG].to_pylist() == [f"jpeg of clip{250 + i:04d}".encode() for i in wanted]


def test_a_shard_is_read_by_its_columns_pages_not_whole(tmp_path):
    file = tmp_path / "big.parquet"
    waves = np.random.default_rng(0).integers(-3000, 3000, (100, 32000), np.int16)  # 6.4 MB of audio
    pq.write_table(pa.table({CLIP_ID: [f"clip{i}" for i in range(100)], WAVEFORM: tensor_array(waves)}), file)

    def rchar() -> int:
        with open(f"/proc/{os.getpid()}/io") as io_stats:
            return int(next(line for line in io_stats if line.startswith("rchar")).split()[1])

    before = rchar()
    assert shards.read_shard(str(file), [CLIP_ID])[CLIP_ID].to_pylist() == [f"clip{i}" for i in range(100)]
    read = rchar() - before
    assert 0 < read < 100_000 < file.stat().st_size / 50, read  # the footer (read 64 KB at a time) and the ids


def test_unreadable_files_go_to_the_callback_and_the_rest_still_reads(unpartitioned):
    broken = unpartitioned / "9-killed.parquet"
    broken.write_bytes(b"PAR1 half a file")
    seen = []
    table = shards.read_table(str(unpartitioned), [CLIP_ID], on_unreadable=lambda f, e: seen.append(f))
    assert seen == [str(broken)] and len(table) == 180
    with pytest.raises(pa.ArrowInvalid):
        shards.read_table(str(unpartitioned), [CLIP_ID])


def test_reads_come_back_in_file_order_with_few_in_flight(unpartitioned):
    for part in range(3, 40):
        pq.write_table(_table(100 * part, 5, None), unpartitioned / f"{part:02d}.parquet")
    files = shards.shard_files(str(unpartitioned))
    order = [f for f, _ in shards.read_shards(files, [CLIP_ID], parallel=3)]
    assert order == files
