"""The dataset contract (speech2face/dataset.py) is the one place that names a clip or failure column."""

import ast
from pathlib import Path

from speech2face import dataset

ROOT = Path(__file__).resolve().parents[2]
# Where clips/ and failures/ are read or written. Not demo_corpus: it writes AVSpeech CSVs and its own
# manifest, never clips/ or failures/.
CHECKED = ("speech2face", "telemetry", "pipelines", "trainer", "tuning", "serving", "demo", "benchmarks", "s2f")
CONTRACT = ROOT / "speech2face" / "dataset.py"
COLUMNS = {value for name, value in vars(dataset).items() if name.isupper() and isinstance(value, str)} & (
    {f.name for f in dataset.FAILURE_SCHEMA}
    | set(dataset.clip_schema(128, dataset.Layout(store_spectrogram=True)).names)
)
ACCESSORS = {"get", "pop", "field", "col", "column", "select_columns", "drop_columns", "append_column", "set_column"}
LISTING_KEYWORDS = {"columns", "names"}


def _strings(node) -> list[str]:
    return [e.value for e in getattr(node, "elts", []) if isinstance(e, ast.Constant) and e.value in COLUMNS]


def column_literals(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, column name) of each place a column is named by a string literal of its own."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant) and node.slice.value in COLUMNS:
            found.append((node.lineno, node.slice.value))  # row["split"], table["clip_id"]
        elif isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name in ACCESSORS:  # row.get("reason"), col("split"), pc.field("split")
                found += [
                    (node.lineno, a.value) for a in node.args if isinstance(a, ast.Constant) and a.value in COLUMNS
                ]
            for keyword in node.keywords:
                if keyword.arg in LISTING_KEYWORDS:  # read_table(columns=["clip_id", ...])
                    found += [(node.lineno, value) for value in _strings(keyword.value)]
                if name == "assign" and keyword.arg in COLUMNS:  # frame.assign(split="train")
                    found.append((node.lineno, keyword.arg))
        elif isinstance(node, ast.Dict):  # a row: {"clip_id": ..., "ytid": ...}
            keys = [k.value for k in node.keys if isinstance(k, ast.Constant) and k.value in COLUMNS]
            found += [(node.lineno, key) for key in keys] if len(keys) > 1 else []
        elif isinstance(node, (ast.List, ast.Tuple, ast.Set)):  # a column list: ["clip_id", "split"]
            names = _strings(node)
            found += [(node.lineno, value) for value in names] if len(names) > 1 else []
    return sorted(set(found))


def test_the_checker_finds_each_way_a_column_is_named():
    source = """
row["split"]; row.get("reason"); col("clip_id"); pq.read_table(p, columns=["face_jpeg"])
frame.assign(ytid="x"); {"clip_id": 1, "start": 2}; ["waveform", "face_feature"]
{"error": "one line"}; ["-loglevel", "error"]; f(split_by="ytid"); {"split": "train"}
"""
    found = column_literals(ast.parse(source))
    assert [name for line, name in found if line == 2] == ["clip_id", "face_jpeg", "reason", "split"]
    assert [name for line, name in found if line == 3] == ["clip_id", "face_feature", "start", "waveform", "ytid"]
    assert [name for line, name in found if line == 4] == []  # other meanings of the same words


def test_no_column_name_literal_outside_the_contract():
    files = [p for package in CHECKED for p in sorted((ROOT / package).rglob("*.py")) if p != CONTRACT]
    assert len(files) > 50  # the walk found the project
    offenders = [
        f"{path.relative_to(ROOT)}:{line}: {name!r}"
        for path in files
        for line, name in column_literals(ast.parse(path.read_text()))
    ]
    assert not offenders, "name columns through speech2face.dataset's constants:\n" + "\n".join(offenders)
