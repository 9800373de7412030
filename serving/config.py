"""The service's configuration, declared once: the flags of ``python -m serving.app``, the arguments of
``serve run serving.app:build`` and of serve_config.yaml (a pydantic model made from the same dataclass), and
the checks of its inputs that every replica would otherwise make alone."""

import dataclasses
from dataclasses import dataclass

import pydantic

from speech2face import flags, inference
from speech2face.flags import flag

# Batch sizes by device (benchmarks/RESULTS.md, "Serving latency and batching"). On CPU an encoder call costs
# more per clip as the batch grows (30 ms for 1 clip, 48 ms a clip for 8), so 8 keeps a batch's wait short
# while filling under load; a GPU's batched forward pass is what batching is for: 32, as training's batch.
CPU_BATCH, GPU_BATCH = 8, 32


@dataclass(kw_only=True)
class ServiceConfig:
    model: str = flag(help="model.safetensors of a trainer.train run")
    gallery: str = flag(help="preprocess output (dir or s3://) whose faces are ranked")
    gallery_split: str | None = flag(None, help="only faces of this split (default: every split)")
    decoder: str | None = flag(None, help="decoder.safetensors of a trainer.train_decoder run: also draw the face")
    top: int = flag(5, minimum=1, help="faces returned per request")
    max_upload_mb: float = flag(25.0, above=0, help="larger uploads get 413")
    max_batch_size: int | None = flag(
        None,
        minimum=1,
        help=f"requests decoded and encoded together (default: {CPU_BATCH} on CPU, {GPU_BATCH} with a GPU per replica)",
    )
    batch_wait_s: float = flag(0.05, minimum=0, help="how long a batch that is not full waits for more requests")


@dataclass(kw_only=True)
class ReplicaConfig:
    num_replicas: int = flag(1, minimum=1, help="replicas of the model (fixed count)")
    min_replicas: int | None = flag(None, minimum=1, help="autoscaling: at least this many replicas")
    max_replicas: int | None = flag(None, minimum=1, help="autoscaling: at most this many (turns autoscaling on)")
    num_cpus_per_replica: float = flag(1.0, minimum=0, help="CPUs each replica reserves")
    num_gpus_per_replica: float = flag(0.0, minimum=0, help="GPUs each replica reserves (e.g. 0.25)")
    max_ongoing_requests: int | None = flag(
        None,
        minimum=1,
        help="requests a replica holds at once (default: 4 x --max-batch-size; Serve's own default, 5, "
        "would cap every batch at 5)",
    )

    def batch_size(self, max_batch_size: int | None) -> int:
        return max_batch_size or (GPU_BATCH if self.num_gpus_per_replica > 0 else CPU_BATCH)

    def deployment_options(self, max_batch_size: int) -> dict:
        actor = {"num_cpus": self.num_cpus_per_replica, "num_gpus": self.num_gpus_per_replica}
        # 4 batches: one encodes, the next fills, and the answers of the one before are still being assembled
        # (gallery search, face crops, drawing); with 2, 32 clients got batches of 4.3 on average, with 4, 6.4
        held = self.max_ongoing_requests or 4 * max_batch_size
        options = {"ray_actor_options": actor, "max_ongoing_requests": held}
        if self.max_replicas is None:
            return options | {"num_replicas": self.num_replicas}
        return options | {
            "autoscaling_config": {"min_replicas": self.min_replicas or 1, "max_replicas": self.max_replicas}
        }


@dataclass(kw_only=True)
class BuildArgs(ReplicaConfig, ServiceConfig):
    """What ``serve run serving.app:build name=value ...`` takes: the service and its replicas."""

    def split(self) -> tuple[ServiceConfig, ReplicaConfig]:
        def part(cls):
            return cls(**{f.name: getattr(self, f.name) for f in dataclasses.fields(cls)})

        return part(ServiceConfig), part(ReplicaConfig)


def check_inputs(config: ServiceConfig) -> None:
    """Refuse a missing model or gallery before any replica starts (each would fail the same way)."""
    flags.validate(config)
    meta = inference.read_model(config.model)[1]
    inference.check_same_embedder(meta, config.gallery)
    if config.decoder:
        inference.check_embedder(inference.read_decoder(config.decoder)[1], inference.embedder_of(meta), "the model")


def _pydantic_model(cls: type) -> type[pydantic.BaseModel]:
    """``cls``'s flags as the pydantic model Serve validates a builder's arguments with: types, bounds, help,
    and no unknown names (a misspelt argument is an error, not a default)."""
    fields = {}
    for field in dataclasses.fields(cls):
        spec = flags.flag_of(field)
        bounds = {"ge": spec.minimum, "le": spec.maximum, "gt": spec.above}
        default = ... if field.default is dataclasses.MISSING else field.default
        fields[field.name] = (field.type, pydantic.Field(default, description=spec.help, **{
            name: bound for name, bound in bounds.items() if bound is not None}))  # fmt: skip
    return pydantic.create_model(f"{cls.__name__}Model", __config__=pydantic.ConfigDict(extra="forbid"), **fields)


BuildArgsModel = _pydantic_model(BuildArgs)
