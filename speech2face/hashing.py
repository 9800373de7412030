"""Content hashes that identify files (model weights) in manifests and caches."""

import hashlib
import os


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a local file's bytes, read in chunks so large weights files don't fill memory."""
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()
