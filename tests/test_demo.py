"""`make demo` at a reduced size, end to end: corpus -> preprocess -> train -> sweep -> evaluate -> REPORT.md.

It runs the real Makefile target (the same as a user's `make demo`, with DEMO_ARGS making it small), then
runs it again to show that finished work is reused.
"""

import re
import subprocess
import time

import pytest
from PIL import Image

from tests.cli import ROOT

pytestmark = pytest.mark.timeout(1200)

# 8 speakers, 3 of them held out; --val-fraction 0.4 puts 1 of the 5 training videos into val.
SMALL = "--speakers 8 --test-speakers 3 --clips-per-speaker 2 --val-fraction 0.4 --epochs 2 --trials 2 --sweep-epochs 1"


def _make_demo(out) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    result = subprocess.run(["make", "demo", f"DEMO_OUT={out}", f"DEMO_ARGS={SMALL}"], cwd=ROOT, capture_output=True,
                            text=True, timeout=1100)  # fmt: skip
    output = f"stdout:\n{result.stdout[-4000:]}\nstderr:\n{result.stderr[-4000:]}"
    assert result.returncode == 0, output
    return result, time.monotonic() - started


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo_output")
    first, first_s = _make_demo(out)
    return out, first, first_s


def test_make_demo_writes_a_report_with_every_section_and_image(demo):
    out, first, _ = demo
    assert f"Report: {out}/REPORT.md" in first.stdout
    assert "Ray dashboard: http://127.0.0.1:" in first.stdout
    report = (out / "REPORT.md").read_text()
    for heading in (
        "## Preprocessing (Ray Data)",
        "## Training (Ray Train, preset tiny)",
        "## Sweep (Ray Tune, 2 trials",
        "## Retrieval on held-out speakers",
        "## Time per step",
    ):
        assert heading in report
    assert "| clips written | 16 (100.0 %) |" in report  # 8 speakers x 2 clips, all of them
    assert re.search(r"CPU seconds per clip: \*\*\d+\.\d{3}\*\*", report)
    assert "**the pairing is synthetic**" in report
    assert re.search(r"R@1 +\d+\.\d % .* 33\.3 %", report)  # a gallery of the 3 test speakers' faces: chance 1/3
    sweep_rows = [line for line in report.splitlines() if re.match(r"\| \w+_0000\d \|", line)]
    assert len(sweep_rows) == 2
    assert "python -m trainer.train --data" in report
    for name in ("curves.png", "sweep.png", "retrieval.png"):
        assert f"({name})" in report
        with Image.open(out / name) as image:
            assert image.format == "PNG" and min(image.size) >= 200
    steps = re.findall(r"^\| ([a-z][^|]+) \| (\d+\.\d) \|$", report, flags=re.MULTILINE)
    assert [name for name, _ in steps] == [
        "generate the demo corpus", "preprocess (Ray Data)", "train the voice encoder (Ray Train)",
        "sweep loss weights and lr (Ray Tune)", "evaluate on the held-out speakers",
    ]  # fmt: skip


def test_make_demo_rerun_reuses_finished_work(demo):
    out, _, first_s = demo
    second, second_s = _make_demo(out)
    log = second.stdout + second.stderr
    assert "already holds a complete corpus" in log
    assert "(0 rows processed this run)" in log  # preprocessing resumed with nothing left to do
    assert "already has 2 epochs; not retraining" in log
    assert "is complete; not rerunning it" in log
    assert second_s < first_s
    print(f"\n[demo] first run {first_s:.0f} s, rerun {second_s:.0f} s")
