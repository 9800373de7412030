"""trainer.train on real data: a small demo corpus through the real pipeline, real Ray Train (gloo DDP).

The dlib dataset is the session's ``small_dataset`` (conftest.py); the VGG-Face one (random weights) is
made once for this module from the same corpus, through pipelines.preprocess (a loopback HTTP server,
yt-dlp, ffmpeg, dlib).
"""

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from speech2face import audio, storage
from speech2face.perf import cpu_has_native_bf16
from tests.support.cli import ROOT, TINY_RUN, check, read_metrics, run


@pytest.fixture(scope="module")
def dlib_data(small_dataset) -> Path:
    counts = storage.read_json(str(small_dataset / "manifest.json"))["counts"]["per_split"]
    assert counts.get("train", 0) >= 6 and counts.get("val", 0) >= 1, counts
    return small_dataset


def test_the_session_ray_answers_state_queries_about_its_own_actors(ray_session, ray_address):
    """Ray Train's PlacementGroupCleaner removes a run's placement group when the State API, asked from a
    worker, says the controller is gone; the session Ray must answer for itself (conftest.py). The
    background demo's Ray runs on the same machine, so the worker is told which Ray is its own
    (RAY_ADDRESS, as a CLI run joined to the session has); without it the State API refuses to guess."""
    from ray.train.v2._internal.state.util import is_actor_alive

    @ray_session.remote(num_cpus=0, runtime_env={"env_vars": {"RAY_ADDRESS": ray_address}})
    class Probe:
        def actor_id(self) -> str:
            return ray_session.get_runtime_context().get_actor_id()

        def is_alive(self, actor_id: str) -> bool:
            return bool(is_actor_alive(actor_id, timeout=10))

    probe = Probe.remote()
    assert ray_session.get(probe.is_alive.remote(ray_session.get(probe.actor_id.remote())))
    ray_session.kill(probe)


def checkpoint_dirs(run_dir: str) -> list[str]:
    files = storage.list_files(run_dir)
    return sorted({uri.split("/checkpoint_")[1].split("/")[0] for uri in files if "/checkpoint_" in uri})


LOAD_WITHOUT_RAY = """
import json, sys, numpy as np, torch
from speech2face.inference import read_model
model, meta = read_model(sys.argv[1])
out = model(torch.zeros(1, 598, 257, 2))
print(json.dumps({"ray_loaded": "ray" in sys.modules, "shape": list(out.shape), "preset": meta["preset"],
                  "out_dim": meta["out_dim"], "epoch": meta["epoch"], "embedder": meta["embedder"]["name"]}))
"""


def test_two_worker_ddp_run_resumes_on_s3_storage(dlib_data, s3_bucket, ray_address):
    """2-worker gloo DDP, storage on a real S3 server: outputs appear, a rerun continues after epoch 2."""
    storage_uri = f"s3://{s3_bucket.name}/runs"
    run_uri = storage.join(storage_uri, "ddp")
    args = ["--data", str(dlib_data), "--storage", storage_uri, "--name", "ddp", "--num-workers", "2", *TINY_RUN]
    first = check(run("trainer.train", *args, "--epochs", "2", "--loss-distill", "1", ray_address=ray_address))
    # dlib has no fc8, so distillation is switched off with a message, not an error
    assert "distillation disabled" in first.stderr and "has no identity classifier" in first.stderr
    rows = read_metrics(run_uri)
    assert [r["epoch"] for r in rows] == [1, 2]
    for row in rows:
        assert 0 <= row["val_r1"] <= row["val_r5"] <= row["val_r10"] <= 1 and np.isfinite(row["train_loss"])
        assert np.isfinite(row["val_loss"]) and row["train_l2norm"] == row["train_loss"] and "train_distill" not in row
        assert row["samples_per_s"] > 0 and 0 <= row["data_wait_frac"] < 1
    assert rows[1]["step"] == 2 * rows[0]["step"] > 0  # the same number of steps every epoch
    config = storage.read_json(storage.join(run_uri, "config.json"))
    assert config["num_workers"] == 2 and config["preset"] == "tiny" and config["epochs"] == 2
    expected_amp = "bf16" if cpu_has_native_bf16() else "off"  # the test runs --amp auto on CPU
    assert config["fast_path"] == {"device": "cpu", "amp_dtype": expected_amp, "channels_last": True,
                                   "fused_adam": True, "keep_freed_memory": True, "compile": False,
                                   "reason": config["fast_path"]["reason"]}  # fmt: skip
    for name in ("curves.png", "model.safetensors", "model.json", "checkpoint_manager_snapshot.json"):
        assert storage.exists(storage.join(run_uri, name)), name
    assert storage.list_files(storage.join(run_uri, "tensorboard"), suffix=".0")  # an event file
    assert 1 <= len(checkpoint_dirs(run_uri)) <= 2  # the best by val R@10 and the last

    resumed_after = time.time()  # compiled this time (CUDA's default): the checkpoint's weights load either way
    second = check(run("trainer.train", *args, "--epochs", "3", "--compile", "on", ray_address=ray_address))
    assert "resuming" in second.stdout + second.stderr and "after epoch 2" in second.stdout + second.stderr
    resumed = read_metrics(run_uri)
    assert [r["epoch"] for r in resumed] == [1, 2, 3]
    assert resumed[:2] == rows  # epochs 1-2 were not retrained: their rows are unchanged
    assert resumed[2]["finished_at"] > resumed_after and resumed[2]["step"] == 3 * rows[0]["step"]
    assert np.isfinite(resumed[2]["train_loss"]) and np.isfinite(resumed[2]["val_loss"])
    resumed_config = storage.read_json(storage.join(run_uri, "config.json"))
    assert resumed_config["epochs"] == 3 and resumed_config["fast_path"]["compile"] is True

    # model.safetensors loads without Ray, straight from S3 (the env has the S3 settings)
    probe = check(subprocess.run([sys.executable, "-c", LOAD_WITHOUT_RAY, storage.join(run_uri, "model.safetensors")],
                                 cwd=ROOT, capture_output=True, text=True, timeout=120))  # fmt: skip
    loaded = json.loads(probe.stdout.strip().splitlines()[-1])
    assert loaded == {"ray_loaded": False, "shape": [1, 128], "preset": "tiny", "out_dim": 128,
                      "epoch": loaded["epoch"], "embedder": "dlib"}  # fmt: skip
    assert loaded["epoch"] in (1, 2, 3)


def test_distillation_on_vggface_features_and_weights_mismatch_refused(vggface_data, tmp_path, ray_session):
    from trainer.train import main

    manifest = storage.read_json(str(vggface_data / "manifest.json"))
    assert manifest["embedder"]["weights_sha256"] == "random" and manifest["embedder"]["has_classifier"]
    wrong_weights = tmp_path / "other_vgg16.h5"
    wrong_weights.write_bytes(b"not the weights the data was embedded with")
    refused = run("trainer.train", "--data", str(vggface_data), "--storage", str(tmp_path), "--name", "bad",
                  "--loss-distill", "1", "--vggface-weights", str(wrong_weights), *TINY_RUN, timeout=120)  # fmt: skip
    assert refused.returncode == 2, refused.stderr
    assert "are not the weights the data was embedded with" in refused.stderr and "Traceback" not in refused.stderr
    assert not (tmp_path / "bad" / "metrics.csv").exists()

    args = ["--data", str(vggface_data), "--storage", str(tmp_path), "--name", "distill", "--epochs", "1",
            "--loss-distill", "0.5", "--loss-l1", "0.01", "--vggface-weights", "random", *TINY_RUN]  # fmt: skip
    assert main(args) == 0
    (row,) = read_metrics(tmp_path / "distill")
    assert row["train_distill"] > 0 and row["val_distill"] > 0 and row["train_l1"] > 0
    # total = 1 * l2norm + 0.01 * l1 + 0.5 * distill, as computed on every batch
    expected = row["val_l2norm"] + 0.01 * row["val_l1"] + 0.5 * row["val_distill"]
    assert row["val_loss"] == pytest.approx(expected, rel=1e-4)
    meta = json.loads((tmp_path / "distill" / "model.json").read_text())
    assert meta["out_dim"] == 4096 and meta["embedder"]["weights_sha256"] == "random"


def test_stored_spectrograms_equal_the_trainers_and_tensorflows(vggface_data):
    from tests.support.tf_reference import numpy_compress, tf_stft

    table = pq.read_table(next((vggface_data / "clips").rglob("*.parquet")), columns=["waveform", "spectrogram"])
    waves = table["waveform"].combine_chunks().to_numpy_ndarray()
    stored = table["spectrogram"].combine_chunks().to_numpy_ndarray()
    assert stored.dtype == np.float16 and stored.shape == (len(waves), 598, 257, 2)
    computed = audio.model_input(torch.from_numpy(waves)).to(torch.float16).numpy()  # what training feeds the model
    np.testing.assert_array_equal(stored, computed)
    reference = tf_stft(audio.int16_to_waveform(waves[:1]))[0]
    reference = numpy_compress(np.stack([reference.real, reference.imag], axis=-1))
    difference = np.abs(stored[0].astype(np.float32) - reference)
    # float16 storage (half a unit in the last place: 5e-4 relative), and |x|**0.3 magnifies float32
    # round-off near zero (see test_spectrogram.py): a quantile bound plus a loose maximum.
    assert np.mean(difference <= 1e-3 * np.abs(reference) + 1e-3) >= 0.999
    assert difference.max() < 2e-2


def test_setup_errors_are_clear_with_exit_code_2(dlib_data, tmp_path):
    missing = run("trainer.train", "--data", str(tmp_path / "nowhere"), "--storage", str(tmp_path), "--name", "x",
                  timeout=120)  # fmt: skip
    assert missing.returncode == 2 and "manifest.json not found" in missing.stderr
    bad_flag = run("trainer.train", "--data", str(dlib_data), "--storage", str(tmp_path), "--name", "x",
                   "--amp", "fp16", timeout=120)  # fmt: skip
    assert bad_flag.returncode == 2 and "--amp fp16 needs --use-gpu" in bad_flag.stderr
    short_crop = run("trainer.train", "--data", str(dlib_data), "--storage", str(tmp_path), "--name", "x",
                     "--preset", "tiny", "--crop-frames", "100", timeout=120)  # fmt: skip
    assert short_crop.returncode == 2 and "--crop-frames must be >= 259" in short_crop.stderr
    no_gpu = run("trainer.train", "--data", str(dlib_data), "--storage", str(tmp_path), "--name", "x",
                 "--use-gpu", timeout=180)  # fmt: skip
    # its own local Ray (not RAY_ADDRESS, where an autoscaler may still add GPU nodes): an error, not a wait
    assert no_gpu.returncode == 2 and "the Ray cluster has 0 GPUs" in no_gpu.stderr


def test_build_trainer_keeps_the_run_location_in_the_config(dlib_data, tmp_path):
    from trainer.encoder.config import TrainConfig
    from trainer.encoder.job import build_trainer

    config = TrainConfig(data=str(dlib_data), storage=str(tmp_path), name="x", preset="tiny")
    assert TrainConfig.from_dict(json.loads(config.to_json())) == config
    with pytest.raises(ValueError, match="TrainConfig.storage / .name"):
        build_trainer(config, {"name": "elsewhere"})
