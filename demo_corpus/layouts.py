"""The demo corpus laid out as media people already hold (docs/sources/): each segment's own clip, as a
pre-downloaded AVSpeech copy, and a VoxCeleb2 tree of 224x224 face tracks. Written locally; ``upload``
copies a layout to S3. Real ffmpeg; it imports no Ray.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from demo_corpus.corpus import MANIFEST_NAME, TEST_CSV, TRAIN_CSV, read_manifest
from speech2face import storage
from speech2face.sources import fetch_media

CLIP_PATTERN = "{ytid}_{start:.3f}_{end:.3f}.mp4"  # the --media-pattern of the segment clips
TRACK_SIDE = 224  # VoxCeleb2's clips are 224x224


def segment_clips(corpus_dir: str | Path, out_dir: str | Path) -> Path:
    """Every segment of the corpus's CSVs cut out of its video (as yt-dlp cuts it) into ``out_dir``,
    named by CLIP_PATTERN; the CSVs go beside them. Clips already there are kept."""
    corpus_dir, out_dir = Path(corpus_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for speaker, segment in _segments(corpus_dir):
        target = out_dir / CLIP_PATTERN.format(ytid=speaker["ytid"], start=segment["start"], end=segment["end"])
        if not target.is_file():
            cut = fetch_media(str(corpus_dir / speaker["video"]), segment["start"], segment["end"], True, out_dir)
            cut.rename(target)
    for name in (TRAIN_CSV, TEST_CSV):
        (out_dir / name).write_bytes((corpus_dir / name).read_bytes())
    return out_dir


def voxceleb2_tree(corpus_dir: str | Path, clips_dir: str | Path, root: str | Path) -> Path:
    """The segment clips as VoxCeleb2 lays them out: ``root/id<face>/<ytid>/<n>.mp4``, each cropped to a
    square around the speaker's face and scaled to 224x224 (a face track), the audio copied as it is."""
    corpus_dir, clips_dir, root = Path(corpus_dir), Path(clips_dir), Path(root)
    video = read_manifest(corpus_dir)["video"]
    side = min(video["height"], 2 * video["face_size"])
    for speaker, segment, number in _numbered(corpus_dir):
        target = root / f"id{speaker['face_index']:05d}" / speaker["ytid"] / f"{number:05d}.mp4"
        if target.is_file():
            continue
        left = min(max(round(speaker["x"] * video["width"] - side / 2), 0), video["width"] - side)
        top = min(max(round(speaker["y"] * video["height"] - side / 2), 0), video["height"] - side)
        clip = clips_dir / CLIP_PATTERN.format(ytid=speaker["ytid"], start=segment["start"], end=segment["end"])
        target.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(clip),
                        "-vf", f"crop={side}:{side}:{left}:{top},scale={TRACK_SIDE}:{TRACK_SIDE}",
                        "-c:v", "libx264", "-c:a", "copy", str(target)], check=True)  # fmt: skip
    return root


def upload(local_dir: str | Path, uri: str) -> int:
    """Copy every file below ``local_dir`` to the same relative path below ``uri``; returns the count."""
    files = [path for path in sorted(Path(local_dir).rglob("*")) if path.is_file()]
    for path in files:
        storage.write_bytes(storage.join(uri, path.relative_to(local_dir).as_posix()), path.read_bytes())
    return len(files)


def _segments(corpus_dir: Path):
    manifest = read_manifest(corpus_dir)
    if manifest is None:
        raise FileNotFoundError(f"{corpus_dir} holds no {MANIFEST_NAME}: generate the corpus first")
    for speaker in manifest["speakers"]:
        for segment in speaker["segments"]:
            yield speaker, segment


def _numbered(corpus_dir: Path):
    count: dict[str, int] = {}
    for speaker, segment in _segments(corpus_dir):
        count[speaker["ytid"]] = count.get(speaker["ytid"], 0) + 1
        yield speaker, segment, count[speaker["ytid"]]
