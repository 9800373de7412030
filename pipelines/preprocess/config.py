"""PreprocessConfig: every setting of a preprocessing run; its fields are the command's flags (speech2face.flags)."""

from __future__ import annotations

from dataclasses import dataclass, field

from speech2face.dataset import RANDOM_WEIGHTS, YTID, Layout
from speech2face.download import DEFAULT_MAX_HEIGHT, DEFAULT_URL_TEMPLATE, REASONS, DownloadConfig
from speech2face.embedders import EMBEDDER_NAMES
from speech2face.errors import InputError
from speech2face.faces import MAX_DISTANCE
from speech2face.flags import flag
from speech2face.sources import cuts_segment

PROG = "python -m pipelines.preprocess"
DEFAULT_DOWNLOADS_PER_NODE = 16  # I/O-bound: many more than a node's cores
# Starting a decode+face actor costs ~4.4 CPU s (a Ray worker, torch, dlib's models), a clip ~0.34 CPU s
# (a 12-row run, 2026-12-06: 39.2 busy CPU s with two actors, 34.6 with one): a small run gets one actor
# per this many rows, so it does not spend more on actors than on its clips.
ROWS_PER_DECODE_ACTOR = 13
TARGET_FILE_MB = 256  # training reads whole files: a few hundred MB each keeps AVSpeech at thousands of files
SPLIT_KEYS = (YTID, "clip")  # what the train/val hash is taken of
# DownloadConfig's field -> the flag that sets it
DOWNLOAD_SETTINGS = {
    "socket_timeout_s": "socket_timeout",
    "retries": "download_retries",
    "backoff_s": "download_backoff",
    "throttle_backoff_s": "throttle_backoff",
    "deadline_s": "download_deadline",
    "max_download_mb": "max_download_mb",
    "max_height": "max_height",
    "max_downloads_per_minute": "max_downloads_per_minute",
    "sleep_requests_s": "sleep_requests",
}


@dataclass(kw_only=True)
class PreprocessConfig:
    csv: str | None = flag(
        None,
        help="AVSpeech CSV (no header: ytid,start,end,x,y); local or s3://. Its videos are downloaded, "
        "or read from --media-root",
    )
    test_csv: str | None = flag(
        None, help="also this CSV, every row in split 'test' (AVSpeech's avspeech_test.csv), in the same run"
    )
    media_root: str | None = flag(
        None, metavar="DIR_OR_S3_PREFIX", help="the videos of --csv that you already hold: no download"
    )
    media_pattern: str = flag(
        "{ytid}.mp4",
        help="a file's name below --media-root, from {ytid}, {start}, {end}, {clip_id}: '{ytid}.mp4' names the "
        "whole video (the segment is cut out of it); e.g. '{ytid}_{start:.3f}_{end:.3f}.mp4' names the segment's clip",
    )
    voxceleb2: str | None = flag(
        None,
        metavar="ROOT",
        help="instead of --csv: a VoxCeleb2 tree ROOT/<speaker>/<video>/<utterance>.mp4 "
        "(local or s3://), split by speaker",
    )
    media_csv: str | None = flag(
        None,
        metavar="FILE",
        help="instead of --csv: your own list of files, header row path,start,end,x,y "
        "and optionally speaker (then split by speaker); paths local, relative to FILE, or s3://",
    )
    out: str = flag(help="output: a local directory or s3://bucket/prefix")
    url_template: str = flag(
        DEFAULT_URL_TEMPLATE,
        help="video URL with {ytid}; the demo uses http://127.0.0.1:PORT/{ytid}.mpd (DASH, as YouTube serves)",
    )
    face_embedder: str = flag(
        "vggface",
        choices=EMBEDDER_NAMES,
        help="vggface: the paper's 4096-D fc7 (needs --vggface-weights); dlib: 128-D, real shipped weights",
    )
    vggface_weights: str | None = flag(
        None,
        metavar="PATH_OR_URI|random",
        help="keras-vggface rcmalli_vggface_tf_vgg16.h5 (local or s3://); "
        "'random' = deterministic random weights, a stand-in for tests and demos, recorded as such in the manifest",
    )
    split_by: str = flag(
        YTID,
        choices=SPLIT_KEYS,
        help="hash key for the train/val split; ytid keeps all segments of a video in one split",
    )
    val_fraction: float = flag(
        0.1, minimum=0, help="share of the videos (of the clips with --split-by clip) held out for val"
    )
    test_fraction: float = flag(
        0.0, minimum=0, help="share of the speakers held out for test, where the source knows speakers"
    )
    split_name: str | None = flag(None, help="put every row of the source in this split instead (e.g. 'test')")
    limit: int | None = flag(None, help="process only the first N rows of each CSV", minimum=1)
    retry_failures: str | None = flag(
        None,
        const="all",
        metavar="REASON[,REASON]",
        help="retry clips that failed in an earlier run: all of them, or "
        f"only downloads that failed for these reasons ({', '.join(REASONS)}), e.g. --retry-failures throttled",
    )
    download_concurrency: int | None = flag(
        None,
        minimum=1,
        help=f"concurrent downloads per node, in threads (default {DEFAULT_DOWNLOADS_PER_NODE}: they "
        "wait on the network; --max-downloads-per-minute caps the rate YouTube sees)",
    )
    cpu_actors: int | None = flag(
        None,
        minimum=1,
        help="decode + face-detection actors (default: CPUs / "
        f"cpus-per-actor, and at most one per {ROWS_PER_DECODE_ACTOR} rows to process)",
    )
    gpu_actors: int | None = flag(
        None,
        minimum=1,
        help="feature actors; set it to ask for GPUs even before the autoscaler has started a GPU "
        "node (default: one per GPU in the cluster now, or 1 CPU actor when it has none)",
    )
    gpus_per_actor: float = flag(1.0, above=0, help="GPUs per feature actor when GPUs exist")
    cpus_per_actor: float = flag(1.0, above=0, help="CPUs reserved by each actor")
    batch_size: int = flag(16, minimum=1, help="clips per feature-stage batch")
    frames_per_clip: int = flag(3, minimum=1, help="frames sampled per clip for the face")
    face_model: str = flag("hog", choices=("hog", "cnn"), help="dlib face detector")
    max_face_distance: float = flag(
        MAX_DISTANCE,
        above=0,
        help="reject a clip whose nearest face centre is farther than this from (x, y), in frame fractions",
    )
    socket_timeout: float = flag(20.0, above=0, help="seconds without data before a download attempt fails")
    download_retries: int = flag(2, minimum=0, help="retries of a throttled or transient download, with backoff")
    download_backoff: float = flag(
        1.0, minimum=0, help="seconds before the first retry of a transient error, doubling per retry"
    )
    throttle_backoff: float = flag(
        30.0,
        minimum=0,
        help="seconds before the first retry of a throttled download (429, bot check), doubling, with jitter",
    )
    download_deadline: float = flag(
        120.0, above=0, help="total seconds for one clip's download, retries included (reason: deadline)"
    )
    max_download_mb: float = flag(200.0, above=0, help="size cap of one downloaded segment (reason: too_large)")
    max_height: int = flag(
        DEFAULT_MAX_HEIGHT,
        minimum=1,
        help="the tallest video format to download (yt-dlp picks the best at or under it; none: reason "
        "over_max_height). The face crop is 224x224: see docs/sources/youtube.md before lowering it",
    )
    cookies: str | None = flag(
        None,
        metavar="PATH_OR_URI",
        help="cookies.txt (Netscape format) for yt-dlp, local or s3://; copied to every node, never logged",
    )
    proxy: str | None = flag(None, help="proxy URL for every download, e.g. socks5://host:1080")
    max_downloads_per_minute: float | None = flag(
        None, above=0, help="download starts per minute per node (default: no limit)"
    )
    sleep_requests: float = flag(0.0, minimum=0, help="seconds yt-dlp sleeps between the requests of one video")
    store_spectrogram: bool = flag(
        False,
        help="also store each clip's float16 spectrogram (615 KB, 3.2x its waveform; the old layout). "
        "Training computes it from the waveform either way; a resumed --out keeps the layout it was started with",
    )
    rows_per_file: int | None = flag(
        None,
        minimum=1,
        help=f"clips per Parquet file (default: about {TARGET_FILE_MB} MB files, ~1,300 clips; a file "
        "is written once it is full, so a killed run redoes the clips of files not yet written)",
    )
    dry_run: bool = flag(
        False,
        help="parse, split and plan the resume only: print rows valid, done, failed earlier "
        "and to do, per split, and the actor pools it would start; downloads nothing and writes "
        "nothing",
    )
    store_landmarks: bool = True  # face_landmarks; False only for an --out begun before the column existed
    split_partitioned: bool = True  # clips/split=<name>/; False only for an --out begun before partitioning
    store_source: bool = True  # speaker and media; False only for an --out begun before them
    store_download: bool = True  # download bytes and formats; False only for an --out begun before them
    extra: dict = field(default_factory=dict)

    def problems(self) -> list[str]:
        found = []
        sources = [name for name in ("csv", "voxceleb2", "media_csv") if getattr(self, name)]
        if len(sources) != 1:
            given = ", ".join("--" + name.replace("_", "-") for name in sources)
            found.append(
                "give one source: --csv (AVSpeech, downloaded or from --media-root), --voxceleb2 ROOT or "
                f"--media-csv FILE{'; got ' + given if given else ''}"
            )
        if (self.media_root or self.test_csv) and not self.csv:
            found.append("--media-root and --test-csv go with --csv")
        if self.media_root:
            try:
                cuts_segment(self.media_pattern)
            except InputError as error:
                found.append(str(error))
        if not self.val_fraction + self.test_fraction < 1:
            total = self.val_fraction + self.test_fraction
            found.append(f"--val-fraction + --test-fraction must be below 1, got {total}")
        if self.retry_failures not in (None, "all"):
            unknown = set(self.retry_failures.split(",")) - set(REASONS)
            if unknown:
                found.append(
                    f"--retry-failures: unknown reason(s) {', '.join(sorted(unknown))}; use no value (all) "
                    f"or some of {', '.join(REASONS)}"
                )
        if self.face_embedder == "vggface" and not self.vggface_weights:
            found.append(
                "--face-embedder vggface needs --vggface-weights PATH_OR_URI (keras-vggface's "
                "rcmalli_vggface_tf_vgg16.h5). No package ships VGG-Face weights; for a test or demo pass "
                f"--vggface-weights {RANDOM_WEIGHTS}, or use --face-embedder dlib."
            )
        return found

    @property
    def source(self) -> str:
        """youtube, files, voxceleb2 or media_csv (speech2face.sources)"""
        if self.csv:
            return "files" if self.media_root else "youtube"
        return "voxceleb2" if self.voxceleb2 else "media_csv"

    def cuts_media(self) -> bool:
        """Whether a row's file holds more than its segment (a whole video), so the segment is cut out of it."""
        return self.source == "media_csv" or (self.source == "files" and cuts_segment(self.media_pattern))

    def layout(self) -> Layout:
        return Layout(
            self.store_spectrogram, self.store_landmarks, self.split_partitioned, self.store_source, self.store_download
        )

    @property
    def random_weights(self) -> bool:
        return self.vggface_weights == RANDOM_WEIGHTS

    def download_config(self) -> DownloadConfig:
        """What each download actor gets; the cookies file is copied by the actor itself (``DownloadStage``)."""
        download = {name: getattr(self, flag) for name, flag in DOWNLOAD_SETTINGS.items()}
        return DownloadConfig(url_template=self.url_template, proxy=self.proxy, **download)
