"""Building an embedder by name, and loading the VGG-Face network a run's losses go through."""

from __future__ import annotations

from speech2face import storage
from speech2face.dataset import RANDOM_WEIGHTS
from speech2face.embedders.base import EMBEDDER_NAMES, FaceEmbedder


def make_embedder(name: str, weights: str | None = None, allow_random: bool = False, device=None) -> FaceEmbedder:
    """The embedder called ``name``: "dlib" (128-D, CPU, weights shipped) or "vggface" (4096-D fc7, torch).

    ``weights`` (a local path), ``allow_random`` and ``device`` are for vggface; dlib uses its shipped
    model on the CPU.
    """
    if name == "dlib":
        if weights is not None:
            raise ValueError(
                "the dlib embedder uses the model shipped in face_recognition_models; weights= is only for vggface"
            )
        from speech2face.embedders.dlib import DlibFace

        return DlibFace()
    if name == "vggface":
        from speech2face.embedders.vggface import VGGFaceEmbedder

        return VGGFaceEmbedder(weights=weights, allow_random=allow_random, device=device)
    raise ValueError(f"unknown face embedder {name!r}; valid names: {', '.join(EMBEDDER_NAMES)}")


def load_vggface(weights: str, expected_sha256: str | None = None, device=None):
    """VGG-Face from ``weights`` (local, s3:// or RANDOM_WEIGHTS), checked against ``expected_sha256``:
    the network a distillation or feature loss goes through must be the one that made the data."""
    if weights == RANDOM_WEIGHTS:
        embedder = make_embedder("vggface", allow_random=True, device=device)
    else:
        with storage.local_copy(weights) as path:
            embedder = make_embedder("vggface", weights=path, device=device)
    if expected_sha256 is not None and embedder.weights_id != expected_sha256:
        raise RuntimeError(
            f"the VGG-Face weights changed since the run started: sha256 {embedder.weights_id} != {expected_sha256}"
        )
    return embedder
