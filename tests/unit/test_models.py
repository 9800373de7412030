"""The voice encoder: the paper's exact architecture, any duration, and a tiny preset that learns."""

import json

import pytest
import torch

from speech2face.losses import l2norm_loss
from speech2face.models import PRESETS, VoiceEncoder, feature_shapes, min_frames_for

# (time, freq) after each conv of the paper's table (589x248 is conv3, before its 2x1 time pool)
PAPER_CONV_OUTPUTS = [
    (595, 254), (592, 251), (589, 248), (291, 245), (142, 242), (68, 239), (31, 236), (14, 117), (6, 57),
]  # fmt: skip
PAPER_POOL_OUTPUTS = [(294, 248), (145, 245), (71, 242), (34, 239)]


@pytest.fixture(scope="module")
def paper_encoder():
    torch.manual_seed(0)
    return VoiceEncoder("paper").eval()


def test_paper_parameter_count_matches_the_paper(paper_encoder):
    trainable = sum(p.numel() for p in paper_encoder.parameters() if p.requires_grad)
    assert trainable == 148_062_976
    # Keras also counts the BatchNorm moving mean and variance: 148,067,584 in the seed's summary.
    buffers = paper_encoder.named_buffers()
    moving_stats = sum(b.numel() for name, b in buffers if name.endswith(("running_mean", "running_var")))
    assert trainable + moving_stats == 148_067_584
    assert (paper_encoder.preset, paper_encoder.out_dim) == ("paper", 4096)


def test_paper_layer_sizes_match_the_table_on_598_frames(paper_encoder):
    sizes: dict[str, list] = {"conv": [], "pool": [], "pooled": []}

    def record(kind):
        return lambda module, inputs, output: sizes[kind].append(tuple(output.shape))

    modules = list(paper_encoder.modules())
    hooks = [m.register_forward_hook(record("conv")) for m in modules if isinstance(m, torch.nn.Conv2d)]
    hooks += [m.register_forward_hook(record("pool")) for m in modules if isinstance(m, torch.nn.MaxPool2d)]
    hooks.append(paper_encoder.pooled_norm.register_forward_hook(record("pooled")))
    try:
        with torch.no_grad():
            out = paper_encoder(torch.randn(1, 598, 257, 2))
    finally:
        for hook in hooks:
            hook.remove()
    assert [shape[2:] for shape in sizes["conv"]] == PAPER_CONV_OUTPUTS
    assert [shape[2:] for shape in sizes["pool"]] == PAPER_POOL_OUTPUTS
    assert [shape[1] for shape in sizes["conv"]] == [64, 64, 128, 128, 128, 256, 512, 512, 512]
    assert sizes["pooled"] == [(1, 512, 1, 57)]  # time averaged away; BN over 512 channels
    assert out.shape == (1, 4096) and torch.isfinite(out).all()
    assert feature_shapes("paper", 598)[-1] == (6, 57)


def test_paper_encoder_takes_other_durations(paper_encoder):
    with torch.no_grad():
        assert paper_encoder(torch.randn(1, 300, 257, 2)).shape == (1, 4096)
        assert paper_encoder(torch.randn(1, paper_encoder.min_frames, 257, 2)).shape == (1, 4096)


def test_too_few_frames_or_wrong_layout_is_a_clear_error():
    encoder = VoiceEncoder("tiny", out_dim=128)
    assert encoder.min_frames == min_frames_for("tiny") == min_frames_for("paper") == 259
    assert feature_shapes("paper", 258)[-1][0] == 0 and feature_shapes("paper", 259)[-1][0] == 1
    with pytest.raises(ValueError, match="at least 259 time frames"):
        encoder(torch.randn(1, 258, 257, 2))
    with pytest.raises(ValueError, match=r"\(batch, time, 257, 2\)"):
        encoder(torch.randn(598, 257, 2))
    with pytest.raises(ValueError, match="unknown voice-encoder preset"):
        VoiceEncoder("huge")


def test_config_rebuilds_the_same_network():
    encoder = VoiceEncoder("tiny", out_dim=128)
    rebuilt = VoiceEncoder(**json.loads(json.dumps(encoder.config())))
    assert [p.shape for p in rebuilt.parameters()] == [p.shape for p in encoder.parameters()]
    assert set(PRESETS) == {"paper", "tiny"}


def test_tiny_encoder_learns_a_fixed_target():
    torch.manual_seed(0)
    encoder = VoiceEncoder("tiny", out_dim=128)
    optimizer = torch.optim.Adam(encoder.parameters(), lr=1e-3, betas=(0.5, 0.999))
    spectrograms, targets = torch.randn(2, 264, 257, 2), torch.randn(2, 128)
    losses = []
    for _ in range(5):
        loss = l2norm_loss(encoder(spectrograms), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


def test_channels_last_and_bf16_autocast_give_the_same_answer():
    torch.manual_seed(0)
    encoder = VoiceEncoder("tiny", out_dim=128).eval()
    spectrograms = torch.randn(2, 300, 257, 2)
    with torch.no_grad():
        reference = encoder(spectrograms)
        encoder = encoder.to(memory_format=torch.channels_last)
        channels_last = encoder(spectrograms)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16 = encoder(spectrograms)
    torch.testing.assert_close(channels_last, reference, rtol=1e-4, atol=1e-4)
    assert bf16.dtype == torch.bfloat16
    assert torch.nn.functional.cosine_similarity(bf16.float(), reference).min() > 0.99
