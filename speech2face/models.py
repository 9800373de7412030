"""The Speech2Face voice encoder (Oh et al., CVPR 2019, table 5) and a tiny preset of the same shape.

Input: a batch of compressed STFTs, (B, T, 257, 2) = (time, frequency, [real, imag]). Output:
(B, out_dim), trained to predict a face feature (4096-D VGG-Face fc7, or 128-D dlib).

Convolutions use VALID padding, so each 4x4 conv shortens time and frequency by 3. After the last
conv the network averages over *all* time, so any duration of at least ``min_frames`` works; the
frequency length after the convs depends only on the preset, which fixes the first FC's width.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from speech2face.audio import NUM_BINS


@dataclass(frozen=True)
class ConvSpec:
    """One conv layer: ``kernel`` x ``kernel`` VALID conv, then (if ``relu_bn``) ReLU and BatchNorm,
    then (if ``time_pool`` > 1) max-pooling over time only by that factor."""

    channels: int
    kernel: int = 4
    stride: int = 1
    relu_bn: bool = True
    time_pool: int = 1


@dataclass(frozen=True)
class EncoderPreset:
    """A voice-encoder architecture: its conv stack and the width of the hidden FC layer."""

    convs: tuple[ConvSpec, ...]
    fc_hidden: int


def _scaled_convs(divisor: int) -> tuple[ConvSpec, ...]:
    paper_widths = (64, 64, 128, 128, 128, 256, 512, 512, 512)
    layout = (  # (stride, relu_bn, time_pool) of conv1 .. conv9, as in the paper's table
        (1, True, 1), (1, True, 1), (1, True, 2), (1, True, 2), (1, True, 2),
        (1, True, 2), (1, True, 1), (2, True, 1), (2, False, 1),
    )  # fmt: skip
    return tuple(
        ConvSpec(channels=width // divisor, stride=stride, relu_bn=relu_bn, time_pool=pool)
        for width, (stride, relu_bn, pool) in zip(paper_widths, layout, strict=True)
    )


PRESETS: dict[str, EncoderPreset] = {
    # The paper's table: 148,062,976 trainable parameters with out_dim=4096.
    "paper": EncoderPreset(convs=_scaled_convs(1), fc_hidden=4096),
    # Same shape, widths / 8 and a 256-wide hidden FC: about 3 M parameters, trains on a laptop CPU.
    "tiny": EncoderPreset(convs=_scaled_convs(8), fc_hidden=256),
}


def _conv_out(length: int, kernel: int, stride: int) -> int:
    return (length - kernel) // stride + 1 if length >= kernel else 0


def feature_shapes(preset: str | EncoderPreset, num_frames: int, num_bins: int = NUM_BINS) -> list[tuple[int, int]]:
    """(time, frequency) after each conv layer (after its time pooling, if any); 0 means too short."""
    spec = PRESETS[preset] if isinstance(preset, str) else preset
    time, freq, shapes = num_frames, num_bins, []
    for conv in spec.convs:
        time, freq = _conv_out(time, conv.kernel, conv.stride), _conv_out(freq, conv.kernel, conv.stride)
        time //= conv.time_pool
        shapes.append((time, freq))
    return shapes


def min_frames_for(preset: str | EncoderPreset) -> int:
    """The fewest time frames the preset accepts: every conv and pool must keep at least one step."""
    spec = PRESETS[preset] if isinstance(preset, str) else preset
    frames = 1
    for conv in reversed(spec.convs):  # invert the size formulas from the last layer back to the input
        frames = (frames * conv.time_pool - 1) * conv.stride + conv.kernel
    return frames


class VoiceEncoder(nn.Module):
    """Spectrogram (B, T, 257, 2) -> predicted face feature (B, out_dim)."""

    def __init__(self, preset: str = "paper", out_dim: int = 4096, num_bins: int = NUM_BINS):
        super().__init__()
        if preset not in PRESETS:
            raise ValueError(f"unknown voice-encoder preset {preset!r}; choose one of {sorted(PRESETS)}")
        if out_dim < 1:
            raise ValueError(f"out_dim must be positive (4096 for VGG-Face fc7, 128 for dlib), got {out_dim}")
        spec = PRESETS[preset]
        freq_after_convs = feature_shapes(spec, min_frames_for(spec), num_bins)[-1][1]
        if freq_after_convs < 1:
            raise ValueError(f"preset {preset!r} needs more than {num_bins} frequency bins")
        self.preset, self.out_dim, self.num_bins = preset, out_dim, num_bins
        self.min_frames = min_frames_for(spec)

        layers: list[nn.Module] = []
        in_channels = 2  # real and imaginary parts
        for conv in spec.convs:
            layers.append(nn.Conv2d(in_channels, conv.channels, conv.kernel, stride=conv.stride))
            if conv.relu_bn:
                layers += [nn.ReLU(inplace=True), nn.BatchNorm2d(conv.channels)]
            if conv.time_pool > 1:
                layers.append(nn.MaxPool2d(kernel_size=(conv.time_pool, 1)))
            in_channels = conv.channels
        self.convs = nn.Sequential(*layers)
        self.pooled_norm = nn.BatchNorm2d(in_channels)
        self.head = nn.Sequential(
            nn.Linear(in_channels * freq_after_convs, spec.fc_hidden),
            nn.ReLU(inplace=True),
            nn.Linear(spec.fc_hidden, out_dim),
        )

    def config(self) -> dict:
        """What rebuilds this encoder: saved as JSON next to its weights."""
        return {"preset": self.preset, "out_dim": self.out_dim, "num_bins": self.num_bins}

    def forward(self, spectrogram: torch.Tensor) -> torch.Tensor:
        if spectrogram.ndim != 4 or spectrogram.shape[-2:] != (self.num_bins, 2):
            raise ValueError(
                f"expected a (batch, time, {self.num_bins}, 2) spectrogram, got shape {tuple(spectrogram.shape)}; "
                "add a batch axis with x[None] for a single clip"
            )
        frames = spectrogram.shape[1]
        if frames < self.min_frames:
            raise ValueError(
                f"the {self.preset!r} voice encoder needs at least {self.min_frames} time frames "
                f"({(self.min_frames - 1) * 0.01 + 0.025:.2f} s of audio), got {frames}; "
                "use longer clips (shorter ones are repeated to 6 s by speech2face.audio)"
            )
        x = spectrogram.permute(0, 3, 1, 2)  # (B, 2, T, F): channels-last in memory already, no copy
        x = self.convs(x)
        x = x.mean(dim=2, keepdim=True)  # average over all time, whatever T is
        x = self.pooled_norm(torch.relu(x))
        x = torch.flatten(x, 1)  # flatten copies if needed (channels_last), unlike .view
        if not _autocast_is_on(x.device):
            return self.head(x)
        # FC1 holds 120 M of the 148 M weights and is memory-bound at training batch sizes: casting its
        # weight to bf16 and its gradient back each step costs more than an fp32 matmul (benchmarks/RESULTS.md).
        first_fc, relu, last_fc = self.head
        with torch.autocast(x.device.type, enabled=False):
            x = relu(first_fc(x.float()))
        return last_fc(x)


def _autocast_is_on(device: torch.device) -> bool:
    return device.type in ("cpu", "cuda") and torch.is_autocast_enabled(device.type)
