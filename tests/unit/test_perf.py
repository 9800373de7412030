"""The training fast path: bf16 only where the hardware has it, channels_last, fused Adam, FC1 in fp32,
freed memory kept for reuse on CPU."""

import pytest
import torch

from speech2face.models import VoiceEncoder
from speech2face.perf import choose_fast_path, cpu_has_native_bf16, fast_adam_kwargs, fast_path


def test_cpu_bf16_follows_the_cpu_flags():
    flags = torch.cpu.get_capabilities()
    assert cpu_has_native_bf16() == bool(flags.get("amx_bf16") or flags.get("avx512_bf16"))
    choice = choose_fast_path("cpu")
    assert choice.amp_dtype == (torch.bfloat16 if cpu_has_native_bf16() else None), choice.reason
    assert choose_fast_path("cpu", amp="off").amp_dtype is None
    assert choose_fast_path("cpu", amp="bf16").amp_dtype == torch.bfloat16
    with pytest.raises(ValueError, match="fp16 autocast needs a CUDA device"):
        choose_fast_path("cpu", amp="fp16")
    with pytest.raises(ValueError, match="amp must be one of"):
        choose_fast_path("cpu", amp="half")


def test_compile_is_chosen_on_cuda_only_unless_asked():
    assert choose_fast_path("cpu", compile="auto").compile is False  # slower on CPU (benchmarks/RESULTS.md)
    assert choose_fast_path("cpu", compile="on").compile is True
    assert choose_fast_path("cpu", compile=True).compile is True
    with pytest.raises(ValueError, match="compile must be one of"):
        choose_fast_path("cpu", compile="yes")


def test_fast_path_trains_the_tiny_encoder_in_channels_last():
    torch.manual_seed(0)
    model, autocast = fast_path(VoiceEncoder("tiny", out_dim=128), "cpu", amp="bf16")
    assert model.convs[0].weight.is_contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, **fast_adam_kwargs("cpu"))
    assert optimizer.defaults["fused"] is True
    spectrograms, targets = torch.randn(2, 264, 257, 2), torch.randn(2, 128)
    losses = []
    for _ in range(5):
        with autocast():
            prediction = model(spectrograms)
            loss = torch.nn.functional.mse_loss(prediction.float(), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert prediction.dtype == torch.bfloat16
    assert losses[-1] < losses[0], losses


def test_first_fc_stays_fp32_under_autocast():
    # FC1 holds most weights: under autocast it runs in fp32 (no per-step weight casts); the rest is bf16
    encoder = VoiceEncoder("tiny", out_dim=128)
    seen = {}
    encoder.head[0].register_forward_hook(lambda m, i, o: seen.update(fc1_in=i[0].dtype, fc1_out=o.dtype))
    encoder.convs[0].register_forward_hook(lambda m, i, o: seen.update(conv1_out=o.dtype))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = encoder(torch.randn(1, 264, 257, 2))
    assert seen == {"conv1_out": torch.bfloat16, "fc1_in": torch.float32, "fc1_out": torch.float32}
    assert out.dtype == torch.bfloat16
    with torch.no_grad():
        assert encoder(torch.randn(1, 264, 257, 2)).dtype == torch.float32
