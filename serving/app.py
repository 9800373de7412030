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
import argparse
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
from trainer.decoder_io import check_embedder, draw_faces, read_decoder
from trainer.inference import InputError, check_same_embedder
from trainer.model_io import read_model
from trainer.predict import Gallery, predict_features

PAGE = Path(__file__).with_name("static") / "index.html"
api = FastAPI(title="Speech2Face", docs_url="/api/docs", openapi_url="/api/openapi.json")


@dataclass
class ServiceConfig:
    model: str
    gallery: str
    gallery_split: str | None = None
    decoder: str | None = None  # a trainer.train_decoder decoder.safetensors: also draw the face
    top: int = 5
    max_upload_mb: float = 25.0
    max_batch_size: int = 8
    batch_wait_s: float = 0.02


@dataclass
class ReplicaConfig:
    num_replicas: int = 1
    min_replicas: int | None = None  # with max_replicas: autoscaling instead of a fixed count
    max_replicas: int | None = None
    num_cpus_per_replica: float = 1.0
    num_gpus_per_replica: float = 0.0

    def deployment_options(self) -> dict:
        actor = {"num_cpus": self.num_cpus_per_replica, "num_gpus": self.num_gpus_per_replica}
        if self.max_replicas is None:
            return {"num_replicas": self.num_replicas, "ray_actor_options": actor}
        scaling = {"min_replicas": self.min_replicas or 1, "max_replicas": self.max_replicas}
        return {"autoscaling_config": scaling, "ray_actor_options": actor}


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
        self.model, self.meta = read_model(config.model)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model = self.model.to(device)
        self.decoder = read_decoder(config.decoder, device)[0] if config.decoder else None
        self.manifest = check_same_embedder(self.meta, config.gallery)
        self.gallery = Gallery(config.gallery, config.gallery_split, "ytid")
        self.encode_batch.set_max_batch_size(config.max_batch_size)
        self.encode_batch.set_batch_wait_timeout_s(config.batch_wait_s)

    @serve.batch
    async def encode_batch(self, waves: list[np.ndarray]) -> list[np.ndarray]:
        return list(await asyncio.to_thread(predict_features, self.model, np.stack(waves)))

    @api.get("/", response_class=HTMLResponse)
    async def page(self) -> str:
        return PAGE.read_text()

    @api.get("/api/health")
    async def health(self) -> dict:
        return {"status": "ok"}

    @api.get("/api/info")
    async def info(self) -> dict:
        return {"model": self.config.model, "preset": self.meta.get("preset"),
                "feature_dim": int(self.model.out_dim), "embedder": self.manifest["embedder"],
                "gallery": self.config.gallery, "gallery_split": self.config.gallery_split,
                "gallery_size": len(self.gallery), "top": self.config.top, "decoder": self.config.decoder,
                "max_upload_mb": self.config.max_upload_mb, "versions": _versions()}  # fmt: skip

    @api.post("/api/predict")
    async def predict(self, request: Request, start: float = 0.0) -> dict:
        started = time.perf_counter()
        if start < 0:
            raise ApiError(400, f"start must be >= 0 seconds, got {start}")
        upload = await read_upload(request, int(self.config.max_upload_mb * 2**20))
        wave, seconds = await asyncio.to_thread(decode_upload, upload, start)
        feature = await self.encode_batch(wave)
        matches = self.gallery.nearest(feature, self.config.top)
        for match in matches:
            match["face"] = _data_url(self.gallery.face_jpegs[match.pop("index")])
        drawn = None
        if self.decoder is not None:
            drawn = _png_data_url((await asyncio.to_thread(draw_faces, self.decoder, feature[None]))[0][0])
        return {"filename": upload.filename, "audio_seconds": round(seconds, 3),
                "feature_dim": int(feature.shape[0]), "feature_norm": float(np.linalg.norm(feature)),
                "gallery_size": len(self.gallery), "top": matches, "drawn_face": drawn,
                "elapsed_ms": round(1000 * (time.perf_counter() - started), 1)}  # fmt: skip


def _check_inputs(config: ServiceConfig) -> None:
    """Refuse a missing model or gallery before any replica starts (each would fail the same way)."""
    if config.top < 1 or config.max_upload_mb <= 0 or config.max_batch_size < 1:
        raise InputError("--top and --max-batch-size must be >= 1 and --max-upload-mb > 0")
    meta = read_model(config.model)[1]
    check_same_embedder(meta, config.gallery)
    if config.decoder:
        check_embedder(read_decoder(config.decoder)[1], meta["embedder"], "the model")


def build_app(config: ServiceConfig, replicas: ReplicaConfig | None = None):
    options = (replicas or ReplicaConfig()).deployment_options()
    return Speech2FaceService.options(**options).bind(config)


def build(args: dict):
    """``serve run serving.app:build model=M gallery=D [top=5 num_replicas=2 ...]``: strings, as Serve passes them."""
    fields = {f.name: f for f in (*dataclasses.fields(ServiceConfig), *dataclasses.fields(ReplicaConfig))}
    unknown = sorted(set(args) - set(fields))
    if unknown or not {"model", "gallery"} <= set(args):
        raise ValueError(
            f"serving.app:build needs model=... gallery=...; it knows {sorted(fields)}; got {sorted(args)}"
        )
    typed = {name: _parse(fields[name].type, value) for name, value in args.items()}
    config = ServiceConfig(**{k: v for k, v in typed.items() if k in ServiceConfig.__dataclass_fields__})
    _check_inputs(config)
    return build_app(
        config, ReplicaConfig(**{k: v for k, v in typed.items() if k in ReplicaConfig.__dataclass_fields__})
    )


def _parse(annotation, value: str):
    kind = str(annotation)  # e.g. "<class 'int'>", "int | None", "str | None"
    if "int" in kind:
        return int(value)
    return float(value) if "float" in kind else value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m serving.app", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--model", required=True, help="model.safetensors of a trainer.train run")
    p.add_argument("--gallery", required=True, help="preprocess output (dir or s3://) whose faces are ranked")
    p.add_argument("--gallery-split", help="only faces of this split (default: every split)")
    p.add_argument("--decoder", help="decoder.safetensors of a trainer.train_decoder run: also draw the face")
    p.add_argument("--top", type=int, default=5, help="faces returned per request")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (0.0.0.0: every interface; see docs/cluster.md before exposing it)",
    )
    p.add_argument("--port", type=int, default=8000, help="HTTP port")
    p.add_argument("--max-upload-mb", type=float, default=25.0, help="larger uploads get 413")
    p.add_argument("--num-replicas", type=int, default=1, help="replicas of the model (fixed count)")
    p.add_argument("--min-replicas", type=int, help="autoscaling: at least this many replicas")
    p.add_argument("--max-replicas", type=int, help="autoscaling: at most this many (turns autoscaling on)")
    p.add_argument("--num-cpus-per-replica", type=float, default=1.0, help="CPUs each replica reserves")
    p.add_argument("--num-gpus-per-replica", type=float, default=0.0, help="GPUs each replica reserves (e.g. 0.25)")
    p.add_argument("--max-batch-size", type=int, default=8, help="requests batched into one encoder call")
    p.add_argument("--batch-wait-s", type=float, default=0.02, help="how long a batch waits to fill")
    return p  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = ServiceConfig(args.model, args.gallery, args.gallery_split, args.decoder, args.top, args.max_upload_mb,
                           args.max_batch_size, args.batch_wait_s)  # fmt: skip
    replicas = ReplicaConfig(args.num_replicas, args.min_replicas, args.max_replicas,
                             args.num_cpus_per_replica, args.num_gpus_per_replica)  # fmt: skip
    try:
        _check_inputs(config)
    except (InputError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    stop = threading.Event()  # set by Ctrl-C or SIGTERM, also during start-up: the app is then shut down
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    import ray

    ray.init(address=os.environ.get("RAY_ADDRESS"), log_to_driver=False)
    serve.start(http_options={"host": args.host, "port": args.port})
    serve.run(build_app(config, replicas), name="speech2face", route_prefix="/")
    print(f"Speech2Face serves http://{args.host}:{args.port}/ (API: /api/predict, /api/info, /api/docs); "
          "Ctrl-C stops it", flush=True)  # fmt: skip
    stop.wait()
    serve.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
