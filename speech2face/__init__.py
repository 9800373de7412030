"""Speech2Face domain core: the dataset contract, audio and spectrogram, faces and landmarks, face embedders,
the voice encoder and face decoder, losses, retrieval metrics, storage, and the inference library.

This package imports no Ray; the Ray layers live in ``pipelines``, ``trainer``, ``tuning`` and ``serving``.
"""

__version__ = "0.1.0"
