"""`make demo` on its default corpus, run once: it proves the voice encoder learns, then its report,
trainer.evaluate and trainer.predict are checked on what it wrote, and a rerun reuses all of it.
The corpus is the default; the encoder trains 12 epochs instead of 20, and the sweep and the face decoder are
shorter (``tests.support.cli.SUITE_DEMO_ARGS``): their report sections are checked here, their quality in benchmarks/.

The test runs the real Makefile target, as a user does. The demo corpus (90 speakers x 3 clips, 24 of them
test-only) makes each speaker's espeak-ng voice a fixed function of their face's dlib descriptor, so with
dlib faces the link carries over to unseen speakers; the test speakers (avspeech_test.csv) are disjoint
from the training speakers. Training is seeded, with one worker and ordered data, so the figures repeat on
the same machine; they are printed with the results.
"""

import json
import re
import subprocess

import numpy as np
import pytest
from PIL import Image

from demo.run import DemoConfig
from speech2face import flags, storage
from tests.support.cli import SUITE_DEMO_ARGS, MakeDemo, check, read_metrics, run

# The demo runs beside the other tests (conftest.py); the learning test, first here, waits for it.
pytestmark = pytest.mark.timeout(1800)

SUITE_DEMO = flags.parse(DemoConfig, list(SUITE_DEMO_ARGS), "demo")  # what the suite's `make demo` runs
EPOCHS, TRIALS, DECODER_EPOCHS = SUITE_DEMO.epochs, SUITE_DEMO.trials, SUITE_DEMO.decoder_epochs


def _make_demo(out) -> tuple[subprocess.CompletedProcess, float]:
    demo = MakeDemo(out)  # the same arguments as the first run: all of it is reused
    try:
        return _succeeded(demo.result())
    finally:
        demo.stop()


def _succeeded(outcome: tuple[subprocess.CompletedProcess, float]) -> tuple[subprocess.CompletedProcess, float]:
    result, _ = outcome
    output = f"stdout:\n{result.stdout[-4000:]}\nstderr:\n{result.stderr[-4000:]}"
    assert result.returncode == 0, output
    return outcome


@pytest.fixture(scope="module")
def demo(background_demo):
    """The session's background `make demo` (conftest.py), once it has finished."""
    first, first_s = _succeeded(background_demo.result())
    return background_demo.out, first, first_s


@pytest.fixture(scope="module")
def run_dir(demo):
    return demo[0] / "runs" / "demo"


@pytest.fixture(scope="module")
def data(demo):
    return demo[0] / "data"


@pytest.fixture(scope="module")
def evaluation(demo):
    """The table the demo's trainer.evaluate step printed (in its log), and what it wrote: a job that joined
    the demo's Ray."""
    out, log = demo[0] / "eval", (demo[0] / "logs" / "evaluate.log").read_text()
    table = log[log.index("Retrieval on ") : log.index("\n", log.index("R@100"))]
    return table, json.loads((out / "eval.json").read_text()), out


def test_learns_voice_to_face_on_unseen_speakers(demo, evaluation, run_dir, capsys):
    _, first, _ = demo
    assert f"epoch {EPOCHS}/{EPOCHS}" in first.stdout + first.stderr
    table, report, _ = evaluation
    recall = {row["k"]: row for row in report["recall"]}
    with capsys.disabled():  # the exact figures, in the test output
        print(f"\n[learning] {run_dir.name}: best epoch {report['model_info']['epoch']}, "
              f"metrics per epoch:\n{storage.read_bytes(str(run_dir / 'metrics.csv')).decode()}{table}")  # fmt: skip
    assert report["gallery_size"] >= 20 and report["queries"] >= 3 * 20
    assert recall[1]["chance"] == pytest.approx(1 / report["gallery_size"])
    assert recall[1]["recall"] >= 3 * recall[1]["chance"], table
    assert recall[5]["recall"] >= 2 * recall[5]["chance"], table
    assert read_metrics(run_dir)[-1]["train_loss"] < read_metrics(run_dir)[0]["train_loss"]


def test_make_demo_writes_a_report_with_every_section_and_image(demo):
    out, first, _ = demo
    assert f"Report: {out}/REPORT.md" in first.stdout
    assert "Ray dashboard: http://127.0.0.1:" in first.stdout
    serve_line = (f"python -m serving.app --model {out}/runs/demo/model.safetensors --gallery {out}/data"
                  f" --decoder {out}/runs/decoder/decoder.safetensors")  # fmt: skip
    assert serve_line in first.stdout.splitlines()[-1]  # its last line: how to try it
    ray_data_log = (out / "logs" / "preprocess.log").read_text()  # Ray's logging: in the step's log, not the console
    assert "Running Dataset" in ray_data_log and "Running Dataset" not in first.stdout
    report = (out / "REPORT.md").read_text()
    for protocol in ("Oh et al. protocol", "Identity protocol", "Matching (", "Controls (clip protocol",
                     "Leak check: 0 of the", "Audio length (clip protocol"):  # fmt: skip
        assert protocol in report, protocol
    assert (out / "oh_rank_cdf.png").stat().st_size > 0
    for heading in (
        "## Preprocessing (Ray Data)",
        "## Training (Ray Train, preset tiny)",
        f"## Sweep (Ray Tune, {TRIALS} trial of at most {SUITE_DEMO.sweep_epochs} epoch)",  # the suite's: 1 and 1
        "## Retrieval on held-out speakers",
        "## Face decoder: voices drawn as faces (Ray Train, preset tiny)",
        "## Time per step",
    ):
        assert heading in report
    assert "| clips written | 270 (100.0 %) |" in report  # 90 speakers x 3 clips, all of them
    assert re.search(r"CPU seconds per clip: \*\*\d+\.\d{3}\*\*", report)
    assert "**the pairing is synthetic**" in report
    assert re.search(r"R@1 +\d+\.\d % .* 4\.2 %", report)  # a gallery of the 24 test speakers' faces: chance 1/24
    sweep_rows = [line for line in report.splitlines() if re.match(r"\| \w+_0000\d \|", line)]
    assert len(sweep_rows) == TRIALS
    assert "python -m trainer.train --data" in report
    assert "voice -> decoded face" in report and "mean training face" in report
    for name in ("curves.png", "sweep.png", "retrieval.png", "decoder.png"):
        assert f"({name})" in report
        with Image.open(out / name) as image:
            assert image.format == "PNG" and min(image.size) >= 200
    steps = re.findall(r"^\| ([a-z][^|]+) \| (\d+\.\d) \|$", report, flags=re.MULTILINE)
    assert [name for name, _ in steps] == [
        "generate the demo corpus", "preprocess (Ray Data)", "train the voice encoder (Ray Train)",
        "sweep loss weights and lr (Ray Tune)", "evaluate on the held-out speakers",
        "train the face decoder (Ray Train)", "draw the held-out speakers' faces",
    ]  # fmt: skip


def test_evaluate_prints_table_and_writes_json_and_retrieval_png(evaluation):
    table, report, out = evaluation
    for k in (1, 5, 10, 25, 50, 75, 100):
        assert f"R@{k} " in table
    assert "95 % interval" in table and "chance" in table and "one face per video" in table
    assert [row["k"] for row in report["recall"]] == [1, 5, 10, 25, 50, 75, 100]
    assert all(row["lo"] <= row["recall"] <= row["hi"] for row in report["recall"])
    assert len(report["per_query"]) == report["queries"]
    assert report["model_info"]["embedder"]["name"] == "dlib"
    with Image.open(out / "retrieval.png") as image:
        image.verify()
    with Image.open(out / "retrieval.png") as image:
        width, height = image.size
        assert image.format == "PNG" and width >= 600 and height >= 600  # 6 rows of 6 faces


def test_predict_ranks_the_speakers_face_from_raw_audio(evaluation, run_dir, data, demo, tmp_path):
    corpus = demo[0] / "corpus"
    _, report, _ = evaluation
    best = min(report["per_query"], key=lambda q: (q["rank"], q["clip_id"]))
    assert best["rank"] <= 10
    start = float(best["clip_id"].split("_")[-2])  # clip ids are <ytid>_<start>_<end>
    out = tmp_path / "predict"
    result = check(run("trainer.predict", "--model", str(run_dir / "model.safetensors"),
                       "--audio", str(corpus / f"{best['ytid']}.mp4"), "--start", str(start),
                       "--gallery", str(data), "--gallery-split", "test", "--top", "10", "--out", str(out),
                       timeout=300))  # fmt: skip
    predicted = json.loads((out / "predict.json").read_text())
    assert [m["rank"] for m in predicted["top"]] == list(range(1, 11))
    assert best["ytid"] in [m["ytid"] for m in predicted["top"]], result.stdout
    feature = np.load(out / f"{best['ytid']}.npy")
    assert feature.shape == (128,) and np.all(np.isfinite(feature))
    with Image.open(out / "faces.png") as image:
        assert image.format == "PNG" and image.size[0] >= 600
    assert f"ytid {best['ytid']}" in result.stdout


def test_make_demo_rerun_reuses_finished_work(demo):
    out, first, first_s = demo
    second, second_s = _make_demo(out)
    log = second.stdout + second.stderr
    assert "already holds a complete corpus" in log
    assert "(0 rows processed this run)" in log  # preprocessing resumed with nothing left to do
    assert f"already has {EPOCHS} epochs; not retraining" in log
    assert f"decoder already has {DECODER_EPOCHS} epochs; not retraining" in log
    assert "is complete; not rerunning it" in log
    assert "eval.json is up to date; not re-evaluating" in log and "decoder_eval.json is up to date" in log
    assert second_s < first_s
    steps = [line for line in first.stdout.splitlines() if re.match(r"\[demo\] [^$].*: \d+\.\d s$", line)]
    print(f"\n[demo] first run {first_s:.0f} s, rerun {second_s:.0f} s; first run's steps:\n" + "\n".join(steps))
