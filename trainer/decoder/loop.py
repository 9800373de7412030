"""The per-worker loop of ``trainer.train_decoder`` (Ray Train, DDP), shaped like the encoder's loop.

Each epoch: train on this worker's shard of "train" (faces mirrored at random, with their
landmarks), then rank 0 scores "val" with the same losses, writes the run's files, and reports
metrics with a checkpoint. The last epoch becomes decoder.safetensors: the pixel losses reward blur,
so the epoch with the lowest val loss is an early, blurry one (on the demo corpus it was epoch 11 of
100, and drew faces dlib matched at chance; the last drew 6-10x chance over 3 seeds), and val holds only the
training speakers' other videos.
"""

from __future__ import annotations

import tempfile
import time

import ray.data
import ray.train
import ray.train.torch
import torch
import torch.nn.functional as F

from speech2face import plots, storage
from speech2face.dataset import FACE_FEATURE, FACE_LANDMARKS, TRAIN, VAL
from speech2face.decoder import FaceDecoder, decoder_losses, mirror_faces, to_crops, unit_landmarks
from speech2face.embedders import load_vggface
from speech2face.embedders.vggface import preprocess_unit_images
from speech2face.inference import save_decoder
from speech2face.perf import choose_fast_path, decoder_train_step, fast_adam_kwargs
from trainer.decoder.config import DecoderConfig
from trainer.decoder.data import FACE
from trainer.runtime import checkpoints
from trainer.runtime.console import say
from trainer.runtime.run_files import weights_info, write_history

SAMPLE_FACES = 8  # val faces drawn in samples.png
# curves.png and samples.png are redrawn at most this often (and after the last epoch): drawing them
# took ~0.4 s, as long as a demo epoch's training.
DRAW_EVERY_S = 20.0


def _feature_embedder(spec: dict | None, device: torch.device):
    """VGG-Face's fc7 as a differentiable function of [0, 1] images, frozen, for --loss-feature; or None."""
    if spec is None:
        return None
    network = load_vggface(spec["weights"], spec["weights_sha256"], device=device).model
    network.requires_grad_(False)
    return lambda images: network.features(preprocess_unit_images(images).contiguous(memory_format=torch.channels_last))


def _inputs(batch: dict, generator: torch.Generator | None, config: DecoderConfig):
    """(features, faces in [0, 1] (B, 3, R, R), landmarks in image units); when training, faces mirrored
    at random and noise added to the normalised features."""
    faces = batch[FACE].permute(0, 3, 1, 2).float() / 255
    landmarks = unit_landmarks(batch[FACE_LANDMARKS].float())
    features = batch[FACE_FEATURE].float()
    if generator is not None and config.flip > 0:
        chosen = (torch.rand(len(faces), generator=generator) < config.flip).to(faces.device)
        faces, landmarks = mirror_faces(faces, landmarks, chosen)
    if generator is not None and config.feature_noise > 0:
        noise = torch.randn(features.shape, generator=generator).to(features.device)
        features = F.normalize(features, dim=1) + noise * (config.feature_noise / features.shape[1] ** 0.5)
    return features, faces, landmarks


def _epoch(model, plain, optimizer, scaler, fast, config, embed, device, generator, split: str) -> dict:
    """Mean weighted losses over ``split`` (this worker's shard when training), plus throughput figures."""
    training = split == TRAIN
    model.train(training)
    sums, count, waited, started = {}, 0, 0.0, time.perf_counter()
    batches = ray.train.get_dataset_shard(split).iter_torch_batches(
        batch_size=config.batch_size,
        device=device,
        local_shuffle_buffer_size=256 if training else None,
        local_shuffle_seed=config.seed if training else None,
    )
    for wait_s, batch in checkpoints.timed(batches):
        waited += wait_s
        features, faces, landmarks = _inputs(batch, generator if training else None, config)
        if training:
            parts = decoder_train_step(
                model, plain, optimizer, scaler, fast, features, faces, landmarks, config.loss_weights(), embed
            )
        else:
            with torch.no_grad(), fast.autocast():
                decoded = plain(features)
            parts = decoder_losses(plain, decoded, faces, landmarks, config.loss_weights(), embed, features)
        for name, value in parts.items():
            sums[name] = sums.get(name, 0.0) + value.detach().double() * len(faces)
        count += len(faces)
    means, total_count = checkpoints.mean_over_workers(sums, count, device, reduce=training)
    row = {f"{split}_{name}": value for name, value in means.items()}
    if training:
        seconds = time.perf_counter() - started
        row.update(samples_per_s=round(total_count / seconds, 2), data_wait_frac=round(waited / seconds, 4))
    return row


@torch.no_grad()
def _samples_png(plain, device, title: str) -> bytes:
    """The first val faces next to what the decoder draws from their features."""
    batch = next(iter(ray.train.get_dataset_shard(VAL).iter_torch_batches(batch_size=SAMPLE_FACES, device=device)))
    plain.eval()
    drawn = to_crops(plain(batch[FACE_FEATURE].float()).image)
    true = to_crops(batch[FACE].permute(0, 3, 1, 2).float() / 255)
    return plots.image_columns_png([("true face", true), ("decoded from its feature", drawn)], title=title)


def _write_outputs(run_uri, history, plain, config, loop_config, device, draw: bool) -> None:
    write_history(run_uri, history)
    if draw:
        storage.write_bytes(storage.join(run_uri, "curves.png"), plots.decoder_curves_png(history, title=config.name))
        title = f"{config.name}, epoch {history[-1]['epoch']} (val)"
        storage.write_bytes(storage.join(run_uri, "samples.png"), _samples_png(plain, device, title))
    info = weights_info(history[-1], loop_config, config.name)
    save_decoder(plain, storage.join(run_uri, "decoder.safetensors"), info)


def epoch_line(row: dict, epochs: int) -> str:
    return (
        f"[train_decoder] epoch {row['epoch']}/{epochs}  train {row['train_total']:.4f}  "
        f"val {row['val_total']:.4f} (texture {row['val_texture']:.4f}, image {row['val_image']:.4f}, "
        f"landmarks {row['val_landmarks']:.5f})  {row['epoch_s']:.1f} s ({row['samples_per_s']:.1f} "
        f"faces/s, data wait {100 * row['data_wait_frac']:.0f} %)"
    )


def train_decoder_loop_per_worker(loop_config: dict) -> None:
    config = DecoderConfig(**loop_config["config"])
    run_uri = loop_config["run_uri"]
    rank = ray.train.get_context().get_world_rank()
    device = ray.train.torch.get_device()
    ray.data.DataContext.get_current().enable_progress_bars = False
    torch.manual_seed(config.seed)
    fast = choose_fast_path(device, config.amp)
    fast.configure_process()
    plain = FaceDecoder(
        loop_config["in_dim"], config.preset, loop_config["mean_shape_px"], loop_config["mean_feature"]
    ).to(device)
    model = ray.train.torch.prepare_model(plain)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, **fast_adam_kwargs(device))
    scaler = torch.amp.GradScaler(device.type, enabled=fast.amp_dtype == torch.float16)
    embed = _feature_embedder(loop_config.get("feature_loss"), device)
    stateful = {"model": plain, "optimizer": optimizer, "scaler": scaler}
    state = checkpoints.restore(stateful)
    if rank == 0 and state["epoch"]:
        say(f"[train_decoder] resuming {run_uri} after epoch {state['epoch']}")
    drawn_at = float("-inf")
    for epoch in range(state["epoch"] + 1, config.epochs + 1):
        started = time.time()
        generator = torch.Generator().manual_seed(config.seed * 1_000_003 + epoch * 101 + rank)
        row = {"epoch": epoch, **_epoch(model, plain, optimizer, scaler, fast, config, embed, device, generator, TRAIN)}
        if rank == 0:
            row.update(_epoch(model, plain, optimizer, scaler, fast, config, embed, device, None, VAL))
        row.update(epoch_s=round(time.time() - started, 2), finished_at=round(time.time(), 3))
        state["epoch"] = epoch
        with tempfile.TemporaryDirectory() as directory:
            checkpoint = None
            if rank == 0:
                state["history"].append(row)
                draw = epoch == config.epochs or time.monotonic() - drawn_at >= DRAW_EVERY_S
                _write_outputs(run_uri, state["history"], plain, config, loop_config, device, draw)
                drawn_at = time.monotonic() if draw else drawn_at
                checkpoints.save(directory, stateful, state, config.to_json())
                checkpoint = ray.train.Checkpoint.from_directory(directory)
                say(epoch_line(row, config.epochs))
            ray.train.report(row, checkpoint=checkpoint)
