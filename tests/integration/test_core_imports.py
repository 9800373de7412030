"""The domain core must stay importable without Ray (design: thin Ray layers on a Ray-free core)."""

import json
import subprocess
import sys

CHECK = """
import importlib, json, pkgutil, sys
import speech2face
names = [m.name for m in pkgutil.walk_packages(speech2face.__path__, "speech2face.")]
for name in names:
    importlib.import_module(name)
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {"ray", "tensorflow", "tf_keras", "keras"})
print(json.dumps({"modules": names, "heavy": heavy}))
"""


def test_core_imports_no_ray_or_tensorflow():
    out = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, check=True)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert "speech2face.audio" in report["modules"]  # the walk really found the core's modules
    assert report["heavy"] == [], f"speech2face pulled in {report['heavy']}"


# Preprocessing's CPU actors start without torch (~2 CPU-s each, many actors a run): the stages' module imports
# without it (the download and decode actors), and so does a dlib feature stage. VGG-Face and a stored
# spectrogram need it.
ACTORS_WITHOUT_TORCH = """
import sys
from pipelines.stages import FeatureStage
from speech2face.dataset import Layout
FeatureStage(embedder="dlib", weights=None, allow_random=False, failures_uri=sys.argv[1], layout=Layout())
print("torch" in sys.modules)
FeatureStage(embedder="dlib", weights=None, allow_random=False, failures_uri=sys.argv[1],
             layout=Layout(store_spectrogram=True))
print("torch" in sys.modules)
"""


def test_dlib_preprocessing_actors_start_without_torch(tmp_path):
    out = subprocess.run([sys.executable, "-c", ACTORS_WITHOUT_TORCH, str(tmp_path)], capture_output=True, text=True,
                         check=True)  # fmt: skip
    assert out.stdout.split() == ["False", "True"], out.stderr[-2000:]
