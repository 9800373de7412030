"""Every project module imports alone, first, in a fresh interpreter: no module works only after another.

The third-party libraries (torch, Ray, pyarrow, ...) are imported once in a parent process; each project
module is then imported in a forked child that has imported no project module. An import circle or an
order dependency between the project's own modules fails here; the static check of the whole graph is
tests/unit/test_import_graph.py.
"""

import json
import subprocess
import sys

from tests.support.project import ROOT, project_modules

# Run in a clean interpreter: pytest has imported much of the project already.
IMPORT_EACH = r"""
import importlib, json, os, sys
for library in ("numpy", "pandas", "pyarrow", "pyarrow.parquet", "torch", "PIL.Image", "matplotlib.pyplot",
                "ray", "ray.data", "ray.train", "ray.train.torch", "ray.tune", "ray.serve", "fastapi", "yt_dlp"):
    importlib.import_module(library)
preloaded = sorted(m for m in sys.modules if m.split(".")[0] in set(sys.argv[2:]))
failed = {}
for name in json.loads(sys.argv[1]):
    read, write = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(read)
        try:
            importlib.import_module(name)
            message = ""
        except BaseException as error:  # noqa: BLE001 - reported to the parent
            message = f"{type(error).__name__}: {error}"
        os.write(write, message.encode()[:4000])
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        message = pipe.read()
    os.waitpid(child, 0)
    if message:
        failed[name] = message
print(json.dumps({"preloaded": preloaded, "failed": failed}))
"""


def test_every_module_imports_alone_in_a_fresh_interpreter():
    modules = project_modules()
    packages = sorted({name.split(".")[0] for name in modules})
    names = [name for name in modules if not name.endswith("__main__")]  # __main__ runs its command
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_EACH, json.dumps(names), *packages],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["preloaded"] == []  # the libraries pulled in no project module
    assert len(names) > 80 and report["failed"] == {}, report["failed"]
