"""serving.app against a real Ray Serve instance on loopback: the API, its refusals, load, and the page in Chromium."""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image

from benchmarks.serve_load import post_file, run_load
from tests.support.browser import upload_through_page
from tests.support.cli import ROOT, check, run
from tests.support.prometheus import (
    METRICS_REPORT_MS,
    check_queries_hold_samples,
    dashboard_queries,
    start_prometheus,
)

SPEECH = Path("/usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-0870.wav")
MAX_UPLOAD_MB = 1


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def service(tiny_model, small_dataset, decoder_runs, ray_address):
    """``python -m serving.app`` as a user starts it, with the session's decoder, joined to the session's Ray;
    stopped with Ctrl-C."""
    assert SPEECH.is_file(), "`make setup` installs Debian's pocketsphinx-testdata (real speech)"
    decoder = decoder_runs["dir"] / "decoder.safetensors"
    assert decoder.is_file(), decoder_runs["first"].stderr[-3000:]
    port = _free_port()
    command = [sys.executable, "-m", "serving.app", "--model", str(tiny_model), "--gallery", str(small_dataset),
               "--decoder", str(decoder), "--port", str(port), "--num-cpus-per-replica", "0.5",
               "--max-upload-mb", str(MAX_UPLOAD_MB)]  # fmt: skip
    process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, "RAY_ADDRESS": ray_address},
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_healthy(url, process, timeout_s=240)
        yield url
    finally:  # Ctrl-C even when start-up failed: a killed app would leave its replicas holding the session's CPUs
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
    assert process.returncode == 0, process.stdout.read()[-4000:]


def _wait_until_healthy(url: str, process: subprocess.Popen, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if requests.get(f"{url}/api/health", timeout=5).status_code == 200:
                return
        except requests.RequestException:  # refused, or accepted while the proxy is still starting (read timeout)
            pass
        time.sleep(1)
    process.send_signal(signal.SIGINT)
    output = process.communicate(timeout=60)[0] if process.poll() is None else process.stdout.read()
    pytest.fail(f"serving.app did not answer /api/health within {timeout_s:.0f} s:\n{output[-4000:]}")


def test_speech_gives_the_same_faces_as_trainer_predict(service, tiny_model, small_dataset, decoder_runs, tmp_path):
    with open(SPEECH, "rb") as file:
        response = requests.post(f"{service}/api/predict", files={"file": (SPEECH.name, file)}, timeout=120)
    assert response.status_code == 200, response.text
    body = response.json()
    info = requests.get(f"{service}/api/info", timeout=10).json()
    assert len(body["top"]) == min(5, info["gallery_size"]) and info["gallery_size"] >= 5
    similarities = [match["similarity"] for match in body["top"]]
    assert similarities == sorted(similarities, reverse=True)
    assert all(match["face"].startswith("data:image/jpeg;base64,") for match in body["top"])
    assert body["feature_dim"] == info["feature_dim"] and body["feature_norm"] > 0

    decoder = decoder_runs["dir"] / "decoder.safetensors"
    check(run("trainer.predict", "--model", str(tiny_model), "--audio", str(SPEECH), "--gallery", str(small_dataset),
              "--decoder", str(decoder), "--out", str(tmp_path), timeout=300))  # fmt: skip
    expected = json.loads((tmp_path / "predict.json").read_text())["top"]
    assert [m["clip_id"] for m in body["top"]] == [m["clip_id"] for m in expected]
    assert similarities == pytest.approx([m["similarity"] for m in expected], abs=1e-4)
    # the drawn face: a PNG data URL, the same picture trainer.predict --decoder writes
    assert body["drawn_face"].startswith("data:image/png;base64,") and info["decoder"]
    drawn = np.asarray(Image.open(io.BytesIO(base64.b64decode(body["drawn_face"].split(",", 1)[1]))), np.int16)
    written = np.asarray(Image.open(tmp_path / f"{SPEECH.stem}_face.png"), np.int16)
    assert drawn.shape == written.shape == (224, 224, 3) and np.abs(drawn - written).max() <= 1


def test_bad_input_is_a_one_line_json_error(service, tmp_path):
    silence = tmp_path / "silence.wav"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-t", "2",
                    str(silence)], check=True)  # fmt: skip
    cases = {
        "a text file": (400, {"files": {"file": ("notes.wav", b"this is not audio", "text/plain")}}),
        "an empty body": (400, {"data": b"", "headers": {"Content-Type": "audio/wav"}}),
        "digital silence": (422, {"files": {"file": ("silence.wav", silence.read_bytes())}}),
        "too large": (413, {"data": b"\0" * (MAX_UPLOAD_MB * 2**20 + 1), "headers": {"Content-Type": "audio/wav"}}),
        "a wrong content type": (415, {"json": {"audio": "base64..."}}),
    }
    for case, (status, request) in cases.items():
        response = requests.post(f"{service}/api/predict", timeout=60, **request)
        error = response.json().get("error", "")
        assert response.status_code == status, (case, response.status_code, response.text)
        assert error and "\n" not in error and "Traceback" not in response.text, (case, response.text)
        assert str(tmp_path) not in error and "/tmp/" not in error, (case, error)  # no server-side paths


def test_64_requests_from_32_concurrent_clients_all_succeed_in_batches_of_at_most_8(service, ray_session, tmp_path):
    import ray

    port = ray._private.worker.global_worker.node.metrics_export_port
    prometheus = start_prometheus(tmp_path, [f"127.0.0.1:{port}"])  # for the dashboard's Serve panels
    time.sleep(2 * METRICS_REPORT_MS / 1000)  # the earlier tests' requests are on the endpoint by now
    before = _served(port)
    result = run_load(service, SPEECH, requests_total=64, clients=32)
    assert result["statuses"] == [200] * 64, result
    assert 1 <= result["mean_batch_size"] <= result["max_batch_size"] <= 8, result
    # the service's own metrics on Ray's endpoint: every request, and the encoder calls they shared
    calls = 64 / result["mean_batch_size"]  # the load's requests over the calls (each counted 1/b)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        after = _served(port)
        if after["requests"] - before["requests"] >= 64 and after["calls"] - before["calls"] >= round(calls):
            break
        time.sleep(1)
    assert after["requests"] - before["requests"] == 64, (before, after)
    assert after["calls"] - before["calls"] == pytest.approx(calls), (before, after, result)
    try:
        latency = prometheus.wait_for(dashboard_queries(serve=True)[0], lambda r: len(r) > 0)
        assert 0 < float(latency[0]["value"][1]) < 30, latency  # p50 within the histogram's boundaries
        check_queries_hold_samples(prometheus, dashboard_queries(serve=True))
    finally:
        prometheus.stop()


def _served(port: int) -> dict:
    """From Ray's metrics endpoint: 200 answers of the API, and encoder calls."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        lines = response.read().decode().splitlines()

    def total(prefix: str) -> float:
        return sum(float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith(prefix))

    ok = [line for line in lines if line.startswith("ray_s2f_serve_requests_total") and 'status="200"' in line]
    return {"requests": sum(float(line.rsplit(" ", 1)[1]) for line in ok),
            "calls": total("ray_s2f_serve_batch_size_count")}  # fmt: skip


def test_the_page_in_a_real_browser_shows_five_faces(service, tmp_path):
    assert post_file(service, SPEECH)[0] == 200  # the replica is warm: the page test waits on the browser only
    shown = upload_through_page(f"{service}/", SPEECH, screenshot=tmp_path / "serve-page.png")
    assert len(shown["captions"]) == 5 and shown["images_loaded"] == 5, shown
    assert shown["drawn_face_width"] == 224, shown  # the decoder's face, shown above the retrieved ones
    assert shown["status"].startswith("Done in"), shown
    assert (tmp_path / "serve-page.png").stat().st_size > 10_000
