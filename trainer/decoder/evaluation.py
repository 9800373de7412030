"""The library behind trainer.evaluate_decoder (no Ray): draw faces from features and from voices, embed
the drawings and the gallery's stored face crops with a judge network, and score the drawings against
that gallery and two baselines.

The judge is by default a network other than the one that defined the decoder's target (dlib for
VGG-Face data; VGG-Face for dlib data when its weights are given): a decoder that learned its target
network's quirks would pass that network's judgement. Where no other network is at hand, the report
says "same network as the target"."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from speech2face import dataset, plots, shards, storage
from speech2face.dataset import CLIP_ID, EMBEDDER, FACE_FEATURE, FACE_JPEG, SPLIT, TEST, TRAIN, YTID, Manifest
from speech2face.embedders import EMBEDDER_NAMES, load_vggface, make_embedder
from speech2face.errors import InputError
from speech2face.faces import detect_faces
from speech2face.flags import flag
from speech2face.inference import check_same_embedder, draw_faces, gallery_indices, read_decoder, read_model, read_rows
from speech2face.inference.gallery import PREDICTION
from speech2face.inference.retrieval import BY_VIDEO
from speech2face.landmarks import craniofacial_measures, crop_landmarks
from speech2face.metrics import recall_table, target_ranks, unit_vectors
from speech2face.protocols import attribute_correlations

KS = (1, 5, 10, 25)
PNG_FACES = 8


@dataclass(kw_only=True)
class EvaluateDecoderConfig:
    data: str = flag(help="preprocess output (local dir or s3://)")
    decoder: str = flag(help="decoder.safetensors of a trainer.train_decoder run")
    model: str | None = flag(None, help="a voice encoder's model.safetensors: also decode its predictions")
    split: str = flag(TEST, help="split to evaluate (test, val or train)")
    train_faces: int = flag(2000, minimum=1, help="train faces the two baselines draw on")
    vggface_weights: str | None = flag(
        None, metavar="PATH_OR_URI", help="vggface data: the .h5 it was embedded with (default: the manifest's)"
    )
    judge: str | None = flag(
        None,
        choices=EMBEDDER_NAMES,
        help="the network that embeds the drawings and the gallery's face crops (default: one other than the "
        "data's: dlib for vggface data, vggface for dlib data with --judge-weights, else the data's own)",
    )
    judge_weights: str | None = flag(
        None, metavar="PATH_OR_URI", help="--judge vggface: its .h5 (real weights, or 'random' for a test)"
    )
    batch_size: int = flag(32, minimum=1, help="faces per decoder pass")
    out: str | None = flag(None, help="output directory or s3:// prefix (default: eval-<split> next to the decoder)")


SAME, DIFFERENT = "same network as the target", "judge differs from target"


def judge_embedder(config: EvaluateDecoderConfig, manifest: Manifest):
    """(the judge, its name, SAME or DIFFERENT)."""
    target = manifest.embedder.name
    name = config.judge or ("dlib" if target == "vggface" else "vggface" if config.judge_weights else target)
    if name == target:
        return data_embedder(manifest, config.vggface_weights), name, SAME
    if name == "dlib":
        return make_embedder("dlib"), name, DIFFERENT
    if not config.judge_weights:
        raise InputError("--judge vggface needs --judge-weights: keras-vggface's rcmalli_vggface_tf_vgg16.h5")
    return load_vggface(config.judge_weights), name, DIFFERENT


def data_embedder(manifest: Manifest, weights: str | None):
    """The embedder that made the data's features, to re-embed drawn faces in the same space."""
    recorded = manifest.embedder
    if recorded.name == "dlib":
        return make_embedder("dlib")
    return load_vggface(dataset.check_weights(weights, recorded), recorded.weights_sha256)


def train_sample(data_uri: str, count: int) -> dict:
    """Up to ``count`` train clips (file order): their face crops and features, for the baselines."""
    crops, features = [], []
    files = shards.shard_files(dataset.clips_uri(data_uri), TRAIN)
    for _, table in shards.read_shards(files, [FACE_JPEG, FACE_FEATURE], TRAIN, parallel=1):  # stops early
        table = table.slice(0, count - len(crops))
        crops += [plots.jpeg_image(jpeg) for jpeg in table[FACE_JPEG].to_pylist()]
        features += list(dataset.tensor_column(table, FACE_FEATURE)) if len(table) else []
        if len(crops) >= count:
            break
    if not crops:
        raise InputError(f"{data_uri} has no train clips: the baselines need training faces")
    return {"crops": np.stack(crops), "features": np.stack(features).astype(np.float32)}


def nearest_rows(queries: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Index of each query's most cosine-similar candidate."""
    return np.argmax(unit_vectors(queries) @ unit_vectors(candidates).T, axis=1)


def embed_rows(judge, crops: np.ndarray, rows: np.ndarray, embedded: dict[int, np.ndarray]) -> np.ndarray:
    """The judge's embeddings of ``crops[rows]``, each crop embedded once: queries share nearest faces, and
    ``embedded`` keeps what earlier calls embedded (a dlib descriptor costs ~80 ms)."""
    missing = sorted(set(rows.tolist()) - embedded.keys())
    if missing:
        embedded.update(zip(missing, judge.embed(crops[missing]), strict=True))
    return np.stack([embedded[row] for row in rows.tolist()])


def score(name: str, queries: np.ndarray, gallery: np.ndarray, targets: np.ndarray) -> dict:
    ranks = target_ranks(queries, gallery, targets)
    return {"name": name, "recall": recall_table(ranks, len(gallery), KS), "median_rank": float(np.median(ranks))}


def format_report(report: dict) -> str:
    lines = [
        f"Face decoder on {report[SPLIT]}: {report['queries']} queries, gallery of {report['gallery_size']} "
        f"faces (one per video); drawings and gallery crops embedded by {report['judge']} "
        f"({report['judge_label']}; the target is {report[EMBEDDER]})",
        f"{'':40}" + "".join(f"{'R@' + str(k):>22}" for k in KS),
    ]
    lines.append(f"{'chance':40}" + "".join(f"{100 * row['chance']:20.1f} %" for row in report["rows"][0]["recall"]))
    for row in report["rows"]:
        cells = "".join(
            f"{100 * r['recall']:6.1f} % [{100 * r['lo']:4.1f}, {100 * r['hi']:5.1f}]" for r in row["recall"]
        )
        lines.append(f"{row['name']:40}{cells}")
    for source, figures in report["drawings"].items():
        lines.append(
            f"{source}: landmark error {figures['landmark_error_px']:.1f} px (224-px crop), "
            f"HOG finds a face in {100 * figures['hog_face_fraction']:.0f} % of the drawings"
        )
    for name, figures in report.get("craniofacial", {}).items():
        lines.append(
            f"{name}: voice-drawn against face-drawn r = {figures['correlation']:.2f}; random pairs "
            f"{figures['random_pairs_mean']:.2f} [{figures['random_pairs_lo']:.2f}, {figures['random_pairs_hi']:.2f}]"
        )
    if "prediction_distance" in report:
        lines.append(
            f"the voice's normalised prediction lies {report['prediction_distance']:.3f} from its face's "
            "(on val: a value for train_decoder --feature-noise)"
        )
    return "\n".join(lines)


def evaluate(config: EvaluateDecoderConfig) -> dict:
    decoder, meta = read_decoder(config.decoder)
    manifest = check_same_embedder(meta, config.data)
    judge, judge_name, judge_label = judge_embedder(config, manifest)
    encoder = None
    if config.model:
        encoder, encoder_meta = read_model(config.model)
        check_same_embedder(encoder_meta, config.data)
    rows = read_rows(config.data, config.split, [YTID, FACE_FEATURE, FACE_JPEG], model=encoder)
    crops = np.stack([plots.jpeg_image(jpeg) for jpeg in rows[FACE_JPEG]])
    true_points = crop_landmarks(crops)  # on the stored crops, as training saw them
    gallery_rows, targets = gallery_indices(rows[YTID].astype(str), rows[CLIP_ID].astype(str), BY_VIDEO)
    gallery = judge.embed(crops[gallery_rows])  # the stored crops, in the judge's space
    train = train_sample(config.data, config.train_faces)
    mean_face = judge.embed(train["crops"].mean(axis=0).round().astype(np.uint8)[None])
    sources = {"face -> decoded face": rows[FACE_FEATURE]}
    if encoder is not None:
        sources["voice -> decoded face"] = rows[PREDICTION]
    report = {
        "data": config.data,
        "decoder": config.decoder,
        "model": config.model,
        SPLIT: config.split,
        EMBEDDER: manifest.embedder.name,
        "judge": judge_name,
        "judge_label": judge_label,
        "queries": len(targets),
        "gallery_size": len(gallery),
        "train_faces": len(train["crops"]),
        "rows": [],
        "drawings": {},
    }
    if encoder is not None:
        gap = unit_vectors(rows[PREDICTION]) - unit_vectors(rows[FACE_FEATURE])
        report["prediction_distance"] = float(np.linalg.norm(gap, axis=1).mean())
    drawn, drawn_points, embedded_train = {}, {}, {}
    for source, features in sources.items():
        drawn[source], points = draw_faces(decoder, features, config.batch_size)
        drawn_points[source] = points
        report["rows"].append(score(source, judge.embed(drawn[source]), gallery, targets))
        nearest = embed_rows(judge, train["crops"], nearest_rows(features, train["features"]), embedded_train)
        report["rows"].append(score(f"  nearest training face to the {source.split()[0]}", nearest, gallery, targets))
        report["drawings"][source] = {
            "landmark_error_px": float(np.linalg.norm(points - true_points, axis=-1).mean()),
            "hog_face_fraction": float(np.mean([len(detect_faces(c, upsample=0)) > 0 for c in drawn[source]])),
        }
    report["rows"].append(score("mean training face", np.repeat(mean_face, len(targets), 0), gallery, targets))
    if encoder is not None and len(targets) > 2:  # Oh et al.'s attributes: voice drawings against face drawings
        report["craniofacial"] = attribute_correlations(
            *(craniofacial_measures(drawn_points[source]) for source in sources), seed=0
        )
    print(format_report(report))
    decoder_dir = config.decoder.rsplit("/", 1)[0] if "/" in config.decoder else "."
    out = config.out or storage.join(decoder_dir, f"eval-{config.split}")
    storage.makedirs(out)
    storage.write_json(storage.join(out, "decoder_eval.json"), report)
    shown = gallery_rows[:PNG_FACES]  # one clip of each of the first videos
    columns = [("true face", crops[shown])] + [(f"decoded from {s.split()[0]}", d[shown]) for s, d in drawn.items()]
    storage.write_bytes(storage.join(out, "decoder_eval.png"), plots.image_columns_png(columns, title=config.split))
    print(f"wrote {storage.join(out, 'decoder_eval.json')} and {storage.join(out, 'decoder_eval.png')}")
    return report
