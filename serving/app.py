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

import telemetry
from serving.config import BuildArgs, BuildArgsModel, ReplicaConfig, ServiceConfig, check_inputs
from serving.uploads import ApiError, Upload, decode_upload, read_upload
from speech2face import flags, inference
from speech2face.dataset import EMBEDDER
from speech2face.flags import flag

PAGE = Path(__file__).with_name("static") / "index.html"
api = FastAPI(title="Speech2Face", docs_url="/api/docs", openapi_url="/api/openapi.json")


PROG = "python -m serving.app"


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


@dataclass(frozen=True)
class Encoded:
    feature: np.ndarray
    seconds: float  # of real audio in the upload
    batch_size: int  # requests that shared its encoder call


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
    async def encode_batch(self, requests: list[tuple[Upload, float]]) -> list[Encoded | ApiError]:
        """Decode and encode the requests of one batch together. The batch gathers requests as soon as their
        bytes have arrived, not after their decode, so it fills while the previous one runs; an upload that
        does not decode fails only its own request."""
        decoded = await asyncio.gather(
            *(asyncio.to_thread(decode_upload, upload, start) for upload, start in requests), return_exceptions=True
        )
        waves = [answer[0] for answer in decoded if not isinstance(answer, BaseException)]
        features = iter([])
        if waves:
            features = iter(await asyncio.to_thread(inference.predict_features, self.model, np.stack(waves)))
            telemetry.batch_encoded(len(waves))
        return [
            answer if isinstance(answer, BaseException) else Encoded(next(features), answer[1], len(waves))
            for answer in decoded
        ]

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
        started, status = time.perf_counter(), 500
        try:
            answer = await self._answer(request, start, started)
            status = 200
            return answer
        except ApiError as error:
            status = error.status
            raise
        finally:  # every answer, refusals and errors too, in s2f_serve_requests and its seconds
            telemetry.request_done(status, time.perf_counter() - started)

    async def _answer(self, request: Request, start: float, started: float) -> dict:
        if start < 0:
            raise ApiError(400, f"start must be >= 0 seconds, got {start}")
        upload = await read_upload(request, int(self.config.max_upload_mb * 2**20))
        encoded = await self.encode_batch((upload, start))
        if isinstance(encoded, BaseException):
            raise encoded
        feature = encoded.feature
        matches = self.gallery.nearest(feature, self.config.top)
        faces = await asyncio.to_thread(self.gallery.face_jpegs, [m.pop("index") for m in matches])
        for match, face in zip(matches, faces, strict=True):
            match["face"] = _data_url(face)
        drawn = None
        if self.decoder is not None:
            drawn = _png_data_url((await asyncio.to_thread(inference.draw_faces, self.decoder, feature[None]))[0][0])
        return {
            "filename": upload.filename,
            "audio_seconds": round(encoded.seconds, 3),
            "feature_dim": int(feature.shape[0]),
            "feature_norm": float(np.linalg.norm(feature)),
            "gallery_size": len(self.gallery),
            "top": matches,
            "drawn_face": drawn,
            "batch_size": encoded.batch_size,
            "elapsed_ms": round(1000 * (time.perf_counter() - started), 1),
        }


def build_app(config: ServiceConfig, replicas: ReplicaConfig | None = None):
    replicas = replicas or ReplicaConfig()
    config = dataclasses.replace(config, max_batch_size=replicas.batch_size(config.max_batch_size))
    return Speech2FaceService.options(**replicas.deployment_options(config.max_batch_size)).bind(config)


def build(args: BuildArgsModel):
    """``serve run serving.app:build model=M gallery=D [top=5 num_replicas=2 ...]`` or an application of
    serve_config.yaml: Serve validates the arguments with ``BuildArgsModel`` (made from the same flags)."""
    config, replicas = BuildArgs(**args.model_dump()).split()
    check_inputs(config)
    return build_app(config, replicas)


def serve_until_stopped(command: ServeCommand) -> int:
    config, replicas = command.split()
    check_inputs(config)
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
