"""Training-step throughput of the voice encoder, per variant and batch size, against the Keras reference.

One step = forward, the paper's loss (L1 + 0.025 L2norm + 200 distillation through a frozen VGG-Face
fc8, T = 2; or --loss l2norm, the seed's, which trainer.train and the Keras reference train with),
backward and Adam, on random data of the real shapes (598 x 257 x 2 -> 4096). Prints
samples/s, achieved TFLOP/s and % of the device's peak. FLOPs are counted from the model with
torch.utils.flop_counter on one forward + backward; the peaks are measured here with large matmuls
(at the start and the end; the higher is kept). Step times are the best of the timed steps (the
median is in the JSON): on a shared machine the best is the least disturbed, for every variant alike.

Variants are '+'-joined features: fp32 (nothing), channels_last, bf16 (autocast), compile
(torch.compile), fused_adam, bf16_head (the FC head under autocast too, as before the encoder kept
its first FC in fp32: for A/B), process_settings (FastPathChoice.configure_process: on CPU glibc keeps
freed memory, on CUDA cuDNN searches its algorithms; process-wide, so the variants after it keep it);
"fast" is what speech2face.perf.fast_path picks on this device;
"trainer" is exactly trainer.train's step: the spectrogram of the stored int16 waveform (audio.model_input, cropped to
--frames), then speech2face.perf.train_step on the fast path (--amp auto, --compile auto: compiled on CUDA).

    python -m benchmarks.train_step --batch-sizes 2 --steps 3 --warmup 1 --json /tmp/train_step.json
    # the demo's training step (tiny preset, 300-frame crops, 128-D dlib features, L2norm loss):
    python -m benchmarks.train_step --preset tiny --batch-sizes 8 --frames 300 --out-dim 128 --loss l2norm \
        --variants trainer --no-keras --steps 20
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from speech2face.audio import NUM_BINS, NUM_FRAMES, NUM_SAMPLES, model_input
from speech2face.embedders.vggface import FEATURE_DIM, VGGFace
from speech2face.losses import LossWeights, total_loss
from speech2face.models import VoiceEncoder
from speech2face.perf import choose_fast_path, train_step

FEATURES = ("fp32", "channels_last", "bf16", "compile", "fused_adam", "bf16_head", "process_settings", "trainer")
DEFAULT_VARIANTS = ",".join(
    [
        "fp32",
        "channels_last",
        "bf16",
        "bf16+channels_last",
        "bf16+channels_last+fused_adam",
        "fast+bf16_head",
        "fast",
        "fast+compile",
    ]
)
LOSSES = {"paper": LossWeights(l1=1.0, l2norm=0.025, distill=200.0, temperature=2.0), "l2norm": LossWeights()}


def parse_variant(name: str, device: torch.device) -> frozenset[str]:
    """'bf16+channels_last' -> {'bf16', 'channels_last'}; 'fast' expands to speech2face.perf's choice."""
    features = set()
    trainer_path = choose_fast_path(device, compile="auto")  # what trainer.train picks by default
    native_bf16 = trainer_path.amp_dtype == torch.bfloat16
    fast = {"channels_last", "fused_adam", "process_settings"} | ({"bf16"} if native_bf16 else set())
    for part in name.split("+"):
        if part == "fast":
            features |= fast
        elif part == "trainer":  # its bf16 is the fast path's choice (the label picks the peak to compare to)
            features |= fast | {"trainer"} | ({"compile"} if trainer_path.compile else set())
        elif part in FEATURES:
            features.add(part)
        else:
            raise SystemExit(f"unknown variant feature {part!r} in {name!r}; use '+'-joined {FEATURES} or 'fast'")
    features.discard("fp32")
    return frozenset(features)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_peak_tflops(device: torch.device, dtype: torch.dtype, size: int | None = None, repeats: int = 5) -> float:
    """Best of ``repeats`` large square matmuls, in TFLOP/s: the device's practical peak for ``dtype``."""
    size = size or (8192 if device.type == "cuda" else 2048)
    a, b = (torch.randn(size, size, device=device).to(dtype) for _ in range(2))
    a @ b  # warm-up: library start-up and, on CPU, oneDNN's JIT
    synchronize(device)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e12


def make_classifier(device: torch.device):
    """A frozen, randomly initialised VGG-Face fc8 (only fc8 is used by the distillation loss)."""
    with torch.device("meta"):
        vggface = VGGFace()
    vggface.fc8 = vggface.fc8.to_empty(device=device).requires_grad_(False)
    torch.nn.init.normal_(vggface.fc8.weight, std=0.01)
    torch.nn.init.zeros_(vggface.fc8.bias)
    return vggface.classifier_logits


def count_step_flops(preset: str, batch_size: int, frames: int, out_dim: int, loss: str) -> int:
    """FLOPs of one forward + backward (encoder and loss), counted on the meta device (shapes only)."""
    device = torch.device("meta")
    with device:
        model = VoiceEncoder(preset, out_dim)
        spectrograms = torch.randn(batch_size, frames, NUM_BINS, 2)
        targets = torch.randn(batch_size, out_dim)
    classifier = make_classifier(device) if LOSSES[loss].distill else None
    with FlopCounterMode(display=False) as counter:
        total_loss(model(spectrograms), targets, LOSSES[loss], classifier)["total"].backward()
    return counter.get_total_flops()


def _bf16_head_forward(model: VoiceEncoder, spectrograms: torch.Tensor) -> torch.Tensor:
    """VoiceEncoder.forward as it was before FC1 stayed fp32 under autocast (the bf16_head A/B)."""
    x = model.convs(spectrograms.permute(0, 3, 1, 2)).mean(dim=2, keepdim=True)
    return model.head(torch.flatten(model.pooled_norm(torch.relu(x)), 1))


def time_variant(
    preset: str, batch_size: int, features: frozenset[str], steps: int, warmup: int, device, profile: bool = False,
    frames: int = NUM_FRAMES, out_dim: int = FEATURE_DIM, loss: str = "paper",
) -> dict:  # fmt: skip
    """Seconds per training step of one variant: the best and the median of ``steps`` timed ones."""
    torch.manual_seed(0)
    model = VoiceEncoder(preset, out_dim).to(device)
    if "channels_last" in features:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(
        model.parameters(), lr=1e-3, betas=(0.5, 0.999), eps=1e-4, fused="fused_adam" in features or None
    )
    if "bf16_head" in features:
        model.forward = _bf16_head_forward.__get__(model)
    step_model = torch.compile(model) if "compile" in features else model
    weights = LOSSES[loss]
    classifier = make_classifier(device) if weights.distill else None
    spectrograms = torch.randn(batch_size, frames, NUM_BINS, 2, device=device)
    targets = torch.randn(batch_size, out_dim, device=device)
    # the trainer's input: the stored int16 waveform, cropped and turned into the spectrogram inside the step
    waveforms = (torch.randn(batch_size, NUM_SAMPLES, device=device) * 3000).to(torch.int16)
    crop, generator = (frames if frames < NUM_FRAMES else None), torch.Generator().manual_seed(0)
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled="bf16" in features)
    choice = choose_fast_path(device)
    scaler = torch.amp.GradScaler(device.type, enabled=choice.amp_dtype == torch.float16)
    if "process_settings" in features:
        choice.configure_process()

    def step() -> float:
        if "trainer" in features:  # the very functions trainer.train's loop calls, from the waveform on
            inputs = model_input(waveforms, crop, generator)
            losses = train_step(step_model, optimizer, scaler, choice, inputs, targets, weights, classifier)
            return losses["total"].item()
        with amp:
            losses = total_loss(step_model(spectrograms), targets, weights, classifier)
        optimizer.zero_grad(set_to_none=True)
        losses["total"].backward()
        optimizer.step()
        return losses["total"].item()  # also waits for the device

    times, faults, rss_mb = [], [], []
    for _ in range(warmup + steps):
        faults_before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        start = time.perf_counter()
        loss = step()
        times.append(time.perf_counter() - start)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults_before)
        rss_mb.append(_rss_mb())
        if not torch.isfinite(torch.tensor(loss)):
            raise RuntimeError(f"non-finite loss {loss} in variant {sorted(features)}")
    timed = times[warmup:]
    profile_table = profile_step(step, device) if profile else None
    return {"profile": profile_table, "first_step_s": times[0], "step_times_s": timed, "step_s": min(timed),
            "median_step_s": statistics.median(timed), "page_faults_per_step": faults[warmup:],
            "rss_mb_after_step": rss_mb[warmup:]}  # fmt: skip


def _rss_mb() -> int:
    """This process's resident memory now (Linux), in MB."""
    with open("/proc/self/statm") as file:
        return int(file.read().split()[1]) * resource.getpagesize() // 2**20


def profile_step(step, device: torch.device, rows: int = 15) -> str:
    """torch.profiler's table of one more step: the ops that took the most time."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as profiler:
        step()
    sort_by = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    return profiler.key_averages().table(sort_by=sort_by, row_limit=rows, max_name_column_width=50)


def run_keras_reference(batch_size: int, steps: int, warmup: int, threads: int | None) -> dict:
    """benchmarks.keras_reference in a subprocess, so TensorFlow's threads and memory stay out of ours."""
    with tempfile.TemporaryDirectory() as directory:
        out = os.path.join(directory, "keras.json")
        command = [sys.executable, "-m", "benchmarks.keras_reference", f"--batch-size={batch_size}",
                   f"--steps={steps}", f"--warmup={warmup}", f"--json={out}"]  # fmt: skip
        if threads:
            command.append(f"--threads={threads}")
        subprocess.run(command, check=True, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        with open(out) as file:
            return json.load(file)


def new_report(module: str, argv: list[str] | None) -> dict:
    """A CPU benchmark's report: its command, the date and the machine."""
    arguments = " ".join(argv if argv is not None else sys.argv[1:])
    return {
        "command": f"python -m {module} {arguments}".strip(),
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "machine": machine_info(torch.device("cpu")),
    }


def finish_report(report: dict, json_path: str | None) -> None:
    """Record the load average at the end, print the report, and write it to ``json_path`` if given."""
    report["machine"]["load_average_at_end"] = os.getloadavg()
    print(json.dumps(report, indent=2))
    if json_path:
        with open(json_path, "w") as file:
            file.write(json.dumps(report, indent=2) + "\n")


def machine_info(device: torch.device) -> dict:
    info = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "torch_threads": torch.get_num_threads(),
        "load_average_at_start": os.getloadavg(),
    }
    if device.type == "cuda":
        info["device_name"] = torch.cuda.get_device_name(device)
    else:
        try:
            model_line = next(line for line in open("/proc/cpuinfo") if line.startswith("model name"))
            info["device_name"] = model_line.split(":", 1)[1].strip()
        except (OSError, StopIteration):
            info["device_name"] = platform.processor()
        info["cpu_count"] = os.cpu_count()
        info["cpu_native_bf16"] = choose_fast_path(device).reason
    return info


def print_table(report: dict) -> None:
    """The final table: % of peak against the higher of the start and end peaks."""
    peaks = report["peak_tflops"]
    print(f"# matmul peak (best of start and end): fp32 {peaks['fp32']:.3f} TFLOP/s, bf16 {peaks['bf16']:.3f} TFLOP/s")
    print(f"{'batch':>5} {'variant':<36} {'s/step':>7} {'s/sample':>8} {'samples/s':>9} {'TFLOP/s':>7} "
          f"{'%peak':>6} {'vs keras':>8} {'1st step':>8}")  # fmt: skip
    for row in report["results"]:
        peak = peaks["bf16" if "bf16" in row["features"] else "fp32"]
        row["percent_of_peak"] = 100 * row["tflops"] / peak
        ratio = f"{row['ratio_to_keras']:>8.2f}" if "ratio_to_keras" in row else f"{'-':>8}"
        first = f"{row['first_step_s']:>7.1f}s" if "first_step_s" in row else f"{'-':>8}"
        print(
            f"{row['batch_size']:>5} {row['name']:<36} {row['step_s']:>7.2f} {row['s_per_sample']:>8.2f} "
            f"{row['samples_per_s']:>9.3f} {row['tflops']:>7.3f} {row['percent_of_peak']:>5.1f}% {ratio} {first}"
        )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="paper", choices=["paper", "tiny"])
    parser.add_argument("--batch-sizes", default="2", help="comma-separated, e.g. 1,2")
    parser.add_argument("--frames", type=int, default=NUM_FRAMES, help="spectrogram frames (trainer's --crop-frames)")
    parser.add_argument("--out-dim", type=int, default=FEATURE_DIM, help="face feature size (128 for dlib data)")
    parser.add_argument(
        "--loss",
        choices=sorted(LOSSES),
        default="paper",
        help="paper: L1 + L2norm + distillation; l2norm: the seed's, as trainer.train and Keras",
    )
    parser.add_argument("--variants", default=DEFAULT_VARIANTS, help=f"comma-separated (default {DEFAULT_VARIANTS})")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per variant (best reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first (compile happens here)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, help="torch (and TF) intra-op threads; default: the libraries' own")
    parser.add_argument("--no-keras", action="store_true", help="skip the tf-keras reference")
    parser.add_argument("--profile", action="store_true", help="print torch.profiler's top ops of one more step")
    parser.add_argument("--json", help="write every figure and the machine's details to this file")
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    variants = {name: parse_variant(name, device) for name in args.variants.split(",")}
    report = {"machine": machine_info(device), "preset": args.preset, "args": vars(args), "results": []}
    print(f"# {report['machine']}", flush=True)
    peaks = {"fp32": measure_peak_tflops(device, torch.float32), "bf16": measure_peak_tflops(device, torch.bfloat16)}
    report["peak_tflops_at_start"] = dict(peaks)

    for batch_size in batch_sizes:
        flops = count_step_flops(args.preset, batch_size, args.frames, args.out_dim, args.loss)
        print(f"# batch {batch_size}: {flops / batch_size / 1e9:.0f} GFLOP per sample per step (counted)", flush=True)
        keras = None
        if not args.no_keras and (args.preset, args.frames, args.out_dim) == ("paper", NUM_FRAMES, FEATURE_DIM):
            keras = run_keras_reference(batch_size, args.steps, args.warmup, args.threads)
            keras.update(features=[], flops_per_step=flops, tflops=flops / keras["step_s"] / 1e12, ratio_to_keras=1.0)
            report["results"].append(keras)
            where = ", ".join(keras["tf_gpus"]) or "CPU"
            print(f"  {keras['name']}: {keras['step_s']:.2f} s/step (TensorFlow on {where})", flush=True)
        for name, features in variants.items():
            timing = time_variant(args.preset, batch_size, features, args.steps, args.warmup, device, args.profile,
                                  args.frames, args.out_dim, args.loss)  # fmt: skip
            if timing["profile"]:
                print(f"# profile of one step: {name}, batch {batch_size}\n{timing['profile']}", flush=True)
            row = {"name": name, "features": sorted(features), "batch_size": batch_size, "flops_per_step": flops,
                   **timing, "s_per_sample": timing["step_s"] / batch_size,
                   "samples_per_s": batch_size / timing["step_s"],
                   "tflops": flops / timing["step_s"] / 1e12}  # fmt: skip
            if keras:
                row["ratio_to_keras"] = row["s_per_sample"] / keras["s_per_sample"]
            report["results"].append(row)
            steps = ", ".join(f"{t:.2f}" for t in timing["step_times_s"])
            print(f"  {name}: {row['step_s']:.2f} s/step (steps {steps}); page faults a step "
                  f"{timing['page_faults_per_step']}, RSS after the last {timing['rss_mb_after_step'][-1]} MB",
                  flush=True)  # fmt: skip
    for dtype, name in ((torch.float32, "fp32"), (torch.bfloat16, "bf16")):
        peaks[name] = max(peaks[name], measure_peak_tflops(device, dtype))
    report["peak_tflops"] = peaks
    report["machine"]["load_average_at_end"] = os.getloadavg()
    print_table(report)
    print(f"# load average at start {report['machine']['load_average_at_start']}, at end {os.getloadavg()}")
    if args.json:
        with open(args.json, "w") as file:
            json.dump(report, file, indent=2)


if __name__ == "__main__":
    main()
