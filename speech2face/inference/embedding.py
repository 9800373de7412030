"""A trained voice encoder over waveforms: batches of audio in, predicted face features out."""

from __future__ import annotations

import numpy as np
import torch

from speech2face import audio


@torch.no_grad()
def embed(model, waveforms, batch_size: int = 16) -> np.ndarray:
    """(N, samples) int16 or float waveforms -> float32 (N, out_dim) predicted face features.

    Spectrograms are computed batch by batch on the model's device (``audio.model_input``).
    """
    device = next(model.parameters()).device
    outputs = []
    for start in range(0, len(waveforms), batch_size):
        batch = torch.from_numpy(np.ascontiguousarray(waveforms[start : start + batch_size])).to(device)
        outputs.append(model(audio.model_input(batch)).float().cpu().numpy())
    return np.concatenate(outputs) if outputs else np.empty((0, model.out_dim), np.float32)


def predict_features(model, waves: np.ndarray) -> np.ndarray:
    """float32 (N, out_dim) face features of (N, 96000) waveforms, as every predicting entry point computes them."""
    return embed(model, waves, batch_size=len(waves))
