"""Bytes a 6 s clip costs to download, by where the segment sits in a 10-minute video.

A 10-minute video is published as YouTube serves one (``demo_corpus.dash``): H.264 720p (itag 136) and
360p (134) video-only formats and an Opus audio-only format (251), on a loopback origin that honours
byte ranges (``demo_corpus.server``). For 6 s segments at 10 %, 50 % and 90 % of the video, the product's
downloader (``speech2face.download.download_segment``, the pipeline's own code path) fetches each segment;
its ``bytes_read`` is counted by the client (ffmpeg's own count of what it read from the network). Beside
it, for the formats yt-dlp chose:

- the segment's own share: the bytes of the packets inside the segment, by ffprobe;
- a whole-file download (what the seed did): the sizes of the chosen formats;
- the same segment of the video as one muxed mp4 (H.264 720p + AAC, its index in front) from an origin
  that ignores ``Range`` (``python -m http.server``, what the demo served before: ffmpeg reads the file
  from its start);
- the bytes each origin *sent*: more than the client read, as loopback socket buffers take what a
  client then abandons.

    python -m benchmarks.download_bytes --json benchmarks/results/download_bytes.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
from pathlib import Path

from benchmarks.train_step import finish_report, new_report
from demo_corpus import dash
from demo_corpus.server import serve_directory, url_template
from speech2face.download import DownloadConfig, download_segment

YTID = "tenMinutes1"
MINUTES = 10
POSITIONS = (0.1, 0.5, 0.9)
SEGMENT_S = 6.0
# The 720p stream as encoded below, published as it is; 360p (same keyframes) and Opus made from it
H264_720 = dash.Format("136", "avc1.4d401f", "mp4", ("-c", "copy"))
H264_360 = dash.Format("134", "avc1.4d401f", "mp4", ("-c:v", "libx264", "-preset", "ultrafast", "-b:v", "500k",
                                                     "-g", "150", "-pix_fmt", "yuv420p"), 360)  # fmt: skip


def make_video(folder: Path) -> Path:
    """10 minutes of 720p30 H.264 at ~1.5 Mbit/s with a keyframe every 5 s (YouTube's 720p H.264 is
    1-2.5 Mbit/s), over 48 kHz noise (Opus then spends its whole bitrate)."""
    path = folder / "source.mp4"
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30",
         "-f", "lavfi", "-i", "anoisesrc=sample_rate=48000:amplitude=0.3", "-t", str(MINUTES * 60),
         "-c:v", "libx264", "-preset", "ultrafast", "-b:v", "1500k", "-maxrate", "2000k", "-bufsize", "3000k",
         "-g", "150", "-pix_fmt", "yuv420p", "-c:a", "aac", str(path)],
        check=True,
    )  # fmt: skip
    return path


def share_bytes(path: Path, start: float, end: float) -> int:
    """Bytes of the packets of ``path`` whose presentation time is inside ``[start, end)``."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "packet=pts_time,size", "-of", "json", str(path)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    packets = json.loads(out)["packets"]
    return sum(int(p["size"]) for p in packets if "pts_time" in p and start <= float(p["pts_time"]) < end)


def measure(folder: Path, ranges: bool, max_height: int = 720) -> list[dict]:
    """``ranges``: the DASH formats from a Range-honouring origin; else the one muxed mp4 from an origin
    that ignores Range, as the demo served it before."""
    rows = []
    with serve_directory(folder, ranges=ranges) as (server, base_url):
        template = url_template(base_url) if ranges else f"{base_url}/{{ytid}}.mp4"
        config = DownloadConfig(url_template=template, max_height=max_height, retries=0)
        for position in POSITIONS:
            start = round(position * MINUTES * 60, 3)
            sent_before = len(server.sent)
            with tempfile.TemporaryDirectory() as out:
                got = download_segment(YTID, start, start + SEGMENT_S, out, config)
            chosen = _files(folder, got.video_format, got.audio_format) if ranges else [folder / f"{YTID}.mp4"]
            share = sum(share_bytes(path, start, start + SEGMENT_S) for path in chosen)
            whole = sum(path.stat().st_size for path in chosen)
            sent = sum(s.bytes for s in server.sent[sent_before:] if not s.path.endswith(".mpd"))
            rows.append({
                "position": position, "start_s": start, "video": got.video_format,
                "audio": got.audio_format, "bytes_read": got.bytes_read, "bytes_sent_by_origin": sent,
                "segment_share_bytes": share, "whole_file_bytes": whole,
                "read_over_share": round(got.bytes_read / share, 3),
                "read_over_whole": round(got.bytes_read / whole, 4),
                "requests": len(server.sent) - sent_before,
            })  # fmt: skip
            print(json.dumps(rows[-1]), flush=True)
    return rows


def _files(folder: Path, video_format: str, audio_format: str) -> list[Path]:
    itags = (video_format.split()[0], audio_format.split()[0])
    return [folder / YTID / f"{itag}.{'webm' if itag == dash.OPUS.itag else 'mp4'}" for itag in itags]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", help="keep the video and its formats here (default: a temp folder)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    report = new_report("benchmarks.download_bytes", argv)
    with tempfile.TemporaryDirectory(prefix="s2f-bytes-") as temp:
        folder = Path(args.work or temp)
        folder.mkdir(parents=True, exist_ok=True)
        if not (folder / f"{YTID}.mpd").exists():
            source = make_video(folder)
            dash.publish(source, folder, YTID, [H264_720, H264_360, dash.OPUS])
            subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(source), "-c", "copy", "-movflags",
                            "+faststart", str(folder / f"{YTID}.mp4")], check=True)  # fmt: skip
        report["machine"]["load_average_at_start"] = os.getloadavg()
        report["ranges_720p"] = measure(folder, ranges=True, max_height=720)
        report["ranges_360p"] = measure(folder, ranges=True, max_height=360)
        report["no_ranges_muxed"] = measure(folder, ranges=False)
    finish_report(report, args.json)


if __name__ == "__main__":
    main()
