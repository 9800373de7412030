"""AVSpeech CSV -> download -> audio + frames -> face -> face feature -> Parquet (waveform, face, feature).

    ray job submit --working-dir . -- python -m pipelines.preprocess \\
        --csv avspeech_train.csv --test-csv avspeech_test.csv --out s3://bucket/s2f/v1 \\
        --vggface-weights s3://bucket/vgg16.h5

Output at --out (a local dir or s3://bucket/prefix): clips/ (Parquet shards), failures/ (Parquet)
and manifest.json. Rerunning with the same --out resumes: clips already written are skipped, and
so are failed clips unless --retry-failures (all of them, or those of the named reasons).

A download failure's reason: unavailable (removed, private, 404/410: never retried), throttled (429,
bot check: retried after a long backoff, then kept for `--retry-failures throttled` later), transient
(5xx, timeouts, resets: retried now), deadline (--download-deadline passed), too_large (--max-download-mb).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import math
import platform
import re
import sys
import time
from dataclasses import asdict, dataclass, field

import pandas as pd
import pyarrow.parquet as pq

from pipelines.failures import failures_table, parquet_bytes
from speech2face import __version__, storage
from speech2face.avspeech import PARSE_STAGE, failure_row, parse_csv
from speech2face.download import DEFAULT_URL_TEMPLATE, REASONS, DownloadConfig
from speech2face.faces import MAX_DISTANCE

RANDOM_WEIGHTS = "random"
DEFAULT_DOWNLOADS_PER_NODE = 16  # I/O-bound: many more than a node's cores
DOWNLOAD_ACTORS_PER_NODE = 2
# Starting a decode+face actor costs ~3.5 CPU s (a Ray worker, torch, dlib's models), a clip ~0.35 CPU s:
# a small run gets one actor per this many rows, so it does not spend more on actors than on its clips.
ROWS_PER_DECODE_ACTOR = 10
# Training reads whole files: a few hundred MB each keeps AVSpeech at thousands of files, not 160,000.
TARGET_FILE_MB = 256
# Parquet bytes per clip, measured on the demo corpus: waveform 174 KB, face JPEG 8 KB, the rest 2 KB;
# a stored spectrogram adds 530 KB, face_landmarks 0.5 KB, and the face feature 4 bytes a dimension.
CLIP_KB, SPECTROGRAM_KB, LANDMARKS_KB = 184, 530, 0.5


@dataclass
class PreprocessConfig:
    csv: str
    out: str
    test_csv: str | None = None
    url_template: str = DEFAULT_URL_TEMPLATE
    face_embedder: str = "vggface"
    vggface_weights: str | None = None
    split_by: str = "ytid"
    val_fraction: float = 0.1
    split_name: str | None = None
    limit: int | None = None
    retry_failures: str | None = None  # "all" or a comma-separated list of download failure reasons
    download_concurrency: int | None = None
    cpu_actors: int | None = None
    gpu_actors: int | None = None
    gpus_per_actor: float = 1.0
    cpus_per_actor: float = 1.0
    batch_size: int = 16
    frames_per_clip: int = 3
    face_model: str = "hog"
    max_face_distance: float = MAX_DISTANCE
    socket_timeout_s: float = 20.0
    download_retries: int = 2
    download_backoff_s: float = 1.0
    throttle_backoff_s: float = 30.0
    download_deadline_s: float = 120.0
    max_download_mb: float = 200.0
    cookies: str | None = None
    proxy: str | None = None
    max_downloads_per_minute: float | None = None
    sleep_requests_s: float = 0.0
    dry_run: bool = False
    store_spectrogram: bool = False
    store_landmarks: bool = True  # face_landmarks; False only for an --out begun before the column existed
    rows_per_file: int | None = None
    extra: dict = field(default_factory=dict)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m pipelines.preprocess",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--csv", required=True, help="AVSpeech CSV (no header: ytid,start,end,x,y); local or s3://")
    p.add_argument(
        "--test-csv",
        help="also this CSV, every row in split 'test' (AVSpeech's avspeech_test.csv), in the same run",
    )
    p.add_argument("--out", required=True, help="output: a local directory or s3://bucket/prefix")
    p.add_argument(
        "--url-template",
        default=DEFAULT_URL_TEMPLATE,
        help="video URL with {ytid}; tests and the demo use http://127.0.0.1:PORT/{ytid}.mp4",
    )
    p.add_argument(
        "--face-embedder",
        choices=["vggface", "dlib"],
        default="vggface",
        help="vggface: the paper's 4096-D fc7 (needs --vggface-weights); dlib: 128-D, real shipped weights",
    )
    p.add_argument(
        "--vggface-weights",
        metavar="PATH_OR_URI|random",
        help="keras-vggface rcmalli_vggface_tf_vgg16.h5 (local or s3://); 'random' = deterministic "
        "random weights, a stand-in for tests and demos, recorded as such in the manifest",
    )
    p.add_argument(
        "--split-by",
        choices=["ytid", "clip"],
        default="ytid",
        help="hash key for the train/val split; ytid keeps all segments of a video in one split",
    )
    p.add_argument("--val-fraction", type=float, default=0.1, help="fraction of keys that go to 'val'")
    p.add_argument("--split-name", help="put every row of --csv in this split instead (e.g. 'test')")
    p.add_argument("--limit", type=int, help="process only the first N rows of each CSV")
    p.add_argument(
        "--retry-failures",
        nargs="?",
        const="all",
        metavar="REASON[,REASON]",
        help=f"retry clips that failed in an earlier run: all of them, or only downloads that failed for "
        f"these reasons ({', '.join(REASONS)}), e.g. --retry-failures throttled",
    )
    p.add_argument(
        "--download-concurrency",
        type=int,
        help=f"concurrent downloads per node, in threads (default {DEFAULT_DOWNLOADS_PER_NODE}: they wait on the "
        "network; --max-downloads-per-minute caps the rate YouTube sees)",
    )
    p.add_argument(
        "--cpu-actors",
        type=int,
        help="decode + face-detection actors (default: CPUs / cpus-per-actor, "
        f"and at most one per {ROWS_PER_DECODE_ACTOR} rows to process)",
    )
    p.add_argument(
        "--gpu-actors",
        type=int,
        help="feature actors; set it to ask for GPUs even before the autoscaler has started a GPU node "
        "(default: one per GPU in the cluster now, or 1 CPU actor when it has none)",
    )
    p.add_argument("--gpus-per-actor", type=float, default=1.0, help="GPUs per feature actor when GPUs exist")
    p.add_argument("--cpus-per-actor", type=float, default=1.0, help="CPUs reserved by each actor")
    p.add_argument("--batch-size", type=int, default=16, help="clips per feature-stage batch")
    p.add_argument("--frames-per-clip", type=int, default=3, help="frames sampled per clip for the face")
    p.add_argument("--face-model", choices=["hog", "cnn"], default="hog", help="dlib face detector")
    p.add_argument(
        "--max-face-distance",
        type=float,
        default=MAX_DISTANCE,
        help="reject a clip whose nearest face centre is farther than this from (x, y), in frame fractions",
    )
    p.add_argument(
        "--socket-timeout",
        dest="socket_timeout_s",
        type=float,
        default=20.0,
        help="seconds without data before a download attempt fails",
    )
    p.add_argument(
        "--download-retries", type=int, default=2, help="retries of a throttled or transient download, with backoff"
    )
    p.add_argument(
        "--download-backoff",
        dest="download_backoff_s",
        type=float,
        default=1.0,
        help="seconds before the first retry of a transient error, doubling per retry",
    )
    p.add_argument(
        "--throttle-backoff",
        dest="throttle_backoff_s",
        type=float,
        default=30.0,
        help="seconds before the first retry of a throttled download (429, bot check), doubling, with jitter",
    )
    p.add_argument(
        "--download-deadline",
        dest="download_deadline_s",
        type=float,
        default=120.0,
        help="total seconds for one clip's download, retries included (reason: deadline)",
    )
    p.add_argument(
        "--max-download-mb", type=float, default=200.0, help="size cap of one downloaded segment (reason: too_large)"
    )
    p.add_argument(
        "--cookies",
        metavar="PATH_OR_URI",
        help="cookies.txt (Netscape format) for yt-dlp, local or s3://; copied to every node, never logged",
    )
    p.add_argument("--proxy", help="proxy URL for every download, e.g. socks5://host:1080")
    p.add_argument(
        "--max-downloads-per-minute", type=float, help="download starts per minute per node (default: no limit)"
    )
    p.add_argument(
        "--sleep-requests",
        dest="sleep_requests_s",
        type=float,
        default=0.0,
        help="seconds yt-dlp sleeps between the requests of one video's extraction",
    )
    p.add_argument(
        "--store-spectrogram",
        action="store_true",
        help="also store each clip's float16 spectrogram (615 KB, 3.2x its waveform; the old layout). Training "
        "computes it from the waveform either way; a resumed --out keeps the layout it was started with",
    )
    p.add_argument(
        "--rows-per-file",
        type=int,
        help=f"clips per Parquet file (default: about {TARGET_FILE_MB} MB files, ~1,300 clips; a file is written "
        "once it is full, so a killed run redoes the clips of files not yet written)",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="parse, split and plan the resume only: print rows valid, done, failed earlier and to do, per split, "
        "and the actor pools it would start; downloads nothing and writes nothing",
    )
    return p


def parse_args(argv: list[str] | None = None) -> PreprocessConfig:
    args = build_parser().parse_args(argv)
    config = PreprocessConfig(**vars(args))
    if config.retry_failures not in (None, "all"):
        unknown = set(config.retry_failures.split(",")) - set(REASONS)
        if unknown:
            build_parser().error(f"--retry-failures: unknown reason(s) {', '.join(sorted(unknown))}; "
                                 f"use no value (all) or some of {', '.join(REASONS)}")  # fmt: skip
    for flag, value in (
        ("--rows-per-file", config.rows_per_file),
        ("--download-concurrency", config.download_concurrency),
    ):
        if value is not None and value < 1:
            build_parser().error(f"{flag} must be at least 1, got {value}")
    if config.face_embedder == "vggface" and not config.vggface_weights:
        build_parser().error(
            "--face-embedder vggface needs --vggface-weights PATH_OR_URI "
            "(keras-vggface's rcmalli_vggface_tf_vgg16.h5). No package ships VGG-Face weights; "
            "for a test or demo pass --vggface-weights random, or use --face-embedder dlib."
        )
    return config


def _read_ids(uri: str, columns: list[str]) -> pd.DataFrame:
    """The given columns of every Parquet file below ``uri``; unreadable files (a killed write) are deleted.

    A column that an older file lacks (failures' ``reason``) reads as null.
    """
    frames = []
    for file_uri in storage.list_files(uri, suffix=".parquet"):
        try:
            file = pq.ParquetFile(io.BytesIO(storage.read_bytes(file_uri)))
            present = [c for c in columns if c in file.schema_arrow.names]
            frames.append(file.read(columns=present).to_pandas().reindex(columns=columns))
        except Exception as error:  # noqa: BLE001 - a half-written shard from a killed run
            print(f"[preprocess] removing unreadable shard {file_uri}: {error}", file=sys.stderr)
            storage.delete(file_uri)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


def embedder_record(config: PreprocessConfig) -> dict:
    if config.face_embedder == "dlib":
        from speech2face.embedders import DlibFace

        face = DlibFace()
        return {"name": face.name, "dim": face.dim, "weights_sha256": face.weights_id, "has_classifier": False}
    if config.vggface_weights == RANDOM_WEIGHTS:
        sha = RANDOM_WEIGHTS
    else:
        from speech2face.hashing import sha256_file

        with storage.local_copy(config.vggface_weights) as path:
            sha = sha256_file(path)
    return {"name": "vggface", "dim": 4096, "weights_sha256": sha, "has_classifier": True,
            "weights": config.vggface_weights}  # fmt: skip


def read_segments(config: PreprocessConfig, failures_uri: str, write_failures: bool = True) -> list:
    """The valid rows of --csv (and of --test-csv, as split 'test'); each CSV's parse failures go to failures/.

    Parse failures are recomputed from the CSV on every run, so one file per CSV keeps them exact.
    """
    sources = [(config.csv, config.split_name)] + ([(config.test_csv, "test")] if config.test_csv else [])
    segments, seen = [], set()  # a set, not a dict: millions of clip ids
    for index, (csv_uri, split_name) in enumerate(sources):
        text = storage.read_bytes(csv_uri).decode("utf-8", errors="replace")
        if config.limit:  # without it, no list of millions of lines
            text = "\n".join(text.splitlines()[: config.limit])
        rows, failures = parse_csv(text, config.val_fraction, split_name, config.split_by)
        del text
        for segment in rows:  # a segment in both CSVs is kept once, where it came first
            if segment.clip_id in seen:
                earlier = ", ".join(uri for uri, _ in sources[:index])
                failures.append(failure_row(segment.clip_id, segment.ytid, segment.start, segment.end, PARSE_STAGE,
                                            f"{csv_uri}: duplicate of a row of {earlier}"))  # fmt: skip
            else:
                seen.add(segment.clip_id)
                segments.append(segment)
        csv_key = hashlib.sha256(f"{csv_uri}|{config.limit}".encode()).hexdigest()[:16]
        if write_failures:
            storage.write_bytes(storage.join(failures_uri, f"{PARSE_STAGE}-{csv_key}.parquet"),
                                parquet_bytes(failures_table(failures)))  # fmt: skip
    return segments


def clear_failures(failures_uri: str, retry: str) -> None:
    """Forget earlier stage failures that will be retried: all of them, or those of the given reasons.

    A file keeping some rows is rewritten in place (one PUT on S3), so a crash never duplicates a row.
    """
    reasons = None if retry == "all" else set(retry.split(","))
    for file_uri in storage.list_files(failures_uri, suffix=".parquet"):
        if file_uri.rsplit("/", 1)[-1].startswith(f"{PARSE_STAGE}-"):
            continue
        table = pq.read_table(io.BytesIO(storage.read_bytes(file_uri)))
        keep = [] if reasons is None else [row for row in table.to_pylist() if row.get("reason") not in reasons]
        if not keep:
            storage.delete(file_uri)
        elif len(keep) < table.num_rows:
            storage.write_bytes(file_uri, parquet_bytes(failures_table(keep)))


def plan(config: PreprocessConfig, segments: list, clips_uri: str, failures_uri: str) -> pd.DataFrame:
    """Rows still to do: not yet in clips/, and not in failures/ unless retried (then those are cleared)."""
    if config.retry_failures:
        clear_failures(failures_uri, config.retry_failures)
    done = set(_read_ids(clips_uri, ["clip_id"])["clip_id"])
    failed = _read_ids(failures_uri, ["clip_id", "stage"])
    stage_failed = set(failed.loc[failed["stage"] != PARSE_STAGE, "clip_id"])
    todo = [s.as_row() for s in segments if s.clip_id not in done and s.clip_id not in stage_failed]
    print(f"[preprocess] {len(segments)} valid rows: {len(done)} already in clips/, "
          f"{len(stage_failed)} failed earlier (skipped), {len(todo)} to process")  # fmt: skip
    frame = pd.DataFrame(todo, columns=["clip_id", "ytid", "start", "end", "x", "y", "split"])
    return frame.assign(stage="", error="", reason="")


def run(config: PreprocessConfig) -> dict:
    import ray

    started = time.time()
    clips_uri, failures_uri = storage.join(config.out, "clips"), storage.join(config.out, "failures")
    if config.dry_run:
        return dry_run(config, clips_uri, failures_uri)
    # torch before pyarrow's S3 client: loaded after it, torch's libraries can fail to load (static TLS:
    # "Intel oneMKL FATAL ERROR: Cannot load libtorch_cpu.so", then a segfault).
    from pipelines import stages  # noqa: F401

    storage.check_writable(config.out)
    embedder = embedder_record(config)
    manifest_uri = storage.join(config.out, "manifest.json")
    if storage.exists(manifest_uri):
        manifest = storage.read_json(manifest_uri)
        previous = manifest["embedder"]
        if (previous["name"], previous["weights_sha256"]) != (embedder["name"], embedder["weights_sha256"]):
            raise SystemExit(
                f"{config.out} already holds clips embedded by {previous['name']} "
                f"({previous['weights_sha256'][:12]}); use a new --out for {embedder['name']}."
            )
        keep_layout(config, manifest)

    segments = read_segments(config, failures_uri)
    todo = plan(config, segments, clips_uri, failures_uri)

    object_store = None
    if len(todo):
        from pipelines.object_store import ObjectStorePeak

        ray.init(ignore_reinit_error=True)
        dataset = build_dataset(config, todo, failures_uri, embedder, ray.cluster_resources(), _cpu_nodes())
        filesystem, clips_path = storage.resolve(clips_uri)
        with ObjectStorePeak() as peak:
            dataset.write_parquet(clips_path, filesystem=filesystem, min_rows_per_file=rows_per_file(config, embedder))
        object_store = peak.record()

    summary = summarize(config, clips_uri, failures_uri, embedder, time.time() - started, len(todo), object_store)
    storage.write_json(manifest_uri, summary)
    print_summary(summary)
    return summary


def rows_per_file(config: PreprocessConfig, embedder: dict) -> int:
    """--rows-per-file, or the clips that make a file of about TARGET_FILE_MB."""
    if config.rows_per_file:
        return config.rows_per_file
    clip_kb = CLIP_KB + embedder["dim"] * 4 / 1024 + (SPECTROGRAM_KB if config.store_spectrogram else 0)
    clip_kb += LANDMARKS_KB if config.store_landmarks else 0
    return max(1, int(TARGET_FILE_MB * 1024 / clip_kb))


def keep_layout(config: PreprocessConfig, manifest: dict) -> None:
    """A resumed --out keeps its clips' columns: one schema for every file of a dataset.

    Manifests from before --store-spectrogram existed belong to outputs that stored it, and those
    from before face_landmarks existed to outputs without them.
    """
    previous = manifest.get("config", {})
    stored = previous.get("store_spectrogram", True)
    if stored != config.store_spectrogram:
        print(f"[preprocess] {config.out} was started {'with' if stored else 'without'} --store-spectrogram: "
              "its new clips keep that layout")  # fmt: skip
    config.store_spectrogram = stored
    config.store_landmarks = previous.get("store_landmarks", False)
    if not config.store_landmarks:
        print(f"[preprocess] {config.out} was started before face_landmarks existed: its new clips keep that "
              "layout (the face decoder computes landmarks from face_jpeg)")  # fmt: skip


def dry_run(config: PreprocessConfig, clips_uri: str, failures_uri: str) -> dict:
    """What a run would do, per split, without downloading or writing anything."""
    rows = read_segments(config, failures_uri, write_failures=False)
    segments = pd.DataFrame({"clip_id": [s.clip_id for s in rows], "split": [s.split for s in rows]})
    del rows
    done = set(_read_ids(clips_uri, ["clip_id"])["clip_id"])
    failed = _read_ids(failures_uri, ["clip_id", "stage", "reason"])
    failed = failed[failed["stage"] != PARSE_STAGE]
    retried = failed if config.retry_failures == "all" else failed[
        failed["reason"].isin((config.retry_failures or "").split(","))]  # fmt: skip
    skipped = set(failed["clip_id"]) - set(retried["clip_id"])
    segments["state"] = "to do"
    segments.loc[segments["clip_id"].isin(skipped), "state"] = "failed earlier (skipped)"
    segments.loc[segments["clip_id"].isin(set(retried["clip_id"])), "state"] = "failed earlier (retried)"
    segments.loc[segments["clip_id"].isin(done), "state"] = "done"
    table = segments.groupby(["split", "state"]).size().unstack(fill_value=0)
    resources, nodes = _cluster_resources()
    to_process = int(segments["state"].isin(["to do", "failed earlier (retried)"]).sum())
    sizes = resource_defaults(config, resources, nodes, rows=to_process)
    plan_summary = {
        "valid_rows": len(segments),
        "per_split": {split: {k: int(v) for k, v in row.items()} for split, row in table.iterrows()},
        "to_process": to_process,
        "resources": resources,
        "nodes": nodes,
        "actor_pools": sizes,
    }
    print(f"[preprocess] dry run: {len(segments)} valid rows in {config.csv}"
          + (f" and {config.test_csv}" if config.test_csv else ""))  # fmt: skip
    print(table.to_string() if len(table) else "(no valid rows)")
    print(f"[preprocess] would process {plan_summary['to_process']} rows on {resources.get('CPU', 0):g} CPU / "
          f"{resources.get('GPU', 0):g} GPU ({nodes} node(s)): {sizes['download']} concurrent downloads in "
          f"{sizes['download_actors']} actors, {sizes['face']} decode+face actors, "
          f"{sizes['feature']} feature actors ({'GPU ' + str(sizes['gpus']) if sizes['gpus'] else 'CPU'} each); "
          "nothing was downloaded or written")  # fmt: skip
    return plan_summary


def _cluster_resources() -> tuple[dict, int]:
    """The cluster's resources and CPU nodes when a job runs on one (RAY_ADDRESS), else this machine's CPUs:
    no Ray started."""
    import os

    if os.environ.get("RAY_ADDRESS"):
        import ray

        ray.init(ignore_reinit_error=True, log_to_driver=False)
        return dict(ray.cluster_resources()), _cpu_nodes()
    return {"CPU": float(os.cpu_count() or 1)}, 1


def _cpu_nodes() -> int:
    import ray

    return max(1, sum(1 for node in ray.nodes() if node["Alive"] and node["Resources"].get("CPU", 0) > 0))


def resource_defaults(config: PreprocessConfig, resources: dict, nodes: int = 1, rows: int | None = None) -> dict:
    """Pool sizes: explicit flags win; otherwise sized from the cluster as it is now (and, for decode+face,
    from the ``rows`` to process: ``ROWS_PER_DECODE_ACTOR`` each at least).

    Downloads: ``--download-concurrency`` per node, as threads of a pool of ``DOWNLOAD_ACTORS_PER_NODE``
    actors per node at the start (yt-dlp's parsing holds the GIL: one process would cap a node at one
    core for it; Ray places the actors where their 0.25 CPU fits).
    An explicit ``--gpu-actors`` always asks for GPUs, so an autoscaling cluster that starts with no
    GPU node gets one; without it, a cluster with no GPUs runs the feature stage on CPU.
    """
    cpus, gpus = resources.get("CPU", 1.0), resources.get("GPU", 0.0)
    per_node = config.download_concurrency or DEFAULT_DOWNLOADS_PER_NODE
    actors_per_node = min(DOWNLOAD_ACTORS_PER_NODE, per_node)
    use_gpus = bool(config.gpu_actors) or gpus > 0
    face_by_cpus = int(cpus / config.cpus_per_actor)
    face_by_rows = math.ceil(rows / ROWS_PER_DECODE_ACTOR) if rows else face_by_cpus
    return {
        "download": per_node * nodes,
        "download_actors": actors_per_node * nodes,
        "download_threads": math.ceil(per_node / actors_per_node),
        "face": config.cpu_actors or max(1, min(face_by_cpus, face_by_rows)),
        "feature": config.gpu_actors or (max(1, int(gpus / config.gpus_per_actor)) if gpus else 1),
        "gpus": config.gpus_per_actor if use_gpus else 0.0,
    }


def pipeline_stages(config: PreprocessConfig, failures_uri: str, embedder: dict, sizes: dict) -> list:
    """The pipeline as data: each stage with its batch size and the resources it reserves."""
    from pipelines import stages  # torch and the face models: only where the pipeline is built
    from pipelines.streaming import Stage

    light = min(0.25, config.cpus_per_actor)  # waits on the network or on a write, not on the CPU
    random_weights = config.vggface_weights == RANDOM_WEIGHTS
    return [
        Stage("download", stages.DownloadStage, num_cpus=light, pool=(1, sizes["download_actors"]),
              concurrent_calls=2, args=(download_config(config), config.cookies, sizes["download_threads"])),
        Stage("decode_face", stages.DecodeFaceStage, num_cpus=config.cpus_per_actor, pool=(1, sizes["face"]),
              args=(config.frames_per_clip, config.face_model, config.max_face_distance, config.store_landmarks,
                    failures_uri)),
        Stage("feature", stages.FeatureStage, batch_size=config.batch_size, num_cpus=config.cpus_per_actor,
              num_gpus=sizes["gpus"], pool=(sizes["feature"], sizes["feature"]),
              args=(embedder["name"], None if random_weights else config.vggface_weights, random_weights,
                    failures_uri, config.store_spectrogram, config.store_landmarks)),
    ]  # fmt: skip


def build_dataset(config: PreprocessConfig, todo: pd.DataFrame, failures_uri: str, embedder: dict, resources: dict,
                  nodes: int = 1):  # fmt: skip
    from pipelines.streaming import apply_stages, rows_per_block, source

    sizes = resource_defaults(config, resources, nodes, rows=len(todo))
    block_rows = rows_per_block(len(todo), resources.get("CPU", 1.0))
    print(f"[preprocess] cluster {resources.get('CPU', 0):g} CPU / {resources.get('GPU', 0):g} GPU on {nodes} "
          f"node(s) -> {sizes['download']} concurrent downloads ({sizes['download_actors']} actors), "
          f"{sizes['face']} decode+face actors, {sizes['feature']} feature actors "
          f"({'GPU ' + str(sizes['gpus']) if sizes['gpus'] else 'CPU'} each), {block_rows} rows a block")  # fmt: skip
    return apply_stages(source(todo, block_rows), pipeline_stages(config, failures_uri, embedder, sizes))


def download_config(config: PreprocessConfig) -> DownloadConfig:
    """What each download actor gets; the cookies file is copied by the actor itself (``DownloadStage``)."""
    return DownloadConfig(
        url_template=config.url_template,
        socket_timeout_s=config.socket_timeout_s,
        retries=config.download_retries,
        backoff_s=config.download_backoff_s,
        throttle_backoff_s=config.throttle_backoff_s,
        deadline_s=config.download_deadline_s,
        max_download_mb=config.max_download_mb,
        proxy=config.proxy,
        max_downloads_per_minute=config.max_downloads_per_minute,
        sleep_requests_s=config.sleep_requests_s,
    )


def _without_secret(url: str | None) -> str | None:
    """A proxy URL as recorded: user:password@ becomes ***@."""
    return re.sub(r"//[^/@]*@", "//***@", url) if url else url


def summarize(config: PreprocessConfig, clips_uri: str, failures_uri: str, embedder: dict,
              wall_s: float, processed: int, object_store: dict | None = None) -> dict:  # fmt: skip
    import ray
    import torch
    import yt_dlp

    from pipelines.stages import CPU_STAGES

    clips = _read_ids(clips_uri, ["clip_id", "split", "cpu_s"])
    failures = _read_ids(failures_uri, ["clip_id", "stage", "reason"])
    reasons = failures["reason"].dropna()
    cpu = pd.DataFrame(list(clips["cpu_s"])) if len(clips) else pd.DataFrame(columns=list(CPU_STAGES))
    return {
        "config": {k: v for k, v in asdict(config).items() if k != "extra"} | {"proxy": _without_secret(config.proxy)},
        "versions": {
            "speech2face": __version__,
            "python": platform.python_version(),
            "ray": ray.__version__,
            "torch": torch.__version__,
            "yt_dlp": yt_dlp.version.__version__,
        },
        "embedder": embedder,
        "counts": {
            "clips": len(clips),
            "failures": len(failures),
            "per_split": clips["split"].value_counts().sort_index().to_dict() if len(clips) else {},
            "failures_per_stage": failures["stage"].value_counts().sort_index().to_dict() if len(failures) else {},
            "failures_per_reason": reasons.value_counts().sort_index().to_dict() if len(reasons) else {},
        },
        "cpu_s_per_clip": {stage: float(cpu[stage].mean()) if len(cpu) else None for stage in CPU_STAGES},
        "processed_this_run": processed,
        "wall_time_s": round(wall_s, 2),
        "object_store": object_store,  # this run's peak use (pipelines.object_store); None if nothing ran
    }


def print_summary(summary: dict) -> None:
    counts = summary["counts"]
    total = counts["clips"] + counts["failures"]
    print("\n=== preprocess summary ===")
    print(f"clips      {counts['clips']:>8}   ({100 * counts['clips'] / max(total, 1):.1f} % of {total} rows)")
    for split, n in counts["per_split"].items():
        print(f"  {split:<9}{n:>8}")
    print(f"failures   {counts['failures']:>8}")
    for stage, n in counts["failures_per_stage"].items():
        print(f"  {stage:<9}{n:>8}")
        if stage == "download":
            for reason, n_reason in counts.get("failures_per_reason", {}).items():
                print(f"    {reason:<11}{n_reason:>6}")
    cpu = summary["cpu_s_per_clip"]
    if cpu["download"] is not None:
        per_stage = "  ".join(f"{stage} {seconds:.3f}" for stage, seconds in cpu.items())
        print(f"CPU s/clip {sum(cpu.values()):.3f}  ({per_stage})")
    print(f"wall time  {summary['wall_time_s']:.1f} s   ({summary['processed_this_run']} rows processed this run)")
    if store := summary.get("object_store"):
        print(f"object store  peak {store['peak_mb']:.0f} MB of {store['capacity_mb']:.0f} MB, "
              f"{store['spilled_mb']:.0f} MB spilled to disk")  # fmt: skip
    print(f"embedder   {summary['embedder']['name']} weights {summary['embedder']['weights_sha256'][:16]}")


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)
    try:
        run(config)
    except storage.NotWritableError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
