"""decoder.safetensors: trained face-decoder weights plus what rebuilds it, loadable without Ray.

The metadata (also written as decoder.json beside it) holds the preset, in_dim, resolution, the mean
face shape and the face embedder whose features it decodes; ``check_embedder`` refuses features of
any other embedder, since a decoder trained on one embedder's features draws noise from another's.
"""

from __future__ import annotations

import json

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as safetensors_bytes

from speech2face import storage
from speech2face.dataset import EmbedderRecord
from speech2face.decoder import FaceDecoder, to_crops
from speech2face.errors import InputError
from speech2face.faces import CROP_SIZE
from speech2face.inference.encoder_file import embedder_of

METADATA_KEY = "speech2face_decoder"


def save_decoder(decoder: FaceDecoder, uri: str, info: dict) -> None:
    """Write ``uri`` (…/decoder.safetensors) and decoder.json beside it; ``info`` joins the metadata."""
    metadata = {
        "preset": decoder.preset_name,
        "in_dim": decoder.in_dim,
        "resolution": decoder.spec.resolution,
        "mean_shape_px": (decoder.mean_shape * (CROP_SIZE - 1)).tolist(),
        **info,
    }
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in decoder.state_dict().items()}
    storage.write_bytes(uri, safetensors_bytes(state, metadata={METADATA_KEY: json.dumps(metadata)}))
    storage.write_json(uri.rsplit("/", 1)[0] + "/decoder.json" if "/" in uri else "decoder.json", metadata)


def read_decoder(uri: str, device: str | torch.device = "cpu") -> tuple[FaceDecoder, dict]:
    """(the decoder in eval mode, its metadata) from a decoder.safetensors path or URI."""
    if not storage.exists(uri):
        raise FileNotFoundError(
            f"no face decoder at {uri}: pass a run's <storage>/<name>/decoder.safetensors "
            "(python -m trainer.train_decoder writes it)"
        )
    not_one = f"{uri} is not a face decoder written by trainer.train_decoder"
    try:
        with storage.local_copy(uri) as path, safe_open(path, framework="pt") as file:
            header = file.metadata() or {}
            if METADATA_KEY not in header:
                raise InputError(f"{not_one}: its safetensors header has no '{METADATA_KEY}' metadata")
            metadata = json.loads(header[METADATA_KEY])
            state = {name: file.get_tensor(name) for name in file.keys()}
    except SafetensorError as error:  # a text file, a truncated download, ...
        raise InputError(f"{not_one}: {error}") from None
    decoder = FaceDecoder(metadata["in_dim"], metadata["preset"], np.asarray(metadata["mean_shape_px"], np.float32))
    state.setdefault("mean_feature", decoder.mean_feature)  # decoders written before it: no centring
    decoder.load_state_dict(state)
    return decoder.to(device).eval(), metadata


def check_embedder(metadata: dict, embedder: EmbedderRecord, what: str) -> None:
    """InputError unless ``embedder`` (a manifest's or a model's) is the one the decoder was trained on:
    a decoder trained on one embedder's features draws noise from another's."""
    embedder_of(metadata).require_same(
        embedder,
        "the face decoder decodes",
        f"{what} uses",
        "train a decoder on data from the same embedder: python -m trainer.train_decoder --data <that data>",
    )


@torch.no_grad()
def draw_faces(decoder: FaceDecoder, features: np.ndarray, batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 (N, 224, 224, 3) drawn face crops, their landmarks (N, 68, 2) in 224-crop pixels)."""
    crops, points = [], []
    for start in range(0, len(features), batch_size):
        batch = torch.from_numpy(np.ascontiguousarray(features[start : start + batch_size], np.float32))
        decoded = decoder(batch.to(decoder.mean_shape.device))
        crops.append(to_crops(decoded.image))
        points.append(decoded.landmarks.cpu().numpy() * (CROP_SIZE - 1))
    return np.concatenate(crops), np.concatenate(points)
