"""model.safetensors: a trained voice encoder's weights plus what rebuilds it, loadable without Ray.

The safetensors metadata holds one JSON string under "speech2face" (preset, out_dim, num_bins, the
face embedder the targets came from, epoch and val metrics); model.json next to it repeats it for
people and tools that do not read safetensors headers.
"""

from __future__ import annotations

import json

import torch
from safetensors import safe_open
from safetensors.torch import save as safetensors_bytes

from speech2face import storage
from speech2face.dataset import EMBEDDER, EmbedderRecord
from speech2face.errors import InputError
from speech2face.models import VoiceEncoder

METADATA_KEY = "speech2face"


def save_model(model: VoiceEncoder, uri: str, info: dict) -> None:
    """Write ``uri`` (…/model.safetensors) and model.json beside it; ``info`` is merged into the metadata."""
    metadata = {**model.config(), **info}
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}
    storage.write_bytes(uri, safetensors_bytes(state, metadata={METADATA_KEY: json.dumps(metadata)}))
    storage.write_json(uri.rsplit("/", 1)[0] + "/model.json" if "/" in uri else "model.json", metadata)


def _read(uri: str, weights: bool) -> tuple[dict, dict]:
    if not storage.exists(uri):
        raise FileNotFoundError(f"no model at {uri}: pass a run's <storage>/<name>/model.safetensors")
    with storage.local_copy(uri) as path, safe_open(path, framework="pt") as file:
        header = file.metadata() or {}
        if METADATA_KEY not in header:
            raise InputError(f"{uri} has no '{METADATA_KEY}' metadata: it was not written by trainer.train")
        state = {name: file.get_tensor(name) for name in file.keys()} if weights else {}
    return json.loads(header[METADATA_KEY]), state


def read_metadata(uri: str) -> dict:
    """A model file's metadata (preset, out_dim, embedder, epoch, val metrics), without its weights."""
    return _read(uri, weights=False)[0]


def read_model(uri: str, device: str | torch.device = "cpu") -> tuple[VoiceEncoder, dict]:
    """(the encoder in eval mode, its metadata) from a model.safetensors path or URI."""
    metadata, state = _read(uri, weights=True)
    model = VoiceEncoder(metadata["preset"], metadata["out_dim"], metadata.get("num_bins", 257))
    model.load_state_dict(state)
    return model.to(device).eval(), metadata


def load_model(uri: str, device: str | torch.device = "cpu") -> VoiceEncoder:
    """The trained encoder, in eval mode; ``read_model`` also returns its metadata."""
    return read_model(uri, device)[0]


def embedder_of(metadata: dict) -> EmbedderRecord:
    """The face embedder whose features a model (or decoder) learned, from its metadata."""
    return EmbedderRecord.from_dict(metadata.get(EMBEDDER) or {"name": None, "dim": 0, "weights_sha256": "none"})
