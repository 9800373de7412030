"""Two micro-benchmarks behind benchmarks/RESULTS.md's predictions.

- wgrad: the bf16 channels_last weight gradient of two of the encoder's convolutions (conv2's
  64->64 and conv4's 128->128 shapes, 100 time steps) with 1 and with 2 torch threads.
- adam: one Adam step over the paper encoder's 148 M parameters: single-tensor loop, foreach, fused.

    python -m benchmarks.microbench wgrad adam
"""

from __future__ import annotations

import argparse
import os
import time

import torch


def best_ms(function, repeats: int = 5) -> float:
    function()  # warm-up (oneDNN JIT, allocations)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return 1e3 * min(times)


def weight_gradient(threads: int, in_channels: int, out_channels: int, width: int) -> float:
    torch.set_num_threads(threads)
    x = torch.randn(2, in_channels, 100, width, dtype=torch.bfloat16).contiguous(memory_format=torch.channels_last)
    weight = torch.randn(out_channels, in_channels, 4, 4, dtype=torch.bfloat16)
    weight = weight.contiguous(memory_format=torch.channels_last)
    grad = torch.randn_like(torch.nn.functional.conv2d(x, weight))
    return best_ms(lambda: torch.ops.aten.convolution_backward(
        grad, x, weight, [out_channels], [1, 1], [0, 0], [1, 1], False, [0, 0], 1, [False, True, True]))  # fmt: skip


def adam_step(threads: int, **kwargs) -> float:
    from speech2face.models import VoiceEncoder

    torch.set_num_threads(threads)
    model = VoiceEncoder("paper")
    for parameter in model.parameters():
        parameter.grad = torch.randn_like(parameter)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.5, 0.999), eps=1e-4, **kwargs)
    return best_ms(optimizer.step, repeats=3)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("which", nargs="+", choices=["wgrad", "adam"])
    args = parser.parse_args(argv)

    print(f"# {time.strftime('%Y-%m-%d %H:%M:%S %Z')}, load average {os.getloadavg()}")
    if "wgrad" in args.which:
        for shape in ((64, 64, 254), (128, 128, 245)):
            times = {threads: weight_gradient(threads, *shape) for threads in (1, 2)}
            print(f"wgrad bf16 {shape[0]}->{shape[1]}, 2x{shape[0]}x100x{shape[2]}: "
                  f"1 thread {times[1]:.1f} ms, 2 threads {times[2]:.1f} ms")  # fmt: skip
    if "adam" in args.which:
        for threads in (1, 2):
            variants = {"single-tensor": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}
            times = {name: adam_step(threads, **kwargs) for name, kwargs in variants.items()}
            print(f"Adam step, 148 M parameters, {threads} thread(s): "
                  + ", ".join(f"{name} {ms:.0f} ms" for name, ms in times.items()))  # fmt: skip


if __name__ == "__main__":
    main()
