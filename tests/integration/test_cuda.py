"""The CUDA paths on a GPU: each computes there what its CPU path computes (the CPU paths are checked against
their references elsewhere: TensorFlow's STFT, keras-vggface). Skipped where torch sees no CUDA device.

`python -m benchmarks.device` runs them on a lent GPU machine (`pytest -m cuda tests/integration/test_cuda.py`),
whose image has no TensorFlow, so none of them needs it.
"""

import numpy as np
import pytest
import torch

from speech2face.audio import NUM_SAMPLES, spectrogram, stft
from speech2face.embedders.vggface import VGGFaceEmbedder
from speech2face.models import VoiceEncoder

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (torch.cuda.is_available() is False)"),
]


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cosine_similarity(a.float().cpu().flatten(1), b.float().cpu().flatten(1))


def test_the_stft_on_cuda_equals_the_cpus():
    noise = torch.from_numpy(np.random.default_rng(0).uniform(-1, 1, (3, NUM_SAMPLES)).astype(np.float32))
    assert spectrogram(noise.cuda()).device.type == "cuda"
    on_gpu, on_cpu = stft(noise.cuda()).cpu(), stft(noise)
    assert (on_gpu - on_cpu).abs().max() <= 1e-5 * on_cpu.abs().max()


def test_vggface_features_on_cuda_equal_the_cpus():
    crops = np.random.default_rng(1).integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)
    on_gpu = VGGFaceEmbedder(allow_random=True, device="cuda").embed(crops)
    on_cpu = VGGFaceEmbedder(allow_random=True, device="cpu").embed(crops)
    assert on_gpu.shape == on_cpu.shape == (2, 4096)
    assert cosine(torch.from_numpy(on_gpu), torch.from_numpy(on_cpu)).min() > 0.999  # TF32 convolutions on the GPU


def test_the_voice_encoder_on_cuda_equals_the_cpus():
    torch.manual_seed(0)
    encoder = VoiceEncoder("paper").eval()
    clips = spectrogram(torch.randn(2, NUM_SAMPLES) * 0.1)
    with torch.no_grad():
        on_cpu = encoder(clips)
        on_gpu = encoder.cuda()(clips.cuda())
    assert on_gpu.device.type == "cuda" and on_gpu.shape == (2, 4096)
    assert cosine(on_gpu, on_cpu).min() > 0.999
