"""How well the face decoder draws faces: ``python -m trainer.evaluate_decoder --data D --decoder DEC [--model M]``.

Decodes (a) each clip's true face feature (face -> face) and, with --model, (b) the voice encoder's
prediction (voice -> face); re-embeds every drawn face with the data's own embedder and ranks it
against the split's gallery (one face per video): R@K with chance and 95 % intervals. Beside them,
two baselines: the mean training face (one image for every query), and the nearest real training
face to the decoder's input. Also the landmark error in pixels of a 224 crop and how often dlib's HOG
detector finds a face in a drawing. Writes decoder_eval.json and decoder_eval.png (true face |
decoded from the face feature | decoded from the voice). Needs no Ray.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from speech2face import storage
from speech2face.embedders import make_embedder
from speech2face.faces import detect_faces
from speech2face.landmarks import crop_landmarks
from speech2face.metrics import recall_table, target_ranks, unit_vectors
from trainer import plots
from trainer.data import tensor_column
from trainer.decoder_io import check_embedder, draw_faces, read_decoder
from trainer.inference import InputError, check_same_embedder, read_rows, run_cli
from trainer.model_io import read_model
from trainer.retrieval import gallery_indices

KS = (1, 5, 10, 25)
PNG_FACES = 8


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m trainer.evaluate_decoder",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--data", required=True, help="preprocess output (local dir or s3://)")
    p.add_argument("--decoder", required=True, help="decoder.safetensors of a trainer.train_decoder run")
    p.add_argument("--model", help="a voice encoder's model.safetensors: also decode its predictions")
    p.add_argument("--split", default="test", help="split to evaluate (test, val or train)")
    p.add_argument("--train-faces", type=int, default=2000, help="train faces the two baselines draw on")
    p.add_argument(
        "--vggface-weights",
        metavar="PATH_OR_URI",
        help="vggface data: the .h5 it was embedded with (default: the manifest's)",
    )
    p.add_argument("--batch-size", type=int, default=32, help="faces per decoder pass")
    p.add_argument("--out", help="output directory or s3:// prefix (default: eval-<split> next to the decoder)")
    return p


def data_embedder(manifest: dict, weights: str | None):
    """The embedder that made the data's features, to re-embed drawn faces in the same space."""
    recorded = manifest["embedder"]
    if recorded["name"] == "dlib":
        return make_embedder("dlib")
    if recorded["weights_sha256"] == "random":
        return make_embedder("vggface", allow_random=True)
    weights = weights or recorded.get("weights")
    if not weights:
        raise InputError("vggface data: pass --vggface-weights, the .h5 the data was embedded with")
    with storage.local_copy(weights) as path:
        embedder = make_embedder("vggface", weights=path)
    check_embedder({"embedder": recorded}, {"name": "vggface", "weights_sha256": embedder.weights_id},
                   "--vggface-weights")  # fmt: skip
    return embedder


def train_sample(data_uri: str, count: int) -> dict:
    """Up to ``count`` train clips (file order): their face crops and features, for the baselines."""
    crops, features = [], []
    for file_uri in storage.list_files(storage.join(data_uri, "clips"), suffix=".parquet"):
        filesystem, path = storage.resolve(file_uri)
        table = pq.read_table(path, columns=["split", "face_jpeg", "face_feature"], filesystem=filesystem)
        table = table.filter(pc.equal(table["split"], "train")).slice(0, count - len(crops))
        crops += [plots.jpeg_image(jpeg) for jpeg in table["face_jpeg"].to_pylist()]
        features += list(tensor_column(table, "face_feature")) if len(table) else []
        if len(crops) >= count:
            break
    if not crops:
        raise InputError(f"{data_uri} has no train clips: the baselines need training faces")
    return {"crops": np.stack(crops), "features": np.stack(features).astype(np.float32)}


def nearest_rows(queries: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Index of each query's most cosine-similar candidate."""
    return np.argmax(unit_vectors(queries) @ unit_vectors(candidates).T, axis=1)


def score(name: str, queries: np.ndarray, gallery: np.ndarray, targets: np.ndarray) -> dict:
    ranks = target_ranks(queries, gallery, targets)
    return {"name": name, "recall": recall_table(ranks, len(gallery), KS), "median_rank": float(np.median(ranks))}


def format_report(report: dict) -> str:
    lines = [f"Face decoder on {report['split']}: {report['queries']} queries, gallery of {report['gallery_size']} "
             f"faces (one per video); drawings re-embedded with {report['embedder']}",
             f"{'':40}" + "".join(f"{'R@' + str(k):>22}" for k in KS)]  # fmt: skip
    lines.append(f"{'chance':40}" + "".join(f"{100 * row['chance']:20.1f} %" for row in report["rows"][0]["recall"]))
    for row in report["rows"]:
        cells = "".join(
            f"{100 * r['recall']:6.1f} % [{100 * r['lo']:4.1f}, {100 * r['hi']:5.1f}]" for r in row["recall"]
        )
        lines.append(f"{row['name']:40}{cells}")
    for source, figures in report["drawings"].items():
        lines.append(f"{source}: landmark error {figures['landmark_error_px']:.1f} px (224-px crop), "
                     f"HOG finds a face in {100 * figures['hog_face_fraction']:.0f} % of the drawings")  # fmt: skip
    if "prediction_distance" in report:
        lines.append(f"the voice's normalised prediction lies {report['prediction_distance']:.3f} from its face's "
                     "(on val: a value for train_decoder --feature-noise)")  # fmt: skip
    return "\n".join(lines)


def evaluate(args) -> dict:
    decoder, meta = read_decoder(args.decoder)
    manifest = check_same_embedder(meta, args.data)
    encoder = None
    if args.model:
        encoder, encoder_meta = read_model(args.model)
        check_same_embedder(encoder_meta, args.data)
    rows = read_rows(args.data, args.split, ["ytid", "face_feature", "face_jpeg"], model=encoder)
    crops = np.stack([plots.jpeg_image(jpeg) for jpeg in rows["face_jpeg"]])
    true_points = crop_landmarks(crops)  # on the stored crops, as training saw them
    gallery_rows, targets = gallery_indices(rows["ytid"].astype(str), rows["clip_id"].astype(str), "ytid")
    gallery = rows["face_feature"][gallery_rows]
    embedder = data_embedder(manifest, args.vggface_weights)
    train = train_sample(args.data, args.train_faces)
    mean_face = embedder.embed(train["crops"].mean(axis=0).round().astype(np.uint8)[None])
    sources = {"face -> decoded face": rows["face_feature"]}
    if encoder is not None:
        sources["voice -> decoded face"] = rows["prediction"]
    report = {"data": args.data, "decoder": args.decoder, "model": args.model, "split": args.split,
              "embedder": manifest["embedder"]["name"], "queries": len(targets), "gallery_size": len(gallery),
              "train_faces": len(train["crops"]), "rows": [], "drawings": {}}  # fmt: skip
    if encoder is not None:
        gap = unit_vectors(rows["prediction"]) - unit_vectors(rows["face_feature"])
        report["prediction_distance"] = float(np.linalg.norm(gap, axis=1).mean())
    drawn = {}
    for source, features in sources.items():
        drawn[source], points = draw_faces(decoder, features, args.batch_size)
        report["rows"].append(score(source, embedder.embed(drawn[source]), gallery, targets))
        nearest = train["features"][nearest_rows(features, train["features"])]
        report["rows"].append(score(f"  nearest training face to the {source.split()[0]}", nearest, gallery, targets))
        report["drawings"][source] = {
            "landmark_error_px": float(np.linalg.norm(points - true_points, axis=-1).mean()),
            "hog_face_fraction": float(np.mean([len(detect_faces(c, upsample=0)) > 0 for c in drawn[source]])),
        }
    report["rows"].append(score("mean training face", np.repeat(mean_face, len(targets), 0), gallery, targets))
    print(format_report(report))
    out = args.out or storage.join(args.decoder.rsplit("/", 1)[0] if "/" in args.decoder else ".",
                                   f"eval-{args.split}")  # fmt: skip
    storage.makedirs(out)
    storage.write_json(storage.join(out, "decoder_eval.json"), report)
    shown = gallery_rows[:PNG_FACES]  # one clip of each of the first videos
    columns = [("true face", crops[shown])] + [(f"decoded from {s.split()[0]}", d[shown]) for s, d in drawn.items()]
    storage.write_bytes(storage.join(out, "decoder_eval.png"), plots.image_columns_png(columns, title=args.split))
    print(f"wrote {storage.join(out, 'decoder_eval.json')} and {storage.join(out, 'decoder_eval.png')}")
    return report


def main(argv: list[str] | None = None) -> int:
    return run_cli(evaluate, build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
