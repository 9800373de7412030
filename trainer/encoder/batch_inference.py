"""The encoder over a whole split as Ray Data batch inference, for trainer.evaluate at AVSpeech scale.

The Parquet is read by Ray Data's tasks and the encoder runs in an actor pool: one actor a GPU when
the cluster has GPUs, else actors of ``cpus_per_actor`` CPUs, each running torch on as many threads.
Only ids, face features and predictions (a few KB a clip) reach the driver; the waveforms (192 KB a
clip) never do.
"""

from __future__ import annotations

import numpy as np

from speech2face.audio import CLIP_SECONDS, first_seconds_looped
from speech2face.dataset import CLIP_ID, FACE_FEATURE, SPEAKER, SPLIT, WAVEFORM, YTID, Manifest
from speech2face.errors import InputError
from speech2face.inference import embed, read_model
from speech2face.inference.gallery import PREDICTION
from trainer.runtime.clips import read_split
from trainer.runtime.cluster import start_ray

KEPT = (CLIP_ID, SPLIT, YTID, FACE_FEATURE)  # what the driver gets for each clip, with its prediction
# ... and its speaker, where the data has the column (``Layout.store_source``; null where the source knows none)


class EncoderActor:
    """One encoder per actor, loaded once: a batch of stored waveforms in, its predictions out."""

    def __init__(self, model_uri: str, batch_size: int, threads: int, seconds: tuple[float, ...] = ()):
        import torch

        torch.set_num_threads(threads)
        device = "cuda" if torch.cuda.is_available() else "cpu"  # Ray shows an actor only the GPUs it reserved
        self.model, self.batch_size = read_model(model_uri, device)[0], batch_size
        self.seconds = seconds  # also predict from only the first S seconds of each clip, looped

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        waves = batch[WAVEFORM]
        predictions = {PREDICTION: embed(self.model, waves, self.batch_size)}
        for seconds in self.seconds:
            if seconds >= CLIP_SECONDS:  # the stored waveform itself: its prediction is the one above
                predictions[prediction_column(seconds)] = predictions[PREDICTION]
            else:
                shorter = first_seconds_looped(waves, seconds)
                predictions[prediction_column(seconds)] = embed(self.model, shorter, self.batch_size)
        return {name: values for name, values in batch.items() if name != WAVEFORM} | predictions


def actor_pool(resources: dict, cpus_per_actor: float) -> dict:
    """map_batches' resources: a GPU an actor where there are GPUs, else CPU actors that leave Ray Data a CPU."""
    from ray.data import ActorPoolStrategy

    gpus, cpus = int(resources.get("GPU", 0)), resources.get("CPU", 1.0)
    if gpus:
        return {"num_gpus": 1, "num_cpus": 1, "compute": ActorPoolStrategy(min_size=1, max_size=gpus)}
    per_actor = min(cpus_per_actor, max(cpus - 1, 0.5))
    return {
        "num_cpus": per_actor,
        "compute": ActorPoolStrategy(min_size=1, max_size=max(1, int((cpus - 1) / per_actor))),
    }


def torch_threads(resources: dict, cpus_per_actor: float) -> int:
    """Threads of a CPU actor: the CPUs asked for, where actor_pool reserved fewer to leave Ray Data's
    reads a CPU on a small machine (reading is light; on 2 CPUs one thread would halve the encoder)."""
    return 1 if resources.get("GPU") else max(1, round(min(cpus_per_actor, resources.get("CPU", 1.0))))


def prediction_column(seconds: float) -> str:
    return f"{PREDICTION}@{seconds:g}s"


def predict_split(
    data_uri: str,
    split: str,
    model_uri: str,
    batch_size: int = 16,
    cpus_per_actor: float = 2.0,
    seconds: tuple[float, ...] = (),
) -> dict:
    """Every clip of ``split``, sorted by clip_id: ``KEPT`` and ``prediction`` as numpy arrays; for each of
    ``seconds``, also ``prediction_column(S)``: predicted from the first S seconds of each clip's audio only
    (``audio.first_seconds_looped``), in the same pass over the split."""
    manifest = Manifest.read(data_uri)
    counts = manifest.counts.per_split
    if not counts.get(split):
        raise InputError(
            f"no {split} clips in {data_uri} (its manifest counts {counts}); check --data and --split "
            "(the test split comes from preprocessing with --test-csv or --split-name test)"
        )
    resources = start_ray(log_to_driver=False)
    kept = [*KEPT, SPEAKER] if manifest.layout.store_source else list(KEPT)
    predictions = read_split(data_uri, split, [*kept, WAVEFORM]).map_batches(
        EncoderActor,
        fn_constructor_args=(model_uri, batch_size, torch_threads(resources, cpus_per_actor), seconds),
        batch_size=batch_size * 4,
        batch_format="numpy",
        **actor_pool(resources, cpus_per_actor),
    )
    # batch_size=None: the encoder's output blocks as they come, not re-batched into further copies
    batches = predictions.iter_batches(batch_size=None, batch_format="numpy")
    return _sorted_by_clip(_collect(batches, expected_rows=counts[split]))


def _collect(batches, expected_rows: int) -> dict[str, np.ndarray]:
    """The batches' columns copied into one array each, sized from the manifest's count (grown if the
    data holds more): one copy of the features on the driver, none of Ray's blocks kept alive."""
    arrays: dict[str, np.ndarray] = {}
    filled = 0
    for batch in batches:
        size = len(next(iter(batch.values())))
        for name, values in batch.items():
            if name not in arrays:
                arrays[name] = np.empty((max(expected_rows, size), *values.shape[1:]), values.dtype)
            elif filled + size > len(arrays[name]):  # more rows than the manifest counts: double
                grown = np.empty((2 * (filled + size), *values.shape[1:]), values.dtype)
                grown[:filled] = arrays[name][:filled]
                arrays[name] = grown
            arrays[name][filled : filled + size] = values
        filled += size
    return {name: values[:filled] for name, values in arrays.items()}


def _sorted_by_clip(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Rows in clip_id order; the feature columns are permuted in place (no second copy of a split's features)."""
    order = np.argsort(arrays[CLIP_ID].astype(str), kind="stable")
    for name, values in arrays.items():
        if values.ndim > 1:
            _permute_in_place(values, order)
        else:
            arrays[name] = values[order]
    return arrays


def _permute_in_place(values: np.ndarray, order: np.ndarray) -> None:
    """values[:] = values[order], a row at a time along each cycle of the permutation (one row's extra copy)."""
    placed = np.zeros(len(order), dtype=bool)
    for start in np.flatnonzero(order != np.arange(len(order))):
        if placed[start]:
            continue
        first, row = values[start].copy(), start
        while order[row] != start:
            values[row] = values[order[row]]
            placed[row], row = True, order[row]
        values[row], placed[row] = first, True
