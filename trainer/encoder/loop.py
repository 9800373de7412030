"""The per-worker training loop that Ray Train runs on every DDP worker.

Each epoch: train on this worker's shard of "train", then rank 0 validates on "val" (the whole
split: R@K needs the whole gallery), writes the run's files and reports metrics with a checkpoint.
A restarted or resumed run continues after the epoch of ``ray.train.get_checkpoint()``.
"""

from __future__ import annotations

import tempfile
import time

import numpy as np
import ray.data
import ray.train
import ray.train.torch
import torch

import telemetry
from speech2face import audio, storage
from speech2face.dataset import FACE_FEATURE, TRAIN, VAL, WAVEFORM
from speech2face.embedders import load_vggface
from speech2face.inference import read_decoder, recall_metrics, retrieval_ranks
from speech2face.inference.retrieval import BY_VIDEO
from speech2face.losses import LossWeights, total_loss
from speech2face.models import VoiceEncoder
from speech2face.perf import FastPathChoice, choose_fast_path, fast_adam_kwargs, train_step
from trainer.encoder import outputs
from trainer.encoder.config import TrainConfig
from trainer.encoder.data import CLIP_KEY, YTID_KEY
from trainer.runtime import checkpoints
from trainer.runtime.console import say


def _classifier(spec: dict | None, device: torch.device):
    """The frozen VGG-Face fc8 (as a function of the feature) for distillation, or None."""
    if spec is None:
        return None
    embedder = load_vggface(spec["weights"], spec["weights_sha256"], device="cpu")
    fc8 = embedder.model.fc8.to(device).requires_grad_(False).eval()
    del embedder  # keep only fc8 (10.7 M parameters), not the 145 M-parameter network
    return lambda feature: fc8(torch.relu(feature))


def _decoder_first(uri: str | None, device: torch.device):
    """The frozen first layer (f_dec) of a trained face decoder, for --loss-decoder; or None."""
    if uri is None:
        return None
    return read_decoder(uri, device)[0].requires_grad_(False).first_layer


def fast_path_record(choice: FastPathChoice) -> dict:
    """What the fast path picked on a worker, as config.json records it."""
    amp = {torch.bfloat16: "bf16", torch.float16: "fp16", None: "off"}[choice.amp_dtype]
    return {
        "device": choice.device.type,
        "amp_dtype": amp,
        "channels_last": choice.channels_last,
        "fused_adam": fast_adam_kwargs(choice.device)["fused"],
        "keep_freed_memory": choice.keep_freed_memory,
        "compile": choice.compile,
        "reason": choice.reason,
    }


def _train_epoch(config, model, optimizer, scheduler, scaler, fast, weights, frozen, device, epoch, step):
    """One pass over this worker's shard; returns the mean losses, the step, and throughput figures."""
    shard = ray.train.get_dataset_shard(TRAIN)
    rank = ray.train.get_context().get_world_rank()
    generator = torch.Generator().manual_seed(config.seed * 1_000_003 + epoch * 101 + rank)
    sums = {}
    count, waited = 0, 0.0
    started = time.perf_counter()
    model.train()
    batches = shard.iter_torch_batches(
        batch_size=config.batch_size,
        device=device,
        drop_last=False,
        local_shuffle_buffer_size=config.shuffle_buffer,
        local_shuffle_seed=config.seed + 7919 * epoch + rank,
    )
    for wait_s, batch in checkpoints.timed(batches):
        waited += wait_s
        spectrogram = audio.model_input(batch[WAVEFORM], config.crop_frames, generator)
        losses = train_step(model, optimizer, scaler, fast, spectrogram, batch[FACE_FEATURE], weights, **frozen)
        scheduler.step()  # per step: the paper decays the lr every 10k steps
        step += 1
        rows = len(spectrogram)
        count += rows
        for name, value in losses.items():  # summed on the device: no GPU sync per step
            sums[name] = sums.get(name, 0.0) + value.detach().double() * rows
    means, total_count = checkpoints.mean_over_workers(sums, count, device)
    seconds = time.perf_counter() - started  # after the all-reduce: every step has finished on the device
    speed = {"samples_per_s": round(total_count / seconds, 2), "data_wait_frac": round(waited / seconds, 4)}
    return means, step, speed


@torch.no_grad()
def _validate(config, model, fast, weights, frozen, device) -> dict:
    model.eval()
    predictions, faces, ytid_keys, clip_keys = [], [], [], []
    batches = ray.train.get_dataset_shard(VAL).iter_torch_batches(batch_size=config.batch_size, device=device)
    for batch in batches:
        with fast.autocast():
            predictions.append(model(audio.model_input(batch[WAVEFORM])).float())
        faces.append(batch[FACE_FEATURE].float())
        ytid_keys.append(batch[YTID_KEY].cpu())
        clip_keys.append(batch[CLIP_KEY].cpu())
    model.train()
    prediction, face = torch.cat(predictions), torch.cat(faces)
    losses = total_loss(prediction, face, weights, **frozen)
    group = ytid_keys if config.gallery_by == BY_VIDEO else clip_keys
    ranks, gallery_size = retrieval_ranks(
        prediction.cpu(), face.cpu(), torch.cat(group).numpy(), torch.cat(clip_keys).numpy(), config.gallery_by
    )
    metrics = {f"val_{'loss' if k == 'total' else k}": float(v) for k, v in losses.items()}
    metrics.update(recall_metrics(ranks, gallery_size))
    metrics["val_gallery"] = gallery_size
    metrics["val_median_rank"] = float(np.median(ranks))
    metrics["val_mean_rank"] = float(np.mean(ranks))
    return metrics


def train_loop_per_worker(loop_config: dict) -> None:
    config = TrainConfig.from_dict(loop_config["train_config"])
    run_uri, out_dim = loop_config["run_uri"], loop_config["out_dim"]
    context = ray.train.get_context()
    rank = context.get_world_rank()
    device = ray.train.torch.get_device()
    ray.data.DataContext.get_current().enable_progress_bars = False  # per-epoch lines are the progress
    torch.manual_seed(config.seed)  # same init everywhere (DDP also broadcasts rank 0's)

    # speech2face.perf's fast path on every device: bf16 autocast where it is native, channels_last, fused Adam
    fast = choose_fast_path(device, config.amp, config.compile)
    fast.configure_process()
    model = VoiceEncoder(config.preset, out_dim).to(device, memory_format=torch.channels_last)
    model = ray.train.torch.prepare_model(model)
    plain_model = model.module if hasattr(model, "module") else model
    step_model = torch.compile(model) if fast.compile else model  # same parameters; validation runs plain_model
    optimizer = torch.optim.Adam(
        model.parameters(),
        lr=config.lr,
        betas=(config.adam_beta1, config.adam_beta2),
        eps=config.adam_eps,
        **fast_adam_kwargs(device),
    )
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.lr_decay_steps, gamma=config.lr_decay)
    scaler = torch.amp.GradScaler(device.type, enabled=fast.amp_dtype == torch.float16)
    if rank == 0:  # the driver wrote config.json; the device's choice is known only here
        record = config.to_dict() | {"fast_path": fast_path_record(fast)}
        storage.write_json(storage.join(run_uri, "config.json"), record)
        kept = "; freed memory kept for reuse" if fast.keep_freed_memory else ""
        compiled = "; torch.compile (the first steps compile)" if fast.compile else ""
        say(f"[train] fast path on {device.type}: {fast.reason}; channels_last, fused Adam{kept}{compiled}")
    classifier = _classifier(loop_config.get("distill"), device)
    distill = config.loss_distill if classifier else 0.0
    # the frozen networks some losses go through: VGG-Face's fc8 (distillation), the face decoder's f_dec
    frozen = {"classifier": classifier, "decoder_first": _decoder_first(loop_config.get("decoder"), device)}
    weights = LossWeights(
        l1=config.loss_l1,
        l2norm=config.loss_l2norm,
        distill=distill,
        temperature=config.temperature,
        decoder=config.loss_decoder,
    )

    stateful = {"model": plain_model, "optimizer": optimizer, "scheduler": scheduler, "scaler": scaler}
    state = checkpoints.restore(stateful)
    if rank == 0 and state["epoch"]:
        say(f"[train] resuming {run_uri} after epoch {state['epoch']} (step {state['global_step']})")
    for epoch in range(state["epoch"] + 1, config.epochs + 1):
        started = time.time()
        train_means, state["global_step"], speed = _train_epoch(
            config,
            step_model,
            optimizer,
            scheduler,
            scaler,
            fast,
            weights,
            frozen,
            device,
            epoch,
            state["global_step"],
        )
        row = {"epoch": epoch, "train_loss": train_means.pop("total")}
        row.update({f"train_{name}": value for name, value in train_means.items()})
        row.update(speed)
        if rank == 0:  # the plain module: DDP's forward would sync buffers with workers not validating
            row.update(_validate(config, plain_model, fast, weights, frozen, device))
        row.update(
            step=state["global_step"],
            lr=scheduler.get_last_lr()[0],
            epoch_s=round(time.time() - started, 2),
            finished_at=round(time.time(), 3),
        )
        state["epoch"] = epoch
        with tempfile.TemporaryDirectory() as directory:
            checkpoint = None
            if rank == 0:
                state["history"].append(row)
                outputs.write_epoch(run_uri, state["history"], plain_model, config, loop_config)
                telemetry.epoch_done(run_uri.rstrip("/").rsplit("/", 1)[-1], row)
                checkpoints.save(directory, stateful, state, config.to_json())
                checkpoint = ray.train.Checkpoint.from_directory(directory)
                say(outputs.epoch_line(row, config.epochs))
            ray.train.report(row, checkpoint=checkpoint)
