"""AVSpeech CSV -> download -> audio + frames -> face -> face feature -> Parquet (waveform, face, feature).

    ray job submit --working-dir . -- python -m pipelines.preprocess \\
        --csv avspeech_train.csv --test-csv avspeech_test.csv --out s3://bucket/s2f/v1 \\
        --vggface-weights s3://bucket/vgg16.h5

Output at --out (a local dir or s3://bucket/prefix): clips/ (Parquet shards), failures/ (Parquet)
and manifest.json (speech2face.dataset is their contract). Rerunning with the same --out resumes:
clips already written are skipped, and so are failed clips unless --retry-failures (all of them, or
those of the named reasons).

A download failure's reason: unavailable (removed, private, 404/410: never retried), throttled (429,
bot check: retried after a long backoff, then kept for `--retry-failures throttled` later), transient
(5xx, timeouts, resets: retried now), deadline (--download-deadline passed), too_large (--max-download-mb).

This module is the run: check the output, plan the resume, stream the rows still to do through the
stages (pipelines.stages), record the manifest.
"""

from __future__ import annotations

import sys
import time
import warnings

import pandas as pd

import telemetry
from pipelines.preprocess.config import PROG, PreprocessConfig
from pipelines.preprocess.dry_run import dry_run
from pipelines.preprocess.ledger import plan, read_segments
from pipelines.preprocess.manifest import check_resumed_embedder, embedder_record, keep_layout, print_summary, summarize
from pipelines.preprocess.sizing import ROW_GROUP_ROWS, cpu_nodes, pool_sizes, rows_per_file
from speech2face import dataset, flags, storage
from speech2face.dataset import EmbedderRecord, Manifest


def run(config: PreprocessConfig) -> Manifest | dict:
    """The output's manifest after the run (with --dry-run, the plan, and nothing written)."""
    import ray

    started = time.time()
    clips_uri, failures_uri = dataset.clips_uri(config.out), dataset.failures_uri(config.out)
    if config.dry_run:
        return dry_run(config, clips_uri, failures_uri)
    # torch before pyarrow's S3 client: loaded after it, torch's libraries can fail to load (static TLS:
    # "Intel oneMKL FATAL ERROR: Cannot load libtorch_cpu.so", then a segfault).
    from pipelines import stages  # noqa: F401

    storage.check_writable(config.out)
    embedder = embedder_record(config)
    if previous := Manifest.read_if_exists(config.out):
        check_resumed_embedder(config, previous, embedder)
        keep_layout(config, previous)

    segments = read_segments(config, failures_uri)
    todo = plan(config, segments, clips_uri, failures_uri)

    object_store = ray_job = None
    if len(todo):
        from pipelines.object_store import ObjectStorePeak

        ray.init(ignore_reinit_error=True)
        ray_job = ray.get_runtime_context().get_job_id()
        telemetry.rows_planned(len(todo))
        print(f'[preprocess] Ray job {ray_job}: its metrics (s2f_preprocess_*) carry JobId="{ray_job}"')
        rows = build_dataset(config, todo, failures_uri, embedder, ray.cluster_resources(), cpu_nodes())
        with ObjectStorePeak() as peak:
            write_clips(rows, clips_uri, config, rows_per_file(config, embedder))
        object_store = peak.record()

    ray_job = ray_job or (previous.ray_job if previous else None)  # a rerun with nothing to do keeps it
    manifest = summarize(
        config, clips_uri, failures_uri, embedder, time.time() - started, len(todo), object_store, ray_job
    )
    manifest.write(config.out)
    print_summary(manifest)
    return manifest


def write_clips(rows, clips_uri: str, config: PreprocessConfig, file_rows: int) -> None:
    """Stream the clips into Parquet files of ``file_rows`` clips (before the split into partitions), in row groups of
    ``ROW_GROUP_ROWS``, under clips/split=<name>/ (or clips/ for an --out begun before partitioning)."""
    filesystem, clips_path = storage.resolve(clips_uri)
    partition_cols = [dataset.SPLIT] if config.split_partitioned else None
    with warnings.catch_warnings():
        # Ray suggests a repartition by split instead of min_rows_per_file with partition_cols: an all-to-all
        # shuffle, which would hold the whole run before writing its first file
        warnings.filterwarnings("ignore", "Using `min_rows_per_file` with non-empty `partition_cols`")
        rows.write_parquet(
            clips_path,
            filesystem=filesystem,
            partition_cols=partition_cols,
            min_rows_per_file=file_rows,
            row_group_size=min(file_rows, ROW_GROUP_ROWS),
        )


def build_dataset(
    config: PreprocessConfig,
    todo: pd.DataFrame,
    failures_uri: str,
    embedder: EmbedderRecord,
    resources: dict,
    nodes: int = 1,
):
    """The rows to do, through every stage, as a lazy Ray Dataset."""
    from pipelines.stages import pipeline_stages
    from pipelines.streaming import apply_stages, rows_per_block, source

    sizes = pool_sizes(config, resources, nodes, rows=len(todo))
    block_rows = rows_per_block(len(todo), resources.get("CPU", 1.0))
    print(
        f"[preprocess] cluster {resources.get('CPU', 0):g} CPU / {resources.get('GPU', 0):g} GPU on {nodes} "
        f"node(s) -> {sizes.describe()}, {block_rows} rows a block"
    )
    return apply_stages(source(todo, block_rows), pipeline_stages(config, failures_uri, embedder, sizes))


def parse_args(argv: list[str] | None = None, prog: str = PROG) -> PreprocessConfig:
    return flags.parse(PreprocessConfig, argv, prog, __doc__)


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    return flags.run_command(run, parse_args(argv, prog))


if __name__ == "__main__":
    sys.exit(main())
