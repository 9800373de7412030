"""Speech2Face domain core: audio, spectrogram, faces, face embedders, voice encoder, losses, metrics.

This package imports no Ray; the Ray layers live in ``pipelines``, ``trainer`` and ``tuning``.
"""

__version__ = "0.1.0"
