"""The preprocessing plan without running it: block sizes and actor pools (streaming, preprocess.sizing)."""

import dataclasses

from pipelines import streaming
from pipelines.preprocess import PreprocessConfig
from pipelines.preprocess.sizing import pool_sizes


def test_blocks_hold_tens_of_rows_and_small_runs_still_fill_the_cpus():
    assert streaming.rows_per_block(2_600_000, 64) == streaming.MAX_ROWS_PER_BLOCK
    assert streaming.rows_per_block(40, 2) == 3 and streaming.rows_per_block(3, 2) == streaming.MIN_ROWS_PER_BLOCK == 1
    for rows in (270, 540):  # demo-sized runs: BLOCKS_PER_CPU blocks a CPU, not the 64-row maximum
        assert -(-rows // streaming.rows_per_block(rows, 2)) >= streaming.BLOCKS_PER_CPU * 2


def test_small_runs_start_one_decode_actor_per_thirteen_rows_and_large_ones_fill_the_cpus():
    config = PreprocessConfig(csv="x.csv", out="o", face_embedder="dlib", cpus_per_actor=0.5)
    for rows, actors in ((1, 1), (13, 1), (14, 2), (40, 4), (270, 8), (2_600_000, 8), (None, 8)):
        assert pool_sizes(config, {"CPU": 4.0}, rows=rows).face == actors, rows
    explicit = dataclasses.replace(config, cpu_actors=3)
    assert pool_sizes(explicit, {"CPU": 4.0}, rows=1).face == 3  # the flag wins


def test_files_you_hold_are_fetched_by_one_actor_a_node_and_downloads_by_two():
    youtube = PreprocessConfig(csv="x.csv", out="o", face_embedder="dlib")
    held = [dataclasses.replace(youtube, media_root="videos"), PreprocessConfig(voxceleb2="vox2", out="o")]
    assert pool_sizes(youtube, {"CPU": 4.0}, nodes=3).download_actors == 6
    for config in held:
        sizes = pool_sizes(config, {"CPU": 4.0}, nodes=3)
        assert sizes.download_actors == 3 and sizes.download == pool_sizes(youtube, {"CPU": 4.0}, nodes=3).download
