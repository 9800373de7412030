"""The fast path for training the voice encoder: mixed precision, memory format, fused Adam, compile.

What pays was measured by benchmarks/train_step.py (figures in benchmarks/RESULTS.md):

- **bf16 autocast** wherever the hardware multiplies bf16 natively: CUDA GPUs that support it, and
  CPUs with AMX-BF16 or AVX512-BF16 (oneDNN then runs convolutions in bf16). On other CPUs oneDNN
  emulates bf16 and it is slower than fp32, so the CPU stays in fp32 there.
- **channels_last** weights: oneDNN and cuDNN both run NHWC convolutions without layout reorders.
- **fused Adam** (``torch.optim.Adam(..., fused=True)``): one kernel over all 148 M parameters
  instead of a dozen passes; about 4x faster than the default on CPU.
- **torch.compile** is off in :func:`fast_path` unless asked for; ``trainer.train`` asks on CUDA
  (``--compile auto``), where it made the paper encoder's step 1.5x faster on an H200. On CPU it
  made that step slower, and compiling takes a minute or more per batch shape (see RESULTS.md).
- **freed memory stays in the process** on CPU (glibc's malloc, :func:`keep_freed_memory`): by default
  every block over 32 MB is a fresh mmap, so each step page-faults its activations and gradients in
  again, the kernel zeroing every page; that was 13 % of the paper encoder's CPU step.

    model, autocast = fast_path(VoiceEncoder("paper"), device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, **fast_adam_kwargs(device))
    with autocast():
        loss = ...
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from speech2face.losses import LossWeights, total_loss

AMP_CHOICES = ("auto", "bf16", "fp16", "off")
COMPILE_CHOICES = ("auto", "on", "off")


def cpu_has_native_bf16() -> bool:
    """True if this CPU multiplies bf16 in hardware (AMX-BF16 or AVX512-BF16) and oneDNN can use it."""
    native = torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported()
    return bool(native and torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


# mallopt(3) parameters: M_TRIM_THRESHOLD -1 never gives the heap's top back; M_MMAP_MAX 0 serves every
# block from the heap, whose freed memory the next allocation reuses without faulting pages in again
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4


@functools.cache
def _glibc():
    """The process's C library if it is glibc (it has ``mallopt``), else None."""
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return None
    return libc if hasattr(libc, "gnu_get_libc_version") and hasattr(libc, "mallopt") else None


@functools.cache
def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory in this process for the next allocation; False without glibc.

    Process-wide and for the process's life: its resident memory stays at its peak. A training step frees
    and allocates the same large blocks every time, so after a step or two nothing faults any more
    (the paper encoder at batch 2: 4.0 GB resident against the default's 3.5-3.6 GB peak). A lone large
    block freed and allocated again can leave the heap several copies of itself before it settles.
    """
    libc = _glibc()
    return bool(libc and libc.mallopt(_M_MMAP_MAX, 0) and libc.mallopt(_M_TRIM_THRESHOLD, -1))


@dataclass(frozen=True)
class FastPathChoice:
    """What :func:`fast_path` does on a device, and why (``reason`` is for logs)."""

    device: torch.device
    amp_dtype: torch.dtype | None  # None: full fp32
    channels_last: bool
    compile: bool
    keep_freed_memory: bool  # glibc's malloc keeps freed memory for reuse (CPU only; see keep_freed_memory)
    reason: str

    def configure_process(self) -> None:
        """The fast path's process-wide settings; a process that trains on it calls this once.

        CUDA: TF32 for any fp32 matmul left outside autocast, and cuDNN's algorithm search (the
        shapes are fixed). CPU: :func:`keep_freed_memory`.
        """
        if self.device.type == "cuda":
            torch.set_float32_matmul_precision("high")
            torch.backends.cudnn.benchmark = True
        if self.keep_freed_memory:
            keep_freed_memory()

    def autocast(self) -> contextlib.AbstractContextManager:
        """A fresh autocast context for one forward pass and loss (a no-op in fp32)."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)


def choose_fast_path(device: torch.device | str, amp: str = "auto", compile: bool | str = False) -> FastPathChoice:
    """The fast-path settings for ``device``. ``amp``: "auto" (bf16 where native, else fp32), "bf16",
    "fp16" (CUDA only) or "off". ``compile``: a bool, or one of COMPILE_CHOICES, where "auto" compiles
    on CUDA only (on an H200 it made the paper encoder's step 1.5x faster; on CPU it made that step slower)."""
    device = torch.device(device)
    if amp not in AMP_CHOICES:
        raise ValueError(f"amp must be one of {AMP_CHOICES}, got {amp!r}")
    if isinstance(compile, str):
        if compile not in COMPILE_CHOICES:
            raise ValueError(f"compile must be one of {COMPILE_CHOICES}, got {compile!r}")
        compile = compile == "on" or (compile == "auto" and device.type == "cuda")
    if device.type == "cuda":
        bf16_native, where = torch.cuda.is_bf16_supported(), "this GPU"
    elif device.type == "cpu":
        bf16_native, where = cpu_has_native_bf16(), "this CPU (no AMX-BF16/AVX512-BF16)"
        if amp == "fp16":
            raise ValueError("fp16 autocast needs a CUDA device; on CPU use amp='bf16' or 'off'")
    else:
        raise ValueError(f"fast path is for 'cpu' or 'cuda' devices, got {device}")
    if amp == "auto":
        amp_dtype = torch.bfloat16 if bf16_native else None
        reason = "bf16 autocast: native bf16" if bf16_native else f"fp32: bf16 is emulated on {where}"
    else:
        amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "off": None}[amp]
        reason = f"amp={amp} as asked"
    keep_memory = device.type == "cpu" and _glibc() is not None
    return FastPathChoice(device, amp_dtype, channels_last=True, compile=compile, keep_freed_memory=keep_memory,
                          reason=reason)  # fmt: skip


def fast_path(
    model: nn.Module, device: torch.device | str, amp: str = "auto", compile: bool = False
) -> tuple[nn.Module, Callable[[], contextlib.AbstractContextManager]]:
    """Move ``model`` to ``device`` in the fast layout and return ``(model, autocast)``.

    ``autocast()`` makes a fresh context to wrap each forward pass and loss. With ``compile=True`` the
    returned model is ``torch.compile(model)`` (same parameters; save ``model._orig_mod`` or the
    original module's state_dict). It also applies the process-wide settings
    (:meth:`FastPathChoice.configure_process`).
    """
    choice = choose_fast_path(device, amp, compile)
    model = model.to(choice.device, memory_format=torch.channels_last)
    choice.configure_process()
    if choice.compile:
        model = torch.compile(model)
    return model, choice.autocast


def fast_adam_kwargs(device: torch.device | str) -> dict:
    """Extra ``torch.optim.Adam`` arguments for the fast path: the fused kernel (CPU and CUDA)."""
    return {"fused": torch.device(device).type in ("cpu", "cuda")}


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
               choice: FastPathChoice, spectrogram: torch.Tensor, face: torch.Tensor, weights: LossWeights,
               classifier=None, decoder_first=None) -> dict[str, torch.Tensor]:  # fmt: skip
    """One optimizer step of the voice encoder, exactly as ``trainer.train`` runs it; returns the losses.

    The forward pass runs under the fast path's autocast; the loss is computed in fp32 (the feature's
    L2 normalisation and the distillation softmax lose too much in bf16).
    """
    with choice.autocast():
        prediction = model(spectrogram)
    losses = total_loss(prediction.float(), face.float(), weights, classifier, decoder_first)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(losses["total"]).backward()
    scaler.step(optimizer)
    scaler.update()
    return losses


def decoder_train_step(model: nn.Module, decoder, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
                       choice: FastPathChoice, features: torch.Tensor, faces: torch.Tensor, landmarks: torch.Tensor,
                       weights, embed=None) -> dict[str, torch.Tensor]:  # fmt: skip
    """One optimizer step of the face decoder, exactly as ``trainer.train_decoder`` runs it; returns the losses.

    ``model`` is what the step calls (DDP's wrapper in training), ``decoder`` the FaceDecoder inside it;
    the warp's spline runs in fp32 even under autocast (speech2face.warp).
    """
    from speech2face.decoder import decoder_losses

    with choice.autocast():
        decoded = model(features)
    losses = decoder_losses(decoder, decoded, faces, landmarks, weights, embed, features)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(losses["total"]).backward()
    scaler.step(optimizer)
    scaler.update()
    return losses
