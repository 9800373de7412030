"""tuning.sweep on real data: Ray Tune trials that are whole trainer.train runs (Ray Train V2, gloo).

The sweeps run as subprocesses (as `ray job submit` runs them) that join the test session's Ray
instance through RAY_ADDRESS, so the test can see what they leave behind in that instance.
The val gallery of this small dataset holds 1-2 faces, so R@K saturates: the sweeps rank trials by
unweighted val L2 loss (--metric val_l2norm --mode min).
"""

import collections
import csv
import json
import math
import os
import shlex
import signal
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from PIL import Image

from tests.support.cli import ROOT, check, read_metrics, run
from tests.support.outputs import read_file
from tests.support.prometheus import sample_labels

pytestmark = pytest.mark.timeout(900)

SWEEP = ["--preset", "tiny", "--batch-size", "2", "--cpus-per-worker", "1", "--max-concurrent-trials", "1",
         "--cache-data", "--metric", "val_l2norm", "--mode", "min", "--seed", "0"]  # fmt: skip
GOOD = {"lr": 1e-3, "loss_l2norm": 0.025, "loss_l1": 0.0}


@pytest.fixture(scope="module")
def data(small_dataset):
    return small_dataset  # read-only: the sweeps write into their own --storage


def _sweep_command(data, storage_dir, name, *args):
    return [sys.executable, "-m", "tuning.sweep", "--data", str(data), "--storage", str(storage_dir), "--name", name,
            *SWEEP, *args]  # fmt: skip


def _run_sweep(ray_address, *command_args, timeout=600):
    env = {**os.environ, "RAY_ADDRESS": ray_address}
    command = _sweep_command(*command_args)
    return check(subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env))


def _trials(sweep_dir) -> list[dict]:
    with open(sweep_dir / "trials.csv") as file:
        return list(csv.DictReader(file))


def _no_leak(ray, timeout=30.0) -> None:
    """Every CPU is free again and no placement group is left (Tune + Train each create one per trial)."""
    deadline = time.monotonic() + timeout
    while True:
        total, free = ray.cluster_resources(), ray.available_resources()
        groups = [g for g in ray.util.placement_group_table().values() if g["state"] != "REMOVED"]
        if free.get("CPU") == total.get("CPU") and not groups:
            return
        assert time.monotonic() < deadline, f"leaked: {free.get('CPU')} of {total.get('CPU')} CPUs free, {groups}"
        time.sleep(1)


def test_refuses_bad_setups_before_starting_ray(tmp_path):
    weighted = run("tuning.sweep", "--data", str(tmp_path), "--storage", str(tmp_path), "--name", "s",
                   "--metric", "val_loss", timeout=60)  # fmt: skip
    assert weighted.returncode == 2 and "scaled by the loss weights" in weighted.stderr
    missing = run("tuning.sweep", "--data", str(tmp_path / "nothing"), "--storage", str(tmp_path), "--name", "s",
                  timeout=60)  # fmt: skip
    assert missing.returncode == 2 and "manifest.json not found" in missing.stderr and "Traceback" not in missing.stderr


def _without_val(data, out):
    """A copy of ``data`` whose val clips are gone (clips/ and the manifest's counts)."""
    (out / "clips").mkdir(parents=True)
    for index, path in enumerate(sorted((data / "clips").rglob("*.parquet"))):
        table = read_file(str(path))  # with its split, in either layout
        pq.write_table(table.filter(pc.not_equal(table["split"], "val")), out / "clips" / f"{index}.parquet")
    manifest = json.loads((data / "manifest.json").read_text())
    manifest["counts"]["per_split"].pop("val")
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


def test_data_without_val_is_refused_in_one_line_before_any_trial(data, tmp_path):
    no_val = _without_val(data, tmp_path / "no_val")
    result = run("tuning.sweep", *_sweep_command(no_val, tmp_path / "runs", "s", "--search", "optuna")[3:],
                 timeout=120)  # fmt: skip
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "no 'val' clips" in lines[0] and not (tmp_path / "runs").exists()


def _sweep_samples(port: int, metric: str, sweep: str) -> list[tuple[dict, float]]:
    """(tags, value) of each sample of ``ray_s2f_sweep_<metric>`` on Ray's metrics endpoint, of one sweep."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    samples = [line for line in text.splitlines() if line.startswith(f"ray_s2f_sweep_{metric}{{")]
    tagged = [(sample_labels(line), float(line.rsplit(" ", 1)[1])) for line in samples]
    return [(tags, value) for tags, value in tagged if tags["sweep"] == sweep]


def test_asha_stops_an_absurd_learning_rate_early_and_leaks_nothing(data, ray_address, ray_session, tmp_path):
    points = json.dumps([GOOD, GOOD | {"lr": 10.0}])  # the good trial runs first, so ASHA has a rung to compare to
    # lr = 10 blows the predictions up (val L1 distance ~1e16 against ~10); their direction, which the
    # normalised L2 looks at, can still pass on a 1-video val split, so ASHA ranks by the unweighted val L1.
    port, running = ray_session._private.worker.global_worker.node.metrics_export_port, []
    with ThreadPoolExecutor(1) as pool:  # the sweep's trials running, read from Ray's metrics endpoint as it goes
        sweep = pool.submit(_run_sweep, ray_address, data, tmp_path, "asha", "--num-samples", "2", "--scheduler",
                            "asha", "--epochs", "4", "--grace-period", "1", "--reduction-factor", "2",
                            "--points-to-evaluate", points, "--metric", "val_l1")  # fmt: skip
        while not sweep.done():
            running += [value for _, value in _sweep_samples(port, "trials_running", "asha")]
            time.sleep(1)
    result, ended = sweep.result(), [value for _, value in _sweep_samples(port, "trials_running", "asha")]
    trials = {float(t["lr"]): t for t in _trials(tmp_path / "asha")}
    print(f"\n[asha] {trials}")
    assert trials[1e-3]["status"] == "TERMINATED" and int(trials[1e-3]["epochs"]) == 4
    assert trials[10.0]["status"] == "STOPPED_EARLY" and int(trials[10.0]["epochs"]) < 4
    # the sweep's own metrics (s2f_sweep_*) say what trials.csv says: one trial at a time, each finished trial
    # counted under its status, none running at the end
    assert max(running) == 1 and ended == [0], (running, ended)
    finished, deadline = _sweep_samples(port, "trials_finished_total", "asha"), time.monotonic() + 30
    while sum(value for _, value in finished) < len(trials) and time.monotonic() < deadline:
        time.sleep(1)  # the agent exports every few seconds
        finished = _sweep_samples(port, "trials_finished_total", "asha")
    assert {tags["status"]: value for tags, value in finished} == collections.Counter(
        t["status"] for t in trials.values()
    ), finished
    (job,) = {tags["JobId"] for tags, _ in finished}
    assert f'carry JobId="{job}"' in result.stdout, result.stdout
    _no_leak(ray_session)


def test_an_interrupted_optuna_sweep_resumes_without_rerunning_finished_trials_then_reports_a_command_that_trains(
    data, ray_address, ray_session, tmp_path
):
    # TPE (optuna) proposes the trials; its state comes back with the sweep's on --resume
    args = (data, tmp_path, "resumable", "--search", "optuna", "--num-samples", "2", "--scheduler", "none",
            "--epochs", "1")  # fmt: skip
    log = open(tmp_path / "first.log", "w")
    sweep = subprocess.Popen(_sweep_command(*args), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                             env={**os.environ, "RAY_ADDRESS": ray_address})  # fmt: skip
    trials_dir = tmp_path / "resumable" / "trials"
    try:  # interrupt (Ctrl-C) once the second trial has started: the first one is finished then
        deadline = time.monotonic() + 300
        while not (trials_dir.is_dir() and len(list(trials_dir.iterdir())) >= 2):
            assert sweep.poll() is None and time.monotonic() < deadline, (tmp_path / "first.log").read_text()[-3000:]
            time.sleep(0.5)
        sweep.send_signal(signal.SIGINT)
        assert sweep.wait(timeout=120) != 0
    finally:
        sweep.kill()
        log.close()
    first_log = (tmp_path / "first.log").read_text()
    assert "--resume" in first_log, first_log[-3000:]  # the interrupted sweep says how to go on
    _no_leak(ray_session)  # the interrupted trial's Train group too: Tune tells no callback of it
    statuses = {t["trial_id"]: t["status"] for t in _trials(tmp_path / "resumable")}  # as the interrupted sweep left it
    (first_trial,) = [trial for trial, status in statuses.items() if status == "TERMINATED"]  # the second had started
    assert len(statuses) == 2 and len(read_metrics(trials_dir / first_trial)) == 1, statuses

    result = _run_sweep(ray_address, *args, "--resume")
    trials = _trials(tmp_path / "resumable")
    assert len(trials) == 2 and all(t["status"] == "TERMINATED" for t in trials), result.stdout[-3000:]
    assert first_trial in {t["trial_id"] for t in trials}
    output = result.stdout + result.stderr
    assert "started with configuration" in output  # Tune's line for each trial it starts...
    assert f"run_trial_{first_trial} started" not in output  # ...and the finished one is not among them

    # what every finished sweep writes: each trial a whole trainer.train run, the best one, a plot, a command
    sweep_dir = tmp_path / "resumable"
    assert len({t["lr"] for t in trials}) == 2  # TPE proposed two different points
    for trial in trials:
        assert trial["epochs"] == "1" and len(read_metrics(sweep_dir / "trials" / trial["trial_id"])) == 1
    best = json.loads((sweep_dir / "best_config.json").read_text())
    winner = min(trials, key=lambda t: float(t["val_l2norm_best"]))
    assert best["trial_id"] == winner["trial_id"] and best["value"] == pytest.approx(float(winner["val_l2norm_best"]))
    assert best["params"]["lr"] == pytest.approx(float(winner["lr"])) and math.isfinite(best["value"])
    with Image.open(sweep_dir / "sweep.png") as image:
        assert image.format == "PNG" and image.size[0] >= 600
    assert best["command"] in result.stdout  # printed for the user, and it runs as printed
    command = shlex.split(best["command"])
    assert command[:3] == ["python", "-m", "trainer.train"] and "--lr" in command
    check(subprocess.run([sys.executable, *command[1:]], cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "RAY_ADDRESS": ray_address}))  # fmt: skip
    assert len(read_metrics(tmp_path / "resumable-best")) == 1
    _no_leak(ray_session)
