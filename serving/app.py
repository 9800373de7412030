"""Serve a trained voice encoder over HTTP with Ray Serve: a voice in, the nearest faces of a gallery out,
and with a face decoder the face it draws.

    python -m serving.app --model RUN/model.safetensors --gallery DATA [--decoder DEC/decoder.safetensors]
    serve run serving.app:build model=RUN/model.safetensors gallery=DATA     # the same, with Serve's CLI

DATA is a preprocess output (dir or s3://) whose faces are ranked, one per video. Endpoints:
POST /api/predict (multipart field 'file', or the raw body as audio/*, video/*, application/octet-stream;
?start=SECONDS), GET /api/health, GET /api/info, GET / (the web page). Each replica loads the model and
the gallery once; concurrent requests are batched through the encoder (@serve.batch).
"""

# No `from __future__ import annotations`: FastAPI reads the handlers' annotations (Request) at run time.
import asyncio
import base64
import dataclasses
import io
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
import torch
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from PIL import Image
from ray import serve

from serving.uploads import ApiError, decode_upload, read_upload
from speech2face import flags, inference
from speech2face.dataset import EMBEDDER
from speech2face.flags import flag

PAGE = Path(__file__).with_name("static") / "index.html"
api = FastAPI(title="Speech2Face", docs_url="/api/docs", openapi_url="/api/openapi.json")


PROG = "python -m serving.app"


@dataclass(kw_only=True)
class ServiceConfig:
    model: str = flag(help="model.safetensors of a trainer.train run")
    gallery: str = flag(help="preprocess output (dir or s3://) whose faces are ranked")
    gallery_split: str | None = flag(None, help="only faces of this split (default: every split)")
    decoder: str | None = flag(None, help="decoder.safetensors of a trainer.train_decoder run: also draw the face")
    top: int = flag(5, minimum=1, help="faces returned per request")
    max_upload_mb: float = flag(25.0, above=0, help="larger uploads get 413")
    max_batch_size: int = flag(8, minimum=1, help="requests batched into one encoder call")
    batch_wait_s: float = flag(0.02, minimum=0, help="how long a batch waits to fill")


@dataclass(kw_only=True)
class ReplicaConfig:
    num_replicas: int = flag(1, minimum=1, help="replicas of the model (fixed count)")
    min_replicas: int | None = flag(None, minimum=1, help="autoscaling: at least this many replicas")
    max_replicas: int | None = flag(None, minimum=1, help="autoscaling: at most this many (turns autoscaling on)")
    num_cpus_per_replica: float = flag(1.0, minimum=0, help="CPUs each replica reserves")
    num_gpus_per_replica: float = flag(0.0, minimum=0, help="GPUs each replica reserves (e.g. 0.25)")

    def deployment_options(self) -> dict:
        actor = {"num_cpus": self.num_cpus_per_replica, "num_gpus": self.num_gpus_per_replica}
        if self.max_replicas is None:
            return {"num_replicas": self.num_replicas, "ray_actor_options": actor}
        scaling = {"min_replicas": self.min_replicas or 1, "max_replicas": self.max_replicas}
        return {"autoscaling_config": scaling, "ray_actor_options": actor}


@dataclass(kw_only=True)
class BuildArgs(ReplicaConfig, ServiceConfig):
    """What ``serve run serving.app:build name=value ...`` takes: the service and its replicas."""

    def split(self) -> tuple[ServiceConfig, ReplicaConfig]:
        def part(cls):
            return cls(**{f.name: getattr(self, f.name) for f in dataclasses.fields(cls)})

        return part(ServiceConfig), part(ReplicaConfig)


@dataclass(kw_only=True)
class ServeCommand(BuildArgs):
    host: str = flag(
        "127.0.0.1", help="address to listen on (0.0.0.0: every interface; see docs/cluster.md before exposing it)"
    )
    port: int = flag(8000, minimum=0, maximum=65535, help="HTTP port")


@api.exception_handler(ApiError)
async def _refused(_request: Request, error: ApiError) -> JSONResponse:
    return JSONResponse({"error": str(error)}, status_code=error.status)


@api.exception_handler(Exception)
async def _failed(_request: Request, error: Exception) -> JSONResponse:
    # The replica's log has the traceback; the client gets one line.
    return JSONResponse({"error": f"internal error: {type(error).__name__}: {error}"[:500]}, status_code=500)


def _data_url(jpeg: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()


def _png_data_url(image: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _versions() -> dict:
    return {name: metadata.version(name) for name in ("speech2face-ray", "ray", "torch")}


@serve.deployment(name="Speech2Face")
@serve.ingress(api)
class Speech2FaceService:
    def __init__(self, config: ServiceConfig):
        self.config = config
        self.model, self.meta = inference.read_model(config.model)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model = self.model.to(device)
        self.decoder = inference.read_decoder(config.decoder, device)[0] if config.decoder else None
        self.manifest = inference.check_same_embedder(self.meta, config.gallery)
        self.gallery = inference.Gallery(config.gallery, config.gallery_split)
        self.encode_batch.set_max_batch_size(config.max_batch_size)
        self.encode_batch.set_batch_wait_timeout_s(config.batch_wait_s)

    @serve.batch
    async def encode_batch(self, waves: list[np.ndarray]) -> list[np.ndarray]:
        return list(await asyncio.to_thread(inference.predict_features, self.model, np.stack(waves)))

    @api.get("/", response_class=HTMLResponse)
    async def page(self) -> str:
        return PAGE.read_text()

    @api.get("/api/health")
    async def health(self) -> dict:
        return {"status": "ok"}

    @api.get("/api/info")
    async def info(self) -> dict:
        return {
            "model": self.config.model,
            "preset": self.meta.get("preset"),
            "feature_dim": int(self.model.out_dim),
            EMBEDDER: self.manifest.embedder.to_dict(),
            "gallery": self.config.gallery,
            "gallery_split": self.config.gallery_split,
            "gallery_size": len(self.gallery),
            "top": self.config.top,
            "decoder": self.config.decoder,
            "max_upload_mb": self.config.max_upload_mb,
            "versions": _versions(),
        }

    @api.post("/api/predict")
    async def predict(self, request: Request, start: float = 0.0) -> dict:
        started = time.perf_counter()
        if start < 0:
            raise ApiError(400, f"start must be >= 0 seconds, got {start}")
        upload = await read_upload(request, int(self.config.max_upload_mb * 2**20))
        wave, seconds = await asyncio.to_thread(decode_upload, upload, start)
        feature = await self.encode_batch(wave)
        matches = self.gallery.nearest(feature, self.config.top)
        faces = await asyncio.to_thread(self.gallery.face_jpegs, [m.pop("index") for m in matches])
        for match, face in zip(matches, faces, strict=True):
            match["face"] = _data_url(face)
        drawn = None
        if self.decoder is not None:
            drawn = _png_data_url((await asyncio.to_thread(inference.draw_faces, self.decoder, feature[None]))[0][0])
        return {
            "filename": upload.filename,
            "audio_seconds": round(seconds, 3),
            "feature_dim": int(feature.shape[0]),
            "feature_norm": float(np.linalg.norm(feature)),
            "gallery_size": len(self.gallery),
            "top": matches,
            "drawn_face": drawn,
            "elapsed_ms": round(1000 * (time.perf_counter() - started), 1),
        }


def _check_inputs(config: ServiceConfig) -> None:
    """Refuse a missing model or gallery before any replica starts (each would fail the same way)."""
    flags.validate(config)
    meta = inference.read_model(config.model)[1]
    inference.check_same_embedder(meta, config.gallery)
    if config.decoder:
        inference.check_embedder(inference.read_decoder(config.decoder)[1], inference.embedder_of(meta), "the model")


def build_app(config: ServiceConfig, replicas: ReplicaConfig | None = None):
    options = (replicas or ReplicaConfig()).deployment_options()
    return Speech2FaceService.options(**options).bind(config)


def build(args: dict):
    """``serve run serving.app:build model=M gallery=D [top=5 num_replicas=2 ...]``: strings, as Serve passes them."""
    config, replicas = flags.from_strings(BuildArgs, args).split()
    _check_inputs(config)
    return build_app(config, replicas)


def serve_until_stopped(command: ServeCommand) -> int:
    config, replicas = command.split()
    _check_inputs(config)
    stop = threading.Event()  # set by Ctrl-C or SIGTERM, also during start-up: the app is then shut down
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    import ray

    ray.init(address=os.environ.get("RAY_ADDRESS"), log_to_driver=False)
    serve.start(http_options={"host": command.host, "port": command.port})
    serve.run(build_app(config, replicas), name="speech2face", route_prefix="/")
    print(
        f"Speech2Face serves http://{command.host}:{command.port}/ (API: /api/predict, /api/info, /api/docs); "
        "Ctrl-C stops it",
        flush=True,
    )
    stop.wait()
    serve.shutdown()
    return 0


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    return flags.run_command(serve_until_stopped, flags.parse(ServeCommand, argv, prog, __doc__))


if __name__ == "__main__":
    sys.exit(main())
