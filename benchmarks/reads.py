"""Reading a big preprocess output (issue 31): bytes read against bytes stored, time and memory. Run it quietly.

    python -m benchmarks.reads resume --shards 2000 --rows 2600000 --work /var/tmp/s2f-reads \\
        --out benchmarks/results/reads_resume.json
    python -m benchmarks.reads resume-s3 --shards 80 --rows 52000 --work /var/tmp/s2f-reads-s3 \\
        --out benchmarks/results/reads_resume_s3.json
    python -m benchmarks.reads readers --gb 6 --work /var/tmp/s2f-reads-6gb --before-code /tmp/s2f-before \\
        --out benchmarks/results/reads_readers.json

resume: a synthetic existing output as preprocessing writes it (``clips/split=<name>/`` shards of the
contract's schema: real ids, splits, dlib-size features, face JPEG-size payloads, landmarks; the waveform
cut to 800 samples so 2.6 M rows fit this disk) and the AVSpeech-style CSV of the same rows. Then, each
in its own process: ``python -m pipelines.preprocess --dry-run`` as a user runs it, and the resume plan a
real run makes before its first download (``ledger.read_segments`` + ``ledger.plan``). Each reports its
wall seconds, peak RSS and ``rchar`` (every byte its read calls returned: the CSV, Python's files, and
the output's bytes) against the bytes stored. resume-s3: the same with the output on a throwaway Ceph
RGW (the tests' ``tests.support.rgw``; its in-memory OSD holds 1 GiB, hence fewer shards), counting the
bytes RGW's GETs sent (its ``get_b`` perf counter).

readers: an output of full 96,000-sample waveforms and 4096-D features (>= --gb), in the partitioned
layout and in the layout before it, then in a process each: the serve/predict gallery of the test split
(``speech2face.inference.Gallery``, which trainer.predict and serving load), ``has_landmarks``, and one
pass over the val split of the lazy training path (``trainer.encoder.data.split_datasets``, in a local
Ray: the bytes are the ``rchar`` of Ray's worker processes). ``--before-code`` is a checkout of the code
before this change (``git worktree add /tmp/s2f-before 010ad9d``): it reads the old layout, this tree the new.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]


def rchar(pid: str | int = "self") -> int:
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise RuntimeError("no rchar in /proc/<pid>/io")


def stored_bytes(directory: Path) -> int:
    return sum(path.stat().st_size for path in directory.rglob("*") if path.is_file())


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "")
    return {"cpu": cpu, "cores": os.cpu_count(), "load_before": os.getloadavg()[0], "python": platform.python_version()}


# --- the synthetic outputs -------------------------------------------------------------------------------


def _payload(rows: int, seed: int, samples: int, dim: int, jpeg_bytes: int, landmarks: bool) -> dict:
    """Every column but the ids and split, as the contract types them (random bytes: nothing compresses)."""
    from speech2face import dataset
    from speech2face.dataset import CPU_STAGES

    rng = np.random.default_rng(seed)
    columns = {
        dataset.WAVEFORM: dataset.tensor_array(rng.integers(-3000, 3000, (rows, samples), dtype=np.int16)),
        dataset.FACE_JPEG: pa.array([rng.bytes(jpeg_bytes) for _ in range(rows)], pa.binary()),
        dataset.FACE_BOX: pa.array([[10, 200, 200, 10]] * rows, pa.list_(pa.int32(), 4)),
        dataset.FRAME_TIME: pa.array(rng.uniform(0, 3, rows)),
        dataset.FACE_FEATURE: dataset.tensor_array(rng.standard_normal((rows, dim), dtype=np.float32)),
        dataset.EMBEDDER: pa.array(["dlib" if dim == 128 else "vggface"] * rows),
        dataset.DURATION_S: pa.array(rng.uniform(3, 10, rows)),
        dataset.CPU_S: pa.array([dict.fromkeys(CPU_STAGES, 0.1)] * rows),
    }
    if landmarks:
        columns[dataset.FACE_LANDMARKS] = dataset.tensor_array(rng.uniform(0, 224, (rows, 68, 2)).astype(np.float32))
    return columns


def _segments(rows: int, seed: int, val_fraction: float = 0.1, test_fraction: float = 0.0):
    """AVSpeech-style rows (4 segments a video) with the clip ids and splits the product gives them."""
    from benchmarks.scale import ALPHABET
    from speech2face.avspeech import clip_id, split_of

    rng = np.random.default_rng(seed)
    videos = -(-rows // 4)
    ytids = np.array(["".join(chars) for chars in ALPHABET[rng.integers(0, 64, (videos, 11))]])[
        np.repeat(np.arange(videos), 4)[:rows]
    ]
    start = np.round(rng.uniform(0, 300, rows), 6)
    end = np.round(start + rng.uniform(3, 10, rows), 6)
    ids = [clip_id(y, s, e) for y, s, e in zip(ytids.tolist(), start.tolist(), end.tolist(), strict=True)]
    video_split = {y: split_of(y, val_fraction) for y in dict.fromkeys(ytids.tolist())}
    test_videos = set(list(video_split)[: int(len(video_split) * test_fraction)])
    splits = ["test" if y in test_videos else video_split[y] for y in ytids.tolist()]
    return ytids, start, end, ids, splits


def _write_shards(clips: Path, ytids, start, end, ids, splits, rows_per_shard: int, payload: dict, partitioned: bool):
    """Shards as preprocessing writes them: ``rows_per_shard`` rows cut into split files, 256-row row groups."""
    from pipelines.preprocess.sizing import ROW_GROUP_ROWS
    from speech2face import dataset

    splits = np.array(splits)
    for index, first in enumerate(range(0, len(ids), rows_per_shard)):
        chunk = slice(first, first + rows_per_shard)
        n = len(ids[chunk])
        table = pa.table(
            {
                dataset.CLIP_ID: ids[chunk],
                dataset.YTID: ytids[chunk],
                dataset.START: start[chunk],
                dataset.END: end[chunk],
                dataset.X: np.full(n, 0.5),
                dataset.Y: np.full(n, 0.5),
                dataset.SPLIT: splits[chunk],
                **{name: column.slice(0, n) for name, column in payload.items()},
            }
        )
        for split in np.unique(splits[chunk]) if partitioned else [None]:
            part = table if split is None else table.filter(pc.equal(table[dataset.SPLIT], split))
            directory = clips / f"{dataset.SPLIT}={split}" if split is not None else clips
            if split is not None:
                part = part.drop_columns([dataset.SPLIT])
            directory.mkdir(parents=True, exist_ok=True)
            pq.write_table(part, directory / f"shard-{index:05d}.parquet", row_group_size=ROW_GROUP_ROWS)


def _manifest(out: Path, dim: int, splits, partitioned: bool, landmarks: bool) -> None:
    from speech2face.dataset import Counts, EmbedderRecord, Layout, Manifest

    names, counts = np.unique(np.array(splits), return_counts=True)
    manifest = Manifest(
        embedder=EmbedderRecord("dlib" if dim == 128 else "vggface", dim, "b" * 64),
        layout=Layout(store_landmarks=landmarks, split_partitioned=partitioned),
        counts=Counts(clips=len(splits), per_split={str(k): int(v) for k, v in zip(names, counts, strict=True)}),
    )
    values = manifest.to_dict()
    if not partitioned:  # as the code before partitioning wrote it
        values["version"] = 2
        values["layout"].pop("split_partitioned")
    (out / "manifest.json").write_text(json.dumps(values, indent=2))


def make_resume_output(work: Path, shards: int, rows: int) -> tuple[Path, Path]:
    out, csv = work / "out", work / "avspeech.csv"
    if (out / "manifest.json").exists() and csv.exists():
        return out, csv
    ytids, start, end, ids, splits = _segments(rows, seed=0)
    with open(csv, "w") as file:
        for y, s, e in zip(ytids.tolist(), start.tolist(), end.tolist(), strict=True):
            file.write(f"{y},{s},{e},0.5,0.5\n")
    payload = _payload(-(-rows // shards), seed=1, samples=800, dim=128, jpeg_bytes=8 << 10, landmarks=True)
    _write_shards(out / "clips", ytids, start, end, ids, splits, -(-rows // shards), payload, partitioned=True)
    (out / "failures").mkdir(exist_ok=True)
    _manifest(out, 128, splits, partitioned=True, landmarks=True)
    return out, csv


def make_realistic_outputs(work: Path, gigabytes: float) -> dict[str, Path]:
    """The same clips twice: partitioned ("after") and as the code before partitioning wrote them ("before")."""
    row_kb = 96000 * 2 / 1024 + 4096 * 4 / 1024 + 8 + 0.5
    rows = int(gigabytes * (1 << 20) / row_kb) + 1
    outputs = {"after": work / "partitioned", "before": work / "unpartitioned"}
    ytids, start, end, ids, splits = _segments(rows, seed=2, val_fraction=0.1, test_fraction=0.1)
    for name, out in outputs.items():
        if (out / "manifest.json").exists():
            continue
        partitioned = name == "after"
        for index, first in enumerate(range(0, rows, 1300)):  # 256 MB shards, 1300 rows
            chunk = slice(first, first + 1300)
            payload = _payload(len(ids[chunk]), 10 + index, 96000, 4096, 8 << 10, landmarks=True)
            _write_shards(out / "clips" / f"batch{index:03d}", ytids[chunk], start[chunk], end[chunk], ids[chunk],
                          splits[chunk], 1300, payload, partitioned)  # fmt: skip
        _flatten(out / "clips")
        _manifest(out, 4096, splits, partitioned, landmarks=True)
    return outputs


def _flatten(clips: Path) -> None:
    """clips/batchNNN/[split=x/]shard.parquet -> clips/[split=x/]batchNNN-shard.parquet."""
    for path in sorted(clips.glob("batch*/**/*.parquet")):
        batch = next(p for p in path.parents if p.name.startswith("batch"))
        target = clips / path.parent.relative_to(batch) / f"{batch.name}-{path.name}"
        target.parent.mkdir(parents=True, exist_ok=True)
        path.rename(target)
    for batch in sorted(p for p in clips.glob("batch*") if p.is_dir()):
        for directory in sorted(batch.rglob("*"), reverse=True):
            directory.rmdir()
        batch.rmdir()


# --- what each measured process runs ----------------------------------------------------------------------


def _measured(task: str, argument: str) -> dict:
    """In the measured process: import what ``task`` needs, then run it and return its seconds, peak RSS
    and rchar (the imports' reads of Python files are not counted: they are no part of the output)."""
    run = TASKS[task](argument)
    before, started = rchar(), time.perf_counter()
    detail = run()
    return {
        "seconds": round(time.perf_counter() - started, 2),
        "rchar_bytes": rchar() - before,
        "rchar_process_bytes": rchar(),  # from the process's start: imports and all
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        **detail,
    }


def _dry_run(args: str):
    from pipelines.preprocess.run import main

    csv, out = args.split("|")
    return lambda: {"exit_code": main(["--csv", csv, "--out", out, "--face-embedder", "dlib", "--dry-run"])}


def _resume_plan(args: str):
    from pipelines.preprocess.config import PreprocessConfig
    from pipelines.preprocess.ledger import plan, read_segments
    from speech2face import dataset

    csv, out = args.split("|")
    config = PreprocessConfig(csv=csv, out=out, face_embedder="dlib")

    def run() -> dict:
        segments = read_segments(config, dataset.failures_uri(out), write_failures=False)
        todo = plan(config, segments, dataset.clips_uri(out), dataset.failures_uri(out))
        return {"valid_rows": len(segments), "to_do": len(todo)}

    return run


def _gallery(data: str):
    from speech2face.inference import Gallery

    return lambda: {"gallery_faces": len(Gallery(data, "test"))}


def _has_landmarks(data: str):
    from trainer.decoder.data import has_landmarks

    return lambda: {"has_landmarks": has_landmarks(data)}


def _val_pass(data: str):
    """One pass over the lazy val dataset; the bytes are those Ray's worker processes read meanwhile (a worker
    started during the pass counts its imports too: an overcount)."""
    import ray

    from trainer.encoder.data import split_datasets

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    sum(1 for _ in ray.data.range(4).iter_batches())  # workers up before the count starts

    def workers() -> dict:
        return {p.name: rchar(p.name) for p in Path("/proc").iterdir() if _is_ray_worker(p)}

    def run() -> dict:
        before = workers()
        val = split_datasets(data, splits=("val",))["val"]
        rows = sum(len(b[next(iter(b))]) for b in val.iter_batches(batch_size=256, batch_format="numpy"))
        after = workers()
        ray.shutdown()
        return {"val_rows": rows, "workers_rchar_bytes": sum(after[pid] - before.get(pid, 0) for pid in after)}

    return run


def _is_ray_worker(path: Path) -> bool:
    if not path.name.isdigit():
        return False
    try:
        return b"default_worker.py" in (path / "cmdline").read_bytes() or (path / "comm").read_text().startswith(
            "ray::"
        )
    except OSError:
        return False


TASKS = {"dry-run": _dry_run, "resume-plan": _resume_plan, "gallery": _gallery, "has-landmarks": _has_landmarks,
         "val-pass": _val_pass}  # fmt: skip


def run_measured(task: str, argument: str, code: Path = ROOT, env: dict | None = None) -> dict:
    """``task`` in a fresh process whose product code is ``code`` (this tree, or a checkout of the code before)."""
    program = (
        "import importlib.util, json, sys; "
        "spec = importlib.util.spec_from_file_location('reads_benchmark', sys.argv[3]); "
        "bench = importlib.util.module_from_spec(spec); spec.loader.exec_module(bench); "
        "print('RESULT ' + json.dumps(bench._measured(sys.argv[1], sys.argv[2])))"
    )
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | (env or {}) | {"PYTHONPATH": str(code)}
    command = [sys.executable, "-c", program, task, argument, __file__]
    result = subprocess.run(command, cwd=code, env=env | {"RAY_AUTH_MODE": "disabled"}, capture_output=True, text=True)
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    if result.returncode != 0 or not lines:
        raise RuntimeError(f"{task} failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


# --- column bytes, from the files' own metadata ------------------------------------------------------------


def column_bytes(clips: Path, columns: list[str], split: str) -> int:
    """Compressed bytes of ``columns`` in the files of ``split`` of a partitioned output."""
    total = 0
    for path in clips.rglob("*.parquet"):
        if path.parent.name != f"split={split}":
            continue
        metadata = pq.ParquetFile(path).metadata
        for group in range(metadata.num_row_groups):
            chunks = metadata.row_group(group)
            for index in range(chunks.num_columns):
                chunk = chunks.column(index)
                if chunk.path_in_schema.split(".")[0] in columns:
                    total += chunk.total_compressed_size
    return total


# --- the two benchmarks -----------------------------------------------------------------------------------


def resume(args) -> dict:
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    out, csv = make_resume_output(work, args.shards, args.rows)
    print(f"output ready in {time.perf_counter() - started:.0f} s: {out}", flush=True)
    stored = stored_bytes(out)
    files = len(list((out / "clips").rglob("*.parquet")))
    result = {"shards": files, "rows": args.rows, "stored_bytes": stored, "csv_bytes": csv.stat().st_size}
    for task in ("dry-run", "resume-plan"):
        measured = run_measured(task, f"{csv}|{out}")
        measured["rchar_of_stored"] = round(measured["rchar_bytes"] / stored, 5)
        measured["rchar_without_csv_of_stored"] = round((measured["rchar_bytes"] - csv.stat().st_size) / stored, 5)
        print(task, json.dumps(measured), flush=True)
        result[task] = measured
    return result


def rgw_bytes_sent(server) -> int:
    """Bytes RGW has sent in answer to GETs (its ``get_b`` counter, through its admin socket)."""
    socket = str(server.workdir / "client.rgw.asok")
    dump = subprocess.run(
        ["ceph", "--admin-daemon", socket, "perf", "dump"], capture_output=True, text=True, check=True
    )
    return json.loads(dump.stdout)["rgw"]["get_b"]


def resume_on_s3(args) -> dict:
    """The same resume plan with the output on a real Ceph RGW (an in-memory OSD of 1 GiB: fewer shards)."""
    from pyarrow import fs as pafs

    from tests.support.rgw import start_rgw

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    out, csv = make_resume_output(work, args.shards, args.rows)
    result = {
        "shards": len(list((out / "clips").rglob("*.parquet"))),
        "rows": args.rows,
        "stored_bytes": stored_bytes(out),
    }
    with tempfile.TemporaryDirectory(dir=work) as rgw_dir, start_rgw(rgw_dir) as server:
        server.create_bucket("reads")
        pafs.copy_files(str(out), "reads/out", source_filesystem=pafs.LocalFileSystem(),
                        destination_filesystem=server.filesystem())  # fmt: skip
        for task in ("dry-run", "resume-plan"):
            before = rgw_bytes_sent(server)
            measured = run_measured(task, f"{csv}|s3://reads/out", env=server.env())
            measured["rgw_sent_bytes"] = rgw_bytes_sent(server) - before
            measured["rgw_sent_of_stored"] = round(measured["rgw_sent_bytes"] / result["stored_bytes"], 5)
            print(task, json.dumps(measured), flush=True)
            result[task] = measured
    return result


def readers(args) -> dict:
    """Before and after on the same clips; each ratio's denominator is those clips' column bytes, from the
    partitioned output's metadata (the unpartitioned files mix splits, so theirs are not separable)."""
    from speech2face.dataset import CLIP_ID, FACE_FEATURE, WAVEFORM, YTID

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    outputs = make_realistic_outputs(work, args.gb)
    clips = outputs["after"] / "clips"
    result = {
        "gallery_kept_column_bytes": column_bytes(clips, [CLIP_ID, YTID, FACE_FEATURE], "test"),
        "val_column_bytes": column_bytes(clips, [CLIP_ID, YTID, WAVEFORM, FACE_FEATURE], "val"),
    }
    codes = {"after": ROOT, "before": Path(args.before_code) if args.before_code else None}
    for name, out in outputs.items():
        if codes[name] is None:
            continue
        entry = {"stored_bytes": stored_bytes(out)}
        for task in ("gallery", "has-landmarks", "val-pass"):
            entry[task] = run_measured(task, str(out), codes[name])
            print(name, task, json.dumps(entry[task]), flush=True)
        entry["gallery_rchar_of_kept"] = round(entry["gallery"]["rchar_bytes"] / result["gallery_kept_column_bytes"], 3)
        entry["val_rchar_of_val_columns"] = round(
            entry["val-pass"]["workers_rchar_bytes"] / result["val_column_bytes"], 3
        )
        result[name] = entry
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.reads", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    commands = parser.add_subparsers(dest="command", required=True)
    first = commands.add_parser("resume", help="--dry-run and the resume plan over an existing output")
    first.add_argument("--shards", type=int, default=2000)
    first.add_argument("--rows", type=int, default=2_600_000)
    on_s3 = commands.add_parser("resume-s3", help="the same on a real Ceph RGW: bytes its GETs sent")
    on_s3.add_argument("--shards", type=int, default=80)
    on_s3.add_argument("--rows", type=int, default=52_000)
    second = commands.add_parser("readers", help="gallery, has_landmarks and a val pass, before and after")
    second.add_argument("--gb", type=float, default=5.0)
    second.add_argument("--before-code", help="a checkout of the code before this change (its old layout)")
    for sub in (first, on_s3, second):
        sub.add_argument("--work", required=True, help="where the synthetic output is written (kept for reruns)")
        sub.add_argument("--out", help="write the result JSON here")
    args = parser.parse_args(argv)
    meta = {"command": "python -m benchmarks.reads " + " ".join(sys.argv[1:] if argv is None else argv),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), **machine()}  # fmt: skip
    result = meta | {"resume": resume, "resume-s3": resume_on_s3, "readers": readers}[args.command](args)
    result["load_after"] = os.getloadavg()[0]
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
