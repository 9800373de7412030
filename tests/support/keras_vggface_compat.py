"""Import keras-vggface 0.6 (written for Keras 2) in a Keras 3 era environment, as a test reference.

keras-vggface imports ``keras.engine.topology``, ``keras.utils.data_utils`` and ``keras.utils.layer_utils``,
which Keras 3 removed (and Keras 3 rejects its layer names such as ``fc6/relu``). ``tf_keras`` is Keras 2,
so while keras_vggface is imported, ``keras`` and those submodules point at ``tf_keras``. The original
``sys.modules`` entries are restored afterwards, so other code still gets Keras 3 from ``import keras``;
keras_vggface keeps its references to tf_keras.
"""

import importlib
import sys
import types

import tf_keras
from tf_keras.src.utils import layer_utils as _tf_keras_layer_utils


def _proxy_module(name: str, target: types.ModuleType | None, **extra) -> types.ModuleType:
    """A module named ``name`` that serves ``extra`` first and otherwise delegates to ``target``."""
    module = types.ModuleType(name)
    module.__path__ = []  # a package, so `import name.sub` looks in sys.modules
    module.__dict__.update(extra)
    if target is not None:
        module.__getattr__ = lambda attr: getattr(target, attr)
    return module


def _keras2_aliases() -> dict[str, types.ModuleType]:
    """The keras 2 module names that keras_vggface 0.6 imports, backed by tf_keras."""
    utils = _proxy_module("keras.utils", tf_keras.utils, layer_utils=_tf_keras_layer_utils)
    aliases = {
        "keras": _proxy_module("keras", tf_keras, utils=utils),
        "keras.layers": tf_keras.layers,
        "keras.models": tf_keras.models,
        "keras.backend": tf_keras.backend,
        "keras.utils": utils,
        "keras.utils.layer_utils": _tf_keras_layer_utils,
        "keras.utils.data_utils": _proxy_module("keras.utils.data_utils", None, get_file=tf_keras.utils.get_file),
        "keras.engine": _proxy_module("keras.engine", None),
        "keras.engine.topology": _proxy_module(
            "keras.engine.topology", None, get_source_inputs=tf_keras.utils.get_source_inputs
        ),
    }
    aliases["keras"].__dict__.update(layers=tf_keras.layers, models=tf_keras.models, backend=tf_keras.backend)
    aliases["keras.engine"].topology = aliases["keras.engine.topology"]
    return aliases


def import_keras_vggface() -> types.ModuleType:
    """Import keras_vggface with ``keras`` aliased to tf_keras, then put ``sys.modules`` back."""
    if "keras_vggface.models" in sys.modules:
        return sys.modules["keras_vggface"]
    aliases = _keras2_aliases()
    saved = {name: sys.modules.get(name) for name in aliases}
    sys.modules.update(aliases)
    try:
        importlib.import_module("keras_vggface.models")
        return importlib.import_module("keras_vggface")
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def build_reference_vggface(seed: int = 0):
    """keras-vggface's ``VGGFace(model='vgg16', weights=None)`` (145,002,878 parameters), seeded random init."""
    keras_vggface = import_keras_vggface()
    tf_keras.utils.set_random_seed(seed)
    return keras_vggface.VGGFace(model="vgg16", weights=None)


def preprocess_input(images):
    """keras-vggface's own preprocessing (version 1: RGB -> BGR, subtract the VGG-Face means)."""
    import_keras_vggface()
    from keras_vggface import utils

    return utils.preprocess_input(images, data_format="channels_last", version=1)
