"""The pipeline as a list of stages (pipelines/streaming.py): blocks, the no-op plan, threaded downloads."""

import threading

import pandas as pd
import pyarrow.parquet as pq

from pipelines import streaming
from pipelines.preprocess import PreprocessConfig
from pipelines.preprocess.sizing import pool_sizes
from pipelines.stages import DownloadStage, pipeline_stages
from speech2face.dataset import EmbedderRecord
from tests.support.loopback_server import serve_site


def test_the_real_plan_with_no_op_stages_passes_every_row_to_parquet(ray_session, tmp_path):
    rows = 300
    todo = pd.DataFrame({"clip_id": [f"v{i:010d}_1.000_5.000" for i in range(rows)], "ytid": [f"v{i:010d}" for i in
                         range(rows)], "start": 1.0, "end": 5.0, "x": 0.5, "y": 0.5, "split": "train", "stage": "",
                         "error": "", "reason": ""})  # fmt: skip
    config = PreprocessConfig(csv="x.csv", out=str(tmp_path), face_embedder="dlib", cpus_per_actor=0.5)
    sizes = pool_sizes(config, {"CPU": 2.0}, rows=rows)
    embedder = EmbedderRecord(name="dlib", dim=128, weights_sha256="d" * 64)
    stages = pipeline_stages(config, str(tmp_path / "failures"), embedder, sizes)
    assert [s.name for s in stages] == ["download", "decode_face", "feature"]
    assert stages[0].kwargs["threads"] == sizes.download_threads and stages[0].concurrent_calls > 1
    assert stages[2].batch_size == config.batch_size and stages[2].kwargs["embedder"] == "dlib"
    plan = streaming.without_work(stages)
    assert [(s.name, s.batch_size, s.pool, s.resources) for s in plan] == [
        (s.name, s.batch_size, s.pool, s.resources) for s in stages
    ]
    block_rows = streaming.rows_per_block(rows, 2)
    dataset = streaming.apply_stages(streaming.source(todo, block_rows), plan)
    dataset.write_parquet(str(tmp_path / "out"), min_rows_per_file=100)
    files = sorted((tmp_path / "out").glob("*.parquet"))
    written = pd.concat([pq.read_table(f).to_pandas() for f in files])
    assert sorted(written["clip_id"]) == sorted(todo["clip_id"])
    assert 1 < len(files) <= rows // 100  # files of at least --rows-per-file rows, not one per block


def test_one_download_actor_runs_its_threads_concurrently(tmp_path):
    threads = 4
    in_flight, most = [0], [0]
    lock, all_arrived = threading.Lock(), threading.Barrier(threads, timeout=30)

    def gone_after_all_arrive(handler, hit: int) -> bool:
        with lock:
            in_flight[0] += 1
            most[0] = max(most[0], in_flight[0])
        try:
            all_arrived.wait()  # sequential downloads would never get here together: the barrier breaks
        except threading.BrokenBarrierError:
            pass
        with lock:
            in_flight[0] -= 1
        handler.send_error(404)
        return True

    ytids = [f"gonevideo{i:02d}" for i in range(threads)]
    scripts = lambda site, release: {f"{ytid}.mp4": gone_after_all_arrive for ytid in ytids}  # noqa: E731
    with serve_site(tmp_path, scripts) as site:
        config = PreprocessConfig(
            csv="x", out="y", url_template=site.url + "/{ytid}.mp4", download_retries=0).download_config()  # fmt: skip
        batch = pd.DataFrame({"clip_id": [f"{y}_1.000_5.000" for y in ytids], "ytid": ytids, "start": 1.0, "end": 5.0,
                              "stage": "", "error": "", "reason": ""})  # fmt: skip
        out = DownloadStage(download=config, threads=threads)(batch)
    assert most[0] == threads, f"at most {most[0]} of {threads} downloads were in flight at once"
    assert list(out["reason"]) == ["unavailable"] * threads and all("404" in e for e in out["error"])
    assert (out["cpu_download_s"] > 0).all()
