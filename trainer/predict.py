"""Predict a face feature from a voice: ``python -m trainer.predict --model M --audio FILE [--gallery D]``.

The audio (any file ffmpeg reads, video included) goes through the same loader and spectrogram as
preprocessing: 6 s from --start, shorter audio repeated. Writes <out>/<audio name>.npy; with
--gallery (a preprocess output) also prints the --top most similar faces (one per video) and writes
predict.json and faces.png; with --decoder (a trainer.train_decoder run) also draws the face,
<audio name>_face.png. Bad audio is a clear error with exit code 2.
"""

from __future__ import annotations

import io
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from speech2face import flags, inference, plots, storage
from speech2face.audio import load_audio
from speech2face.dataset import CLIP_ID, YTID
from speech2face.flags import flag
from speech2face.inference.retrieval import BY_VIDEO, GALLERY_MODES

PROG = "python -m trainer.predict"


@dataclass(kw_only=True)
class PredictConfig:
    model: str = flag(help="model.safetensors of a training run")
    audio: str = flag(help="audio or video file (wav, mp3, mp4, ...)")
    start: float = flag(0.0, minimum=0, help="seconds into the file where the 6 s clip starts")
    gallery: str | None = flag(None, help="preprocess output (dir or s3://) whose faces are ranked")
    gallery_split: str | None = flag(None, help="only faces of this split (default: every split)")
    gallery_by: str = flag(BY_VIDEO, choices=GALLERY_MODES, help="one face per video or per clip")
    top: int = flag(5, minimum=1, help="how many faces to list")
    decoder: str | None = flag(None, help="decoder.safetensors of a trainer.train_decoder run: also draw the face")
    out: str = flag(".", help="output directory or s3:// prefix")


def predict(args: PredictConfig) -> dict:
    model, meta = inference.read_model(args.model)
    decoder = None
    if args.decoder:
        decoder, decoder_meta = inference.read_decoder(args.decoder)
        inference.check_embedder(decoder_meta, inference.embedder_of(meta), "the voice model")
    wave = load_audio(args.audio, args.start)
    feature = inference.predict_features(model, wave[None])[0]
    storage.makedirs(args.out)
    name = Path(args.audio).stem
    buffer = io.BytesIO()
    np.save(buffer, feature)
    storage.write_bytes(storage.join(args.out, f"{name}.npy"), buffer.getvalue())
    print(f"predicted {feature.shape[0]}-D face feature -> {storage.join(args.out, name + '.npy')}")
    result = {"audio": args.audio, "start": args.start, "model": args.model, "feature_dim": int(feature.shape[0])}
    if decoder is not None:
        (face,), _ = inference.draw_faces(decoder, feature[None])
        buffer = io.BytesIO()
        Image.fromarray(face).save(buffer, format="PNG")
        storage.write_bytes(storage.join(args.out, f"{name}_face.png"), buffer.getvalue())
        result["drawn_face"] = storage.join(args.out, f"{name}_face.png")
        print(f"drew the face -> {result['drawn_face']}")
    if args.gallery:
        inference.check_same_embedder(meta, args.gallery)
        gallery = inference.Gallery(args.gallery, args.gallery_split, args.gallery_by)
        matches = gallery.nearest(feature, args.top)
        for match in matches:
            print(f"#{match['rank']:<3} {match[CLIP_ID]:<28} ytid {match[YTID]}  similarity {match['similarity']:.4f}")
        jpegs = gallery.face_jpegs([m["index"] for m in matches])
        labels = [f"#{m['rank']} {m[YTID]} ({m['similarity']:.3f})" for m in matches]
        faces = [(jpeg, label, False) for jpeg, label in zip(jpegs, labels, strict=True)]
        png = plots.face_grid_png([{"label": name, "faces": faces}], title=f"faces nearest to the voice in {name}")
        storage.write_bytes(storage.join(args.out, "faces.png"), png)
        result.update(
            gallery=args.gallery,
            gallery_by=args.gallery_by,
            top=[{k: v for k, v in m.items() if k != "index"} for m in matches],
        )
        storage.write_bytes(storage.join(args.out, "predict.json"), (json.dumps(result, indent=2) + "\n").encode())
        print(f"wrote {storage.join(args.out, 'faces.png')} and predict.json")
    return result


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    return flags.run_command(predict, flags.parse(PredictConfig, argv, prog, __doc__))


if __name__ == "__main__":
    sys.exit(main())
