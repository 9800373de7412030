"""The seed's voice encoder rebuilt in tf-keras, as the speed reference for benchmarks/train_step.py.

The seed is the student report by Talluri, Verma and Ankit (IIT Bombay), "Speech2Face: Learning the Face
Behind a Voice". Built from the architecture of Oh et al. (CVPR 2019) and that report, not from its code:
VALID 4x4 convs, each followed by ReLU then BatchNorm; 2x1 max-pools over time only; the last conv
without activation; average over all time, ReLU, BatchNorm; FC 4096 + ReLU; FC 4096. Keras counts
148,067,584 parameters (BatchNorm moving statistics included). One training step is the seed's:
L2norm loss, Adam(1e-3, beta_1=0.5), fp32, in a tf.function (what ``model.train_on_batch`` runs).

    python -m benchmarks.keras_reference --batch-size 2 --steps 3 --warmup 1
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TF's start-up banner out of the figures

# (channels, stride, relu_bn, time_pool) of conv1 .. conv9: the paper's table with VALID padding
SEED_CONVS = (
    (64, 1, True, 1), (64, 1, True, 1), (128, 1, True, 2), (128, 1, True, 2), (128, 1, True, 2),
    (256, 1, True, 2), (512, 1, True, 1), (512, 2, True, 1), (512, 2, False, 1),
)  # fmt: skip
KERAS_PARAMETER_COUNT = 148_067_584  # the seed's model.summary(), moving statistics included


def build_keras_encoder(num_frames: int = 598, num_bins: int = 257, out_dim: int = 4096):
    """The seed's encoder as a tf_keras Model: (B, T, 257, 2) -> (B, out_dim)."""
    import tf_keras as keras

    layers = keras.layers
    inputs = keras.Input((num_frames, num_bins, 2))
    x = inputs
    for channels, stride, relu_bn, time_pool in SEED_CONVS:
        x = layers.Conv2D(channels, 4, strides=stride, padding="valid")(x)
        if relu_bn:
            x = layers.BatchNormalization()(layers.ReLU()(x))
        if time_pool > 1:
            x = layers.MaxPooling2D(pool_size=(time_pool, 1))(x)
    x = layers.Lambda(lambda t: keras.backend.mean(t, axis=1, keepdims=True), name="time_average")(x)
    x = layers.BatchNormalization()(layers.ReLU()(x))
    x = layers.Dense(4096, activation="relu")(layers.Flatten()(x))
    return keras.Model(inputs, layers.Dense(out_dim)(x), name="seed_voice_encoder")


def l2norm_loss(target, pred):
    import tensorflow as tf

    return tf.reduce_mean(tf.reduce_sum(tf.square(tf.math.l2_normalize(target, 1) - tf.math.l2_normalize(pred, 1)), 1))


def time_keras_step(
    batch_size: int, steps: int, warmup: int, num_frames: int = 598, seed: int = 0, threads: int | None = None
) -> dict:
    """Seconds per training step of the Keras reference on random data (the first ``warmup`` untimed)."""
    import numpy as np
    import tensorflow as tf
    import tf_keras as keras

    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.random.set_seed(seed)
    model = build_keras_encoder(num_frames)
    parameters = model.count_params()
    if num_frames == 598 and parameters != KERAS_PARAMETER_COUNT:
        raise RuntimeError(f"Keras reference has {parameters:,} parameters, expected {KERAS_PARAMETER_COUNT:,}")
    model.compile(optimizer=keras.optimizers.Adam(1e-3, beta_1=0.5), loss=l2norm_loss)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch_size, num_frames, 257, 2), dtype=np.float32)
    y = rng.standard_normal((batch_size, 4096), dtype=np.float32)
    for _ in range(warmup):
        model.train_on_batch(x, y)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        loss = model.train_on_batch(x, y)
        times.append(time.perf_counter() - start)
    if not np.isfinite(loss):
        raise RuntimeError(f"Keras reference loss is {loss}")
    step_s = float(min(times))  # the least disturbed step on a shared machine, as in train_step
    return {
        "name": "keras_reference",
        "batch_size": batch_size,
        "parameters": parameters,
        "step_s": step_s,
        "step_times_s": times,
        "median_step_s": float(np.median(times)),
        "s_per_sample": step_s / batch_size,
        "samples_per_s": batch_size / step_s,
        "tf_version": tf.__version__,
        "tf_intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
        "tf_gpus": [device.name for device in tf.config.list_physical_devices("GPU")],  # [] = it ran on the CPU
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3, help="timed steps (best reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first (graph tracing)")
    parser.add_argument("--num-frames", type=int, default=598)
    parser.add_argument("--threads", type=int, help="TF intra-op threads (default: TF's own, all cores)")
    parser.add_argument("--json", help="also write the result to this JSON file")
    args = parser.parse_args(argv)
    result = time_keras_step(args.batch_size, args.steps, args.warmup, args.num_frames, threads=args.threads)
    print(f"keras reference: batch {args.batch_size}: {result['step_s']:.2f} s/step, "
          f"{result['s_per_sample']:.2f} s/sample, {result['parameters']:,} parameters")  # fmt: skip
    if args.json:
        with open(args.json, "w") as file:
            json.dump(result, file, indent=2)


if __name__ == "__main__":
    main()
