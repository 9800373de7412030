"""The run's record, manifest.json: the embedder it used, the layout it keeps, and what the output holds."""

from __future__ import annotations

import dataclasses
import platform
import re

import pandas as pd

from pipelines.preprocess.config import PreprocessConfig
from pipelines.preprocess.ledger import read_columns
from speech2face import __version__
from speech2face.dataset import (
    AUDIO_FORMAT,
    CLIP_ID,
    CPU_S,
    CPU_STAGES,
    DOWNLOAD,
    DOWNLOAD_BYTES,
    DOWNLOAD_COLUMNS,
    REASON,
    SPEAKER,
    SPLIT,
    STAGE,
    VIDEO_FORMAT,
    Counts,
    EmbedderRecord,
    Manifest,
    weights_sha256,
)


def embedder_record(config: PreprocessConfig) -> EmbedderRecord:
    """The face embedder this run uses, with the SHA-256 of its weights (dlib's shipped ones, or the .h5)."""
    if config.face_embedder == "dlib":
        from speech2face.embedders.dlib import DlibFace

        face = DlibFace()
        return EmbedderRecord(name=face.name, dim=face.dim, weights_sha256=face.weights_id, has_classifier=False)
    return EmbedderRecord(
        name="vggface",
        dim=4096,
        weights_sha256=weights_sha256(config.vggface_weights),
        has_classifier=True,
        weights=config.vggface_weights,
    )


def check_resumed_embedder(config: PreprocessConfig, manifest: Manifest, embedder: EmbedderRecord) -> None:
    """One --out holds one network's features: a resumed run must use the embedder it was started with."""
    if not manifest.embedder.same_network(embedder):
        raise SystemExit(
            f"{config.out} already holds clips embedded by {manifest.embedder.name} "
            f"({manifest.embedder.weights_sha256[:12]}); use a new --out for {embedder.name}."
        )


def keep_layout(config: PreprocessConfig, manifest: Manifest) -> None:
    """A resumed --out keeps its clips' columns: one schema for every file of a dataset."""
    stored = manifest.layout.store_spectrogram
    if stored != config.store_spectrogram:
        print(
            f"[preprocess] {config.out} was started {'with' if stored else 'without'} --store-spectrogram: "
            "its new clips keep that layout"
        )
    config.store_spectrogram = stored
    config.store_landmarks = manifest.layout.store_landmarks
    if not config.store_landmarks:
        print(
            f"[preprocess] {config.out} was started before face_landmarks existed: its new clips keep that "
            "layout (the face decoder computes landmarks from face_jpeg)"
        )
    config.split_partitioned = manifest.layout.split_partitioned
    if not config.split_partitioned:
        print(
            f"[preprocess] {config.out} was started before clips/ was partitioned by split: its new clips "
            "go to clips/ too (readers of one split then read every file)"
        )
    config.store_source = manifest.layout.store_source
    if not config.store_source:
        print(f"[preprocess] {config.out} was started before the speaker and media columns: new clips lack them too")
    config.store_download = manifest.layout.store_download
    if not config.store_download:
        print(f"[preprocess] {config.out} was started before the download columns: new clips lack them too")


def _without_secret(url: str | None) -> str | None:
    """A proxy URL as recorded: user:password@ becomes ***@."""
    return re.sub(r"//[^/@]*@", "//***@", url) if url else url


def _counted(series: pd.Series) -> dict:
    return series.value_counts().sort_index().to_dict() if len(series) else {}


def summarize(
    config: PreprocessConfig,
    clips_uri: str,
    failures_uri: str,
    embedder: EmbedderRecord,
    wall_s: float,
    processed: int,
    object_store: dict | None = None,
    ray_job: str | None = None,
) -> Manifest:
    import ray
    import torch
    import yt_dlp

    # SPEAKER and the download columns: null where a file lacks them
    clips = read_columns(clips_uri, [CLIP_ID, SPLIT, SPEAKER, CPU_S, *DOWNLOAD_COLUMNS])
    failures = read_columns(failures_uri, [CLIP_ID, STAGE, REASON])
    cpu = pd.DataFrame(list(clips[CPU_S])) if len(clips) else pd.DataFrame(columns=list(CPU_STAGES))
    record = {k: v for k, v in dataclasses.asdict(config).items() if k != "extra"}
    return Manifest(
        embedder=embedder,
        layout=config.layout(),
        config=record | {"proxy": _without_secret(config.proxy)},
        versions={
            "speech2face": __version__,
            "python": platform.python_version(),
            "ray": ray.__version__,
            "torch": torch.__version__,
            "yt_dlp": yt_dlp.version.__version__,
        },
        counts=Counts(
            clips=len(clips),
            failures=len(failures),
            per_split=_counted(clips[SPLIT]),
            speakers_per_split=_counted_speakers(clips),
            failures_per_stage=_counted(failures[STAGE]),
            failures_per_reason=_counted(failures[REASON].dropna()),
        ),
        cpu_s_per_clip={stage: float(cpu[stage].mean()) if len(cpu) else None for stage in CPU_STAGES},
        processed_this_run=processed,
        wall_time_s=round(wall_s, 2),
        object_store=object_store,
        downloads=_downloads(clips),
        ray_job=ray_job,
    )


def _downloads(clips: pd.DataFrame) -> dict | None:
    """Bytes read per downloaded clip (total, mean, p95) and how often each format was chosen."""
    downloaded = clips.dropna(subset=[DOWNLOAD_BYTES])
    if not len(downloaded):
        return None
    per_clip = downloaded[DOWNLOAD_BYTES].astype("int64")
    return {
        "clips": len(downloaded),
        "total_bytes": int(per_clip.sum()),
        "mean_bytes": float(per_clip.mean()),
        "p95_bytes": float(per_clip.quantile(0.95)),
        "video_formats": _counted(downloaded[VIDEO_FORMAT].dropna()),
        "audio_formats": _counted(downloaded[AUDIO_FORMAT].dropna()),
    }


def _counted_speakers(clips: pd.DataFrame) -> dict:
    known = clips.dropna(subset=[SPEAKER])
    return {split: int(n) for split, n in known.groupby(SPLIT)[SPEAKER].nunique().items()}


def print_summary(manifest: Manifest) -> None:
    counts = manifest.counts
    total = counts.clips + counts.failures
    print("\n=== preprocess summary ===")
    print(f"clips      {counts.clips:>8}   ({100 * counts.clips / max(total, 1):.1f} % of {total} rows)")
    for split, n in counts.per_split.items():
        speakers = counts.speakers_per_split.get(split)
        print(f"  {split:<9}{n:>8}" + (f"   ({speakers} speakers)" if speakers else ""))
    print(f"failures   {counts.failures:>8}")
    for stage, n in counts.failures_per_stage.items():
        print(f"  {stage:<9}{n:>8}")
    if counts.failures_per_reason:
        print("  by reason: " + ", ".join(f"{reason} {n}" for reason, n in counts.failures_per_reason.items()))
    cpu = manifest.cpu_s_per_clip
    if cpu[DOWNLOAD] is not None:
        per_stage = "  ".join(f"{stage} {seconds:.3f}" for stage, seconds in cpu.items())
        print(f"CPU s/clip {sum(cpu.values()):.3f}  ({per_stage})")
    if downloads := manifest.downloads:
        print(
            f"downloaded {downloads['total_bytes'] / 1e6:.1f} MB for {downloads['clips']} clips: "
            f"{downloads['mean_bytes'] / 1e3:.0f} kB a clip, p95 {downloads['p95_bytes'] / 1e3:.0f} kB"
        )
        for kind in ("video_formats", "audio_formats"):
            print(f"  {kind.replace('_', ' ')}: " + ", ".join(f"{f} ({n})" for f, n in downloads[kind].items()))
    print(f"wall time  {manifest.wall_time_s:.1f} s   ({manifest.processed_this_run} rows processed this run)")
    if store := manifest.object_store:
        print(
            f"object store  peak {store['peak_mb']:.0f} MB of {store['capacity_mb']:.0f} MB, "
            f"{store['spilled_mb']:.0f} MB spilled to disk"
        )
    print(f"embedder   {manifest.embedder.name} weights {manifest.embedder.weights_sha256[:16]}")
