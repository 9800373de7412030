"""Preprocessing at AVSpeech scale (issue 12), on this machine. Run it on a quiet machine.

    python -m benchmarks.scale dry-run --rows 10000 100000 1000000 2600000 --out benchmarks/results/scale_dry_run.json
    python -m benchmarks.scale overhead --rows 1000 100000 --out benchmarks/results/scale_overhead.json
    python -m benchmarks.scale unavailable --rows 400 --out benchmarks/results/scale_unavailable.json
    python -m benchmarks.scale evaluate --rows 2000 6000 --out benchmarks/results/scale_evaluate.json
    python -m benchmarks.scale efficiency --corpus /tmp/corpus6 --out benchmarks/results/scale_efficiency.json

dry-run: a synthetic CSV a size (valid 11-character ytids, 4 segments a video, AVSpeech's 3-10 s
segments), then `python -m pipelines.preprocess --dry-run` in a subprocess, as a user runs it: its
wall seconds and peak RSS (os.wait4).

overhead: what Ray Data itself costs a row in the real plan (``pipelines.stages.pipeline_stages``: its
blocks, batch sizes, pools and resources, and the Parquet write) with every stage's work replaced
by a no-op (``streaming.without_work``), on a local Ray of this machine's CPUs.

unavailable: ``preprocess.run`` (the real pipeline) over rows whose downloads all answer 404 from a
loopback server, --download-retries 0: wall seconds a row, with Ray already started.

evaluate: ``python -m trainer.evaluate`` (a subprocess, as a user runs it, joining a Ray started
here through RAY_ADDRESS) on synthetic clips (``benchmarks.device.write_synthetic_data``: random
waveforms and 4096-D features, in files of 500 rows) with an untrained tiny encoder: the driver's
peak RSS at each size (the encoder runs in Ray Data's actors), and its parts sampled from
/proc/<pid>/status (private memory, and the object store's shared pages it has read), next to the
bytes of the features it must keep (face features and predictions, float32).

efficiency: the demo corpus with 6 clips a speaker (90 speakers: 540 train + test clips; generated into --corpus
if missing) through ``preprocess.run`` with dlib, as ``make demo`` runs it, against the sum of its
per-stage CPU seconds (the manifest's ``cpu_s_per_clip``) over the cores. The fixed start-up cost
(actors, models) comes from a second run over the first 8 rows of each CSV into a new output, with the first
run's decode+face pool: its wall time minus those rows' share of the stream.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ALPHABET = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"))


def synthetic_csv(path: Path, rows: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    videos = -(-rows // 4)
    ytids = np.array(["".join(chars) for chars in ALPHABET[rng.integers(0, 64, (videos, 11))]])
    video = np.repeat(np.arange(videos), 4)[:rows]
    start = np.round(rng.uniform(0, 300, rows), 6)
    end = np.round(start + rng.uniform(3, 10, rows), 6)
    x, y = np.round(rng.uniform(0.2, 0.8, (2, rows)), 6)
    with open(path, "w") as file:
        for i in range(rows):
            file.write(f"{ytids[video[i]]},{start[i]},{end[i]},{x[i]},{y[i]}\n")


def measure_dry_run(csv: Path, out: Path) -> dict:
    command = [
        sys.executable,
        "-m",
        "pipelines.preprocess",
        "--csv",
        str(csv),
        "--out",
        str(out),
        "--face-embedder",
        "dlib",
        "--dry-run",
    ]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    output = process.stdout.read().decode()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"dry run failed:\n{output[-3000:]}")
    return {
        "seconds": round(seconds, 2),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "last_line": output.strip().splitlines()[-1],
    }


def dry_run_sizes(rows_list: list[int]) -> list[dict]:
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        for rows in rows_list:
            csv = Path(scratch) / f"avspeech_{rows}.csv"
            synthetic_csv(csv, rows)
            result = {"rows": rows, **measure_dry_run(csv, Path(scratch) / "out")}
            print(f"{rows:>9} rows: {result['seconds']:7.1f} s, peak RSS {result['peak_rss_mb']:7.0f} MB", flush=True)
            results.append(result)
            csv.unlink()
    return results


def _config(csv: str, out: str, **overrides):
    from pipelines import preprocess

    # The demo's and tests' resources on 2 cores: every pool fits at once.
    return preprocess.PreprocessConfig(csv=csv, out=out, face_embedder="dlib", cpus_per_actor=0.5, **overrides)


def overhead(rows_list: list[int]) -> list[dict]:
    """Seconds a row of the real plan with no-op stages, Parquet write included."""
    import ray

    from pipelines import stages, streaming
    from pipelines.preprocess import ledger, sizing
    from speech2face.dataset import EmbedderRecord

    results = []
    for rows in rows_list:
        with tempfile.TemporaryDirectory() as scratch:
            csv = Path(scratch) / "rows.csv"
            synthetic_csv(csv, rows)
            config = _config(str(csv), str(Path(scratch) / "out"))
            failures = str(Path(scratch) / "f")
            todo = ledger.todo_frame(ledger.read_segments(config, failures, write_failures=False))
            embedder = EmbedderRecord(name="dlib", dim=128, weights_sha256="not used")
            resources = ray.cluster_resources()
            sizes = sizing.pool_sizes(config, resources, rows=rows)
            plan = streaming.without_work(stages.pipeline_stages(config, failures, embedder, sizes))
            block_rows = streaming.rows_per_block(rows, resources["CPU"])
            started = time.perf_counter()
            dataset = streaming.apply_stages(streaming.source(todo, block_rows), plan)
            dataset.write_parquet(str(Path(scratch) / "out"), min_rows_per_file=sizing.rows_per_file(config, embedder))
            seconds = time.perf_counter() - started
        results.append(
            {
                "rows": rows,
                "rows_per_block": block_rows,
                "seconds": round(seconds, 2),
                "ms_per_row": round(1e3 * seconds / rows, 3),
            }
        )
        print(
            f"{rows:>9} rows, {block_rows} a block: {seconds:7.1f} s, {1e3 * seconds / rows:6.2f} ms a row", flush=True
        )
    return results


def unavailable(rows: int) -> dict:
    """The real pipeline over ``rows`` rows whose videos are all gone (404 from a loopback server)."""
    from demo_corpus.server import serve_directory, url_template
    from pipelines import preprocess

    with tempfile.TemporaryDirectory() as scratch, serve_directory(scratch) as (_, base_url):
        csv = Path(scratch) / "gone.csv"
        synthetic_csv(csv, rows)
        config = _config(str(csv), str(Path(scratch) / "out"), url_template=url_template(base_url), download_retries=0)
        started = time.perf_counter()
        summary = preprocess.run(config)
        seconds = time.perf_counter() - started
    reasons = summary.counts.failures_per_reason
    assert reasons == {"unavailable": rows}, reasons
    result = {
        "rows": rows,
        "seconds": round(seconds, 2),
        "ms_per_row": round(1e3 * seconds / rows, 1),
        "failures_per_reason": reasons,
    }
    print(f"{rows} unavailable rows: {seconds:.1f} s, {result['ms_per_row']:.1f} ms a row", flush=True)
    return result


# Run in its own process: a forked child's peak RSS (os.wait4) starts from its parent's, so the
# parent must not hold the synthetic clips it wrote.
WRITE_DATA = """
import sys
from pathlib import Path
from benchmarks.device import write_synthetic_data
from speech2face.models import VoiceEncoder
from speech2face.inference import save_model
scratch, rows = Path(sys.argv[1]), int(sys.argv[2])
write_synthetic_data(scratch / "data", rows, feature_dim=4096, rows_per_file=500)
from speech2face.dataset import Manifest
embedder = Manifest.read(str(scratch / "data")).embedder.identity()
save_model(VoiceEncoder("tiny", 4096), str(scratch / "model.safetensors"), {"epoch": 0, "embedder": embedder})
"""


def _sample_rss_parts(pid: int) -> dict:
    """Peaks (MB) of a process's private (RssAnon) and shared-memory (RssShmem) pages, filled in every 0.05 s
    (evaluate's ranking buffers live for about a second) by a thread until the process is gone: the dict
    is complete once the process has been waited for."""
    peaks = {"private": 0.0, "shared": 0.0}

    def sample():
        fields = {"RssAnon": "private", "RssShmem": "shared"}
        while True:
            try:
                status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
            except (FileNotFoundError, ProcessLookupError):
                return
            if "VmRSS" not in status:
                return  # a zombie: exited, not yet waited for
            for field, part in fields.items():
                peaks[part] = max(peaks[part], round(int(status[field].split()[0]) / 1024, 1))
            time.sleep(0.05)

    threading.Thread(target=sample, daemon=True).start()
    return peaks


def evaluate_memory(rows_list: list[int]) -> list[dict]:
    import ray

    # the driver joins a Ray started here, as under `ray job submit`: its peak RSS is its own, not its actors'
    ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    env = os.environ | {"RAY_ADDRESS": ray.get_runtime_context().gcs_address}
    results = []
    for rows in rows_list:
        with tempfile.TemporaryDirectory() as scratch:
            data, model = Path(scratch) / "data", Path(scratch) / "model.safetensors"
            subprocess.run([sys.executable, "-c", WRITE_DATA, scratch, str(rows)], check=True)
            command = [
                sys.executable,
                "-m",
                "trainer.evaluate",
                "--data",
                str(data),
                "--model",
                str(model),
                "--split",
                "train",
                "--out",
                str(Path(scratch) / "eval"),
            ]
            started = time.perf_counter()
            process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
            parts = _sample_rss_parts(process.pid)
            output = process.stdout.read().decode()
            _, status, usage = os.wait4(process.pid, 0)
            if os.waitstatus_to_exitcode(status) != 0:
                raise RuntimeError(f"trainer.evaluate failed:\n{output[-3000:]}")
            queries = json.loads((Path(scratch) / "eval" / "eval.json").read_text())["queries"]
        result = {
            "rows": rows,
            "queries": queries,
            "seconds": round(time.perf_counter() - started, 1),
            "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
            **{f"peak_{k}_mb": v for k, v in parts.items()},
            "features_mb": round(2 * queries * 4096 * 4 / 2**20, 1),
        }
        print(
            f"{rows:>6} clips: peak RSS {result['peak_rss_mb']:7.0f} MB (private {parts['private']:.0f}, object "
            f"store pages {parts['shared']:.0f}; features {result['features_mb']:.0f} MB), {result['seconds']:.0f} s",
            flush=True,
        )
        results.append(result)
    return results


def _preprocess_wall(corpus: Path, out: Path, base_url: str, **overrides) -> tuple[float, dict]:
    from demo_corpus.server import url_template
    from pipelines import preprocess

    config = _config(
        str(corpus / "avspeech_train.csv"),
        str(out),
        url_template=url_template(base_url),
        test_csv=str(corpus / "avspeech_test.csv"),
        **overrides,
    )
    started = time.perf_counter()
    summary = preprocess.run(config)
    return time.perf_counter() - started, summary


def efficiency(corpus: Path) -> dict:
    import ray

    from demo_corpus.corpus import CorpusConfig, generate_corpus
    from demo_corpus.server import serve_directory
    from pipelines.preprocess.sizing import pool_sizes

    generate_corpus(corpus, CorpusConfig(clips_per_speaker=6))
    with tempfile.TemporaryDirectory() as scratch, serve_directory(corpus) as (_, base_url):
        wall, summary = _preprocess_wall(corpus, Path(scratch) / "all", base_url)
        # the small run starts the big run's decode+face pool, so its start-up is the big run's fixed cost
        # (left to itself, it would start one actor per 10 rows)
        rows = summary.processed_this_run
        pool = pool_sizes(_config("", ""), ray.cluster_resources(), rows=rows).face
        small_wall, small = _preprocess_wall(corpus, Path(scratch) / "first8", base_url, limit=8, cpu_actors=pool)
    cores = os.cpu_count()
    clips = summary.counts.clips
    cpu_per_clip = sum(summary.cpu_s_per_clip.values())
    ideal_per_clip = cpu_per_clip / cores  # wall seconds a clip at 100 % of the cores
    startup = max(0.0, small_wall - small.counts.clips * ideal_per_clip)
    stream = wall - startup
    result = {
        "clips": clips,
        "failures": summary.counts.failures,
        "cores": cores,
        "wall_s": round(wall, 1),
        "cpu_s_per_clip": summary.cpu_s_per_clip,
        "cpu_s_per_clip_total": round(cpu_per_clip, 3),
        "startup_s": round(startup, 1),
        "decode_face_actors": pool,
        "small_run": {"clips": small.counts.clips, "wall_s": round(small_wall, 1)},
        "stream_s": round(stream, 1),
        "stream_efficiency": round(clips * ideal_per_clip / stream, 3),
        "overall_efficiency": round(clips * ideal_per_clip / wall, 3),
    }
    print(
        f"{clips} clips: wall {wall:.1f} s = start-up {startup:.1f} s + stream {stream:.1f} s; CPU "
        f"{cpu_per_clip:.3f} s a clip on {cores} cores: stream {100 * result['stream_efficiency']:.0f} % "
        f"efficient, {100 * result['overall_efficiency']:.0f} % overall",
        flush=True,
    )
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.scale", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("what", choices=["dry-run", "overhead", "unavailable", "evaluate", "efficiency"])
    p.add_argument("--corpus", type=Path, default=Path("/tmp/s2f-corpus6"), help="efficiency: the corpus directory")
    p.add_argument("--rows", type=int, nargs="+", help="sizes (default: 10k..2.6M; 1k and 100k; 400; 2k and 6k)")
    p.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = p.parse_args(argv)
    load_before = os.getloadavg()
    if args.what == "dry-run":
        figures = dry_run_sizes(args.rows or [10_000, 100_000, 1_000_000, 2_600_000])
    elif args.what == "evaluate":
        figures = evaluate_memory(args.rows or [2_000, 6_000])
    elif args.what == "efficiency":
        figures = efficiency(args.corpus)
    else:
        import ray

        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
        figures = (
            overhead(args.rows or [1_000, 100_000]) if args.what == "overhead" else unavailable((args.rows or [400])[0])
        )
    report = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "cpus": os.cpu_count(),
        "load_before": load_before,
        "load_after": os.getloadavg(),
        args.what: figures,
    }
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
