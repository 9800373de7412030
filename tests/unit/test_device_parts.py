"""benchmarks.device's parts runner: a failed part is reported with its error's last line and the run goes on;
parts that need it are skipped with why; the report is saved after every part."""

import json

from benchmarks.device import Part, markdown, run_parts
from benchmarks.device_system import PartSkipped


def test_a_failed_part_is_reported_the_rest_run_and_the_report_is_saved_after_each(tmp_path, capsys):
    report, saved = {"command": "python -m benchmarks.device", "device": "cpu", "machine": {}, "parts": {}}, []

    def save():
        saved.append(json.loads(json.dumps(report["parts"])))

    def broken():
        raise RuntimeError("CUDA error: out of memory\nwhile allocating 2 GiB")

    def no_gpu():
        raise PartSkipped("3 skipped: needs a CUDA GPU")

    parts = [Part("preprocess", lambda: {"clips": 12}), Part("train", broken, ("preprocess",)),
             Part("evaluate", lambda: {"recall_at_10": 1.0}, ("train",)), Part("cuda tests", no_gpu),
             Part("sweep", lambda: None, ("preprocess",))]  # fmt: skip
    assert run_parts(parts, report, save) is False

    statuses = {name: part["status"] for name, part in report["parts"].items()}
    assert statuses == {"preprocess": "ok", "train": "failed", "evaluate": "skipped", "cuda tests": "skipped",
                        "sweep": "ok"}  # fmt: skip
    assert report["parts"]["preprocess"]["clips"] == 12
    assert report["parts"]["train"]["why"] == "while allocating 2 GiB"  # the error's last line
    assert report["parts"]["evaluate"]["why"] == "needs train"
    assert [list(parts) for parts in saved] == [list(report["parts"])[: i + 1] for i in range(5)]
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[device]")]
    assert [line.split(":")[0] for line in lines] == [f"[device] {part.name}" for part in parts]
    assert lines[1].startswith("[device] train: failed, ") and lines[1].endswith("s (while allocating 2 GiB)")
    assert "| evaluate | skipped |" in markdown(report) and "| preprocess | ok |" in markdown(report)
    assert run_parts(parts[:1], {**report, "parts": {}}, save) is True
