"""The docs' screenshots, taken in Debian's headless Chromium: the Ray dashboard while `make demo` preprocesses,
and the service's page with a drawn face.

    python -m tests.support.screenshots dashboard --out docs/images/ray-dashboard-preprocess.png
    python -m tests.support.screenshots serve --demo-output demo_output --out docs/images/serve-page.png

``dashboard`` runs `make demo` into a scratch directory, waits for its preprocessing step, opens the Jobs
page of the demo's Ray dashboard, and stops the demo. ``serve`` starts ``python -m serving.app`` on a finished
demo's model, decoder and data, and uploads a LibriVox recording through the page.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.support.browser import chromium, upload_through_page
from tests.support.local_cluster import free_port

ROOT = Path(__file__).resolve().parents[2]
SPEECH = Path("/usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-0870.wav")
DASHBOARD_LINE = "[demo] Ray dashboard: "
PREPROCESS_STARTED = "-m pipelines.preprocess"  # the demo's console prints each step's command


def _stop(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGINT)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)


def dashboard(out: Path, seconds_into_preprocessing: float) -> None:
    scratch = Path(tempfile.mkdtemp(prefix="s2f-screenshot-"))
    demo = subprocess.Popen(["make", "demo", f"DEMO_OUT={scratch / 'demo_output'}"], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    try:
        url = None
        for line in demo.stdout:
            print(line, end="", flush=True)
            if line.startswith(DASHBOARD_LINE):
                url = line[len(DASHBOARD_LINE) :].strip()
            if PREPROCESS_STARTED in line:
                break
        assert url, "the demo printed no dashboard address"
        time.sleep(seconds_into_preprocessing)  # the job's Ray Data operators are running by then
        browser = chromium()
        try:
            browser.set_window_size(1400, 900)
            browser.get(f"{url}/#/jobs")
            WebDriverWait(browser, 60).until(
                lambda b: "pipelines.preprocess" in b.find_element(By.TAG_NAME, "body").text
            )
            time.sleep(3)  # the page's charts and progress bars draw after its tables
            browser.save_screenshot(str(out))
        finally:
            browser.quit()
    finally:
        _stop(demo)
    print(f"wrote {out}")


def serve(demo_output: Path, out: Path) -> None:
    port = free_port()
    runs = demo_output / "runs"
    command = [sys.executable, "-m", "serving.app", "--model", str(runs / "demo/model.safetensors"),
               "--gallery", str(demo_output / "data"), "--decoder", str(runs / "decoder/decoder.safetensors"),
               "--port", str(port)]  # fmt: skip
    service = subprocess.Popen(
        command, cwd=ROOT, start_new_session=True, env=os.environ | {"RAY_AUTH_MODE": "disabled"}
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{url}/api/health", timeout=5).ok:
                    break
            except requests.RequestException:
                time.sleep(1)
        shown = upload_through_page(f"{url}/", SPEECH, screenshot=out)
        assert shown["drawn_face_width"] > 0, shown
        print(f"wrote {out}: {shown['status']}")
    finally:
        _stop(service)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.screenshots", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    which = parser.add_subparsers(dest="which", required=True)
    board = which.add_parser("dashboard", help="the Ray dashboard during make demo's preprocessing")
    board.add_argument("--out", type=Path, required=True)
    board.add_argument("--seconds", type=float, default=20, help="how long after preprocessing starts")
    page = which.add_parser("serve", help="the service's page with a drawn face")
    page.add_argument("--demo-output", type=Path, required=True, help="a finished make demo's output")
    page.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.which == "dashboard":
        dashboard(args.out, args.seconds)
    else:
        serve(args.demo_output, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
