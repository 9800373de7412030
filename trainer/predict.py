"""Predict a face feature from a voice: ``python -m trainer.predict --model M --audio FILE [--gallery D]``.

The audio (any file ffmpeg reads, video included) goes through the same loader and spectrogram as
preprocessing: 6 s from --start, shorter audio repeated. Writes <out>/<audio name>.npy; with
--gallery (a preprocess output) also prints the --top most similar faces (one per video) and writes
predict.json and faces.png; with --decoder (a trainer.train_decoder run) also draws the face,
<audio name>_face.png. Bad audio is a clear error with exit code 2.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from speech2face import storage
from speech2face.audio import load_audio
from trainer import plots
from trainer.decoder_io import check_embedder, draw_faces, read_decoder
from trainer.inference import InputError, check_same_embedder, embed, read_rows, run_cli
from trainer.model_io import read_model
from trainer.retrieval import gallery_indices


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m trainer.predict", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--model", required=True, help="model.safetensors of a training run")
    p.add_argument("--audio", required=True, help="audio or video file (wav, mp3, mp4, ...)")
    p.add_argument("--start", type=float, default=0.0, help="seconds into the file where the 6 s clip starts")
    p.add_argument("--gallery", help="preprocess output (dir or s3://) whose faces are ranked")
    p.add_argument("--gallery-split", help="only faces of this split (default: every split)")
    p.add_argument("--gallery-by", choices=["ytid", "clip"], default="ytid", help="one face per video or per clip")
    p.add_argument("--top", type=int, default=5, help="how many faces to list")
    p.add_argument("--decoder", help="decoder.safetensors of a trainer.train_decoder run: also draw the face")
    p.add_argument("--out", default=".", help="output directory or s3:// prefix (default: current directory)")
    return p  # fmt: skip


class Gallery:
    """The faces a predicted feature is ranked against: one per video (or per clip) of a preprocess output.

    Shared by trainer.predict and serving, so both rank the same faces the same way.
    """

    def __init__(self, data_uri: str, split: str | None = None, gallery_by: str = "ytid"):
        rows = read_rows(data_uri, split, ["ytid", "face_feature", "face_jpeg"])
        groups = rows["ytid"] if gallery_by == "ytid" else rows["clip_id"]
        chosen, _ = gallery_indices(groups.astype(str), rows["clip_id"].astype(str), gallery_by)
        self.clip_ids, self.ytids = rows["clip_id"][chosen], rows["ytid"][chosen]
        self.face_jpegs = rows["face_jpeg"][chosen]
        faces = rows["face_feature"][chosen].astype(np.float64)
        self.unit_faces = faces / np.linalg.norm(faces, axis=1, keepdims=True)

    def __len__(self) -> int:
        return len(self.clip_ids)

    def nearest(self, prediction: np.ndarray, top: int) -> list[dict]:
        """The ``top`` most similar faces (cosine), best first; ``index`` points into this gallery."""
        prediction = np.asarray(prediction, dtype=np.float64)
        similarity = self.unit_faces @ (prediction / np.linalg.norm(prediction))
        best = np.argsort(-similarity, kind="stable")[:top]
        return [{"rank": i + 1, "clip_id": self.clip_ids[g], "ytid": self.ytids[g],
                 "similarity": float(similarity[g]), "index": int(g)} for i, g in enumerate(best)]  # fmt: skip


def predict_features(model, waves: np.ndarray) -> np.ndarray:
    """float32 (N, out_dim) face features of (N, 96000) waveforms, as every predicting entry point computes them."""
    return embed(model, waves, batch_size=len(waves))


def predict(args) -> dict:
    if args.top < 1:
        raise InputError(f"--top must be >= 1, got {args.top}")
    model, meta = read_model(args.model)
    decoder = None
    if args.decoder:
        decoder, decoder_meta = read_decoder(args.decoder)
        check_embedder(decoder_meta, meta["embedder"], "the voice model")
    wave = load_audio(args.audio, args.start)
    feature = predict_features(model, wave[None])[0]
    storage.makedirs(args.out)
    name = Path(args.audio).stem
    buffer = io.BytesIO()
    np.save(buffer, feature)
    storage.write_bytes(storage.join(args.out, f"{name}.npy"), buffer.getvalue())
    print(f"predicted {feature.shape[0]}-D face feature -> {storage.join(args.out, name + '.npy')}")
    result = {"audio": args.audio, "start": args.start, "model": args.model, "feature_dim": int(feature.shape[0])}
    if decoder is not None:
        (face,), _ = draw_faces(decoder, feature[None])
        buffer = io.BytesIO()
        Image.fromarray(face).save(buffer, format="PNG")
        storage.write_bytes(storage.join(args.out, f"{name}_face.png"), buffer.getvalue())
        result["drawn_face"] = storage.join(args.out, f"{name}_face.png")
        print(f"drew the face -> {result['drawn_face']}")
    if args.gallery:
        check_same_embedder(meta, args.gallery)
        gallery = Gallery(args.gallery, args.gallery_split, args.gallery_by)
        matches = gallery.nearest(feature, args.top)
        for match in matches:
            print(
                f"#{match['rank']:<3} {match['clip_id']:<28} ytid {match['ytid']}  similarity {match['similarity']:.4f}"
            )
        faces = [(gallery.face_jpegs[m["index"]], f"#{m['rank']} {m['ytid']} ({m['similarity']:.3f})", False)
                 for m in matches]  # fmt: skip
        png = plots.face_grid_png([{"label": name, "faces": faces}], title=f"faces nearest to the voice in {name}")
        storage.write_bytes(storage.join(args.out, "faces.png"), png)
        result.update(gallery=args.gallery, gallery_by=args.gallery_by,
                      top=[{k: v for k, v in m.items() if k != "index"} for m in matches])  # fmt: skip
        storage.write_bytes(storage.join(args.out, "predict.json"), (json.dumps(result, indent=2) + "\n").encode())
        print(f"wrote {storage.join(args.out, 'faces.png')} and predict.json")
    return result


def main(argv: list[str] | None = None) -> int:
    return run_cli(predict, build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
