"""How big each actor pool and each output file is: explicit flags win, otherwise sized from the cluster."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from pipelines.preprocess.config import (
    DEFAULT_DOWNLOADS_PER_NODE,
    ROWS_PER_DECODE_ACTOR,
    TARGET_FILE_MB,
    PreprocessConfig,
)
from speech2face.dataset import EmbedderRecord

DOWNLOAD_ACTORS_PER_NODE = 2
# Parquet bytes per clip, measured on the demo corpus: waveform 174 KB, face JPEG 8 KB, the rest 2 KB;
# a stored spectrogram adds 530 KB, face_landmarks 0.5 KB, and the face feature 4 bytes a dimension.
CLIP_KB, SPECTROGRAM_KB, LANDMARKS_KB = 184, 530, 0.5
# Clips a Parquet row group holds: a reader of a few rows (a gallery's top faces) reads their row groups'
# pages, ~2 MB of JPEGs, while a reader of one column of every row still makes only ~5 requests a file.
ROW_GROUP_ROWS = 256


@dataclass(frozen=True)
class PoolSizes:
    download: int  # concurrent downloads in the cluster
    download_actors: int
    download_threads: int  # per download actor
    face: int  # decode + face actors
    feature: int  # feature actors
    gpus: float  # per feature actor; 0: they run on CPU

    def describe(self) -> str:
        kind = f"GPU {self.gpus}" if self.gpus else "CPU"
        return (
            f"{self.download} concurrent downloads in {self.download_actors} actors, {self.face} decode+face "
            f"actors, {self.feature} feature actors ({kind} each)"
        )


def pool_sizes(config: PreprocessConfig, resources: dict, nodes: int = 1, rows: int | None = None) -> PoolSizes:
    """Pool sizes for the cluster as it is now (and, for decode+face, the ``rows`` to process:
    ``ROWS_PER_DECODE_ACTOR`` each at least).

    Downloads: ``--download-concurrency`` per node, as threads of a pool of ``DOWNLOAD_ACTORS_PER_NODE``
    actors per node at the start (yt-dlp's parsing holds the GIL: one process would cap a node at one
    core for it; Ray places the actors where their 0.25 CPU fits); one actor per node for files you hold.
    An explicit ``--gpu-actors`` always asks for GPUs, so an autoscaling cluster that starts with no
    GPU node gets one; without it, a cluster with no GPUs runs the feature stage on CPU.
    """
    cpus, gpus = resources.get("CPU", 1.0), resources.get("GPU", 0.0)
    per_node = config.download_concurrency or DEFAULT_DOWNLOADS_PER_NODE
    # Files you hold need no yt-dlp: their fetches are reads and ffmpeg subprocesses, which threads overlap
    actors_per_node = min(DOWNLOAD_ACTORS_PER_NODE if config.source == "youtube" else 1, per_node)
    use_gpus = bool(config.gpu_actors) or gpus > 0
    face_by_cpus = int(cpus / config.cpus_per_actor)
    face_by_rows = math.ceil(rows / ROWS_PER_DECODE_ACTOR) if rows else face_by_cpus
    return PoolSizes(
        download=per_node * nodes,
        download_actors=actors_per_node * nodes,
        download_threads=math.ceil(per_node / actors_per_node),
        face=config.cpu_actors or max(1, min(face_by_cpus, face_by_rows)),
        feature=config.gpu_actors or (max(1, int(gpus / config.gpus_per_actor)) if gpus else 1),
        gpus=config.gpus_per_actor if use_gpus else 0.0,
    )


def rows_per_file(config: PreprocessConfig, embedder: EmbedderRecord) -> int:
    """--rows-per-file, or the clips that make a file of about TARGET_FILE_MB."""
    if config.rows_per_file:
        return config.rows_per_file
    clip_kb = CLIP_KB + embedder.dim * 4 / 1024 + (SPECTROGRAM_KB if config.store_spectrogram else 0)
    clip_kb += LANDMARKS_KB if config.store_landmarks else 0
    return max(1, int(TARGET_FILE_MB * 1024 / clip_kb))


def cpu_nodes() -> int:
    import ray

    return max(1, sum(1 for node in ray.nodes() if node["Alive"] and node["Resources"].get("CPU", 0) > 0))


def cluster_resources() -> tuple[dict, int]:
    """The cluster's resources and CPU nodes when a job runs on one (RAY_ADDRESS), else this machine's CPUs
    (no Ray started)."""
    if os.environ.get("RAY_ADDRESS"):
        import ray

        ray.init(ignore_reinit_error=True, log_to_driver=False)
        return dict(ray.cluster_resources()), cpu_nodes()
    return {"CPU": float(os.cpu_count() or 1)}, 1
