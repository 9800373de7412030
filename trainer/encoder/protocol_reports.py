"""The published evaluation protocols on a split's predictions (``speech2face.protocols``): report and text.

    clip      every clip against one face per video of the split (``trainer.encoder.evaluation``)
    oh        Oh et al. (2019): galleries of ``--gallery-size`` faces (default 5,000), one face per video
              of the split, ``--draws`` times: R@K, median and mean rank
    identity  SF2F (Bai et al. 2022), Vox2Face (2026): each identity's mean face feature; galleries of 100
              identities, ``--draws`` times: R@1/5/10
    matching  SVHF, the FAME challenges: 1:2 accuracy, verification ROC AUC and EER

Identities are the speakers where every clip of the split has one (VoxCeleb2, a media CSV), else the
video ids, and the report says which. A split with fewer faces or identities than a gallery's size
gets galleries of all of them, and the report says that too.
"""

from __future__ import annotations

import numpy as np

from speech2face import protocols, shards
from speech2face.dataset import CLIP_ID, FACE_FEATURE, SPEAKER, TRAIN, YTID, clips_uri, tensor_column
from speech2face.errors import InputError
from speech2face.inference import gallery_indices
from speech2face.inference.gallery import PREDICTION
from speech2face.inference.retrieval import BY_VIDEO
from speech2face.metrics import RANKS, recall_table, target_ranks, unit_vectors

PROTOCOLS = (CLIP, OH, IDENTITY, MATCHING) = ("clip", "oh", "identity", "matching")
OH_GALLERY = 5000
IDENTITY_GALLERY = 100
PUBLISHED = {  # what each protocol's figures stand beside
    OH: "Oh et al. (2019), 5,000 faces: R@10 about 2 %, median rank about 550 where chance is about 2,500 "
    "(their 100 published retrieval examples)",
    IDENTITY: "100 identities: SF2F (Bai et al. 2022) R@10 29.8 %, Vox2Face (2026) 32.1 %, Speech2Face "
    "re-implemented under this protocol 8.7 %; chance 10 %",
    MATCHING: "SVHF and the FAME challenges: 1:2 accuracy and verification AUC / EER; chance 50 %, 0.5, 50 %",
}


def parse_protocols(text: str) -> list[str]:
    """The protocols of a comma-separated list, in their order; InputError naming any unknown one."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in PROTOCOLS]
    if unknown or not names:
        given = ", ".join(unknown) or "an empty list"
        raise InputError(f"--protocols: unknown {given}; choose from {', '.join(PROTOCOLS)}")
    return list(dict.fromkeys(names))


def identities(rows: dict) -> tuple[np.ndarray, str]:
    """Each clip's identity, and what it is: "speaker" where every clip has one, else "video id"."""
    speakers = rows.get(SPEAKER)
    if speakers is not None and len(speakers) and all(isinstance(s, str) and s for s in speakers):
        return speakers.astype(str), "speaker"
    return rows[YTID].astype(str), "video id"


def require_identities(data_uri: str, split: str, store_source: bool, names: list[str]) -> None:
    """Before any inference: InputError where a protocol that ranks identities meets a split of fewer than two
    (reads only the split's id columns)."""
    needing = [name for name in names if name in (IDENTITY, MATCHING)]
    if not needing:
        return
    columns = [YTID, SPEAKER] if store_source else [YTID]
    table = shards.read_table(clips_uri(data_uri), columns, split=split)
    labels, kind = identities({column: np.array(table[column].to_pylist(), dtype=object) for column in columns})
    if len(set(labels)) < 2:
        raise InputError(
            f"--protocols {','.join(needing)} needs at least two identities; {split} has {len(set(labels))} "
            f"({kind}s): evaluate a split with more speakers or videos, or use --protocols clip,oh"
        )


def leak_check(data_uri: str, split: str, rows: dict) -> dict:
    """How many of the split's identities (speakers, else video ids) also have clips in train: a split by
    segment, not by speaker, lets a model recognise voices it trained on (the seed's 51 % R@1)."""
    labels, kind = identities(rows)
    evaluated = set(labels)
    if split == TRAIN:
        return {"identities": kind, "in_split": len(evaluated), "also_in_train": None}
    column = SPEAKER if kind == "speaker" else YTID
    train = shards.read_table(clips_uri(data_uri), [column], split=TRAIN)[column].to_pylist()
    return {"identities": kind, "in_split": len(evaluated), "also_in_train": len(evaluated & set(train))}


def format_leak_check(split: str, leak: dict) -> str:
    if leak["also_in_train"] is None:
        return f"Leak check: evaluating train itself ({leak['in_split']} {leak['identities']}s)"
    if not leak["also_in_train"]:
        return f"Leak check: 0 of the {leak['in_split']} {leak['identities']}s of {split} have clips in train"
    return (
        f"WARNING: LEAK: {leak['also_in_train']} of the {leak['in_split']} {leak['identities']}s of {split} also "
        "have clips in train; this evaluation measures recognition of voices the model trained on, not "
        "generalisation (split by speaker or video: pipelines.preprocess --split-by ytid, --test-fraction)"
    )


QUERY_BLOCK = 4096  # queries scored at once against a file of train's faces: 4096 x 5,000 x 4 B = 82 MB


def training_face_baselines(data_uri: str, predictions: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(the mean of train's L2-normalised face features, each prediction's most cosine-similar train face),
    from one pass over train's features a file at a time (never all of train at once); None without train."""
    queries = unit_vectors(predictions.astype(np.float32))
    total, count = None, 0
    best_score = np.full(len(queries), -np.inf, dtype=np.float32)
    nearest = np.zeros_like(queries)
    for _, table in shards.read_shards(shards.shard_files(clips_uri(data_uri), TRAIN), [FACE_FEATURE], TRAIN):
        if not len(table):
            continue
        faces = unit_vectors(tensor_column(table, FACE_FEATURE).astype(np.float32))
        total, count = (faces.sum(axis=0, dtype=np.float64) + (0 if total is None else total)), count + len(faces)
        for start in range(0, len(queries), QUERY_BLOCK):  # scores of a block of queries, not of the split
            block = slice(start, start + QUERY_BLOCK)
            scores = queries[block] @ faces.T
            best = scores.argmax(axis=1)
            score = scores[np.arange(len(best)), best]
            better = score > best_score[block]
            best_score[block][better] = score[better]
            nearest[block][better] = faces[best[better]]
    return None if total is None else ((total / count).astype(np.float32), nearest)


def controls(data_uri: str, rows: dict, queries, gallery_rows, targets, seed: int) -> dict:
    """The clip protocol's R@K for predictions a result must beat: each query's prediction scored against
    another clip's face (shuffled voices), the mean training face for every query (knows nothing of the
    voice), and each prediction replaced by its nearest training face (a lookup among faces seen in
    training, as trainer.evaluate_decoder's baseline). A result that does not beat the first two is an
    artefact, not a voice-face link."""
    ks = _ks(RANKS, len(gallery_rows))
    predictions = rows[PREDICTION][queries]

    def recall(scored: np.ndarray) -> list[dict]:
        ranks = target_ranks(scored, rows[FACE_FEATURE], targets, gallery_rows=gallery_rows)
        return recall_table(ranks, len(gallery_rows), ks)

    report = {"shuffled_voices": recall(predictions[np.random.default_rng(seed).permutation(len(predictions))])}
    baselines = training_face_baselines(data_uri, predictions)
    if baselines is not None:
        mean_face, nearest = baselines
        report["mean_training_face"] = recall(np.broadcast_to(mean_face, predictions.shape))
        report["nearest_training_face"] = recall(nearest)
    return report


def format_controls(report: dict) -> str:
    lines = ["Controls (clip protocol; a result must beat these)"]
    for name, table in report.items():
        figures = ", ".join(f"R@{row['k']} {100 * row['recall']:.1f} % (chance {100 * row['chance']:.1f} %)"
                            for row in table[:3])  # fmt: skip
        lines.append(f"  {name.replace('_', ' ')}: {figures}")
    return "\n".join(lines)


def _faces_per_video(rows: dict) -> tuple[np.ndarray, np.ndarray]:
    """(gallery rows: one face per video, each clip's target among them), as the clip protocol's gallery."""
    return gallery_indices(rows[YTID].astype(str), rows[CLIP_ID].astype(str), BY_VIDEO)


def oh_protocol(rows: dict, gallery_size: int | None, draws: int, seed: int) -> dict:
    gallery_rows, targets = _faces_per_video(rows)
    wanted = gallery_size or OH_GALLERY
    size = min(wanted, len(gallery_rows))
    ranks = protocols.drawn_gallery_ranks(
        rows[PREDICTION], rows[FACE_FEATURE], gallery_rows[targets], size, draws, seed, pool=gallery_rows
    )
    return {
        "gallery_size": size,
        "gallery_size_asked": wanted,
        "draws": draws,
        "queries": len(targets),
        "recall": [vars(row) for row in protocols.drawn_recall(ranks, size, ks=_ks((1, 5, 10, 50, 100), size))],
        **protocols.rank_summary(ranks, size),
        "rank_cdf": protocols.rank_cdf(ranks, size),
        "published": PUBLISHED[OH],
    }


def identity_protocol(rows: dict, draws: int, seed: int) -> dict:
    labels, kind = identities(rows)
    names, means = protocols.identity_means(rows[FACE_FEATURE], labels)
    index = {name: i for i, name in enumerate(names)}
    targets = np.array([index[label] for label in labels])
    size = min(IDENTITY_GALLERY, len(names))
    ranks = protocols.drawn_gallery_ranks(rows[PREDICTION], means, targets, size, draws, seed)
    return {
        "identities": kind,
        "identity_count": len(names),
        "gallery_size": size,
        "draws": draws,
        "queries": len(targets),
        "recall": [vars(row) for row in protocols.drawn_recall(ranks, size, ks=_ks((1, 5, 10), size))],
        **protocols.rank_summary(ranks, size),
        "published": PUBLISHED[IDENTITY],
    }


def matching_protocol(rows: dict, seed: int) -> dict:
    labels, kind = identities(rows)
    return {"identities": kind, **protocols.matching(rows[PREDICTION], rows[FACE_FEATURE], labels, seed),
            "published": PUBLISHED[MATCHING]}  # fmt: skip


def _ks(ks: tuple[int, ...], gallery_size: int) -> list[int]:
    """The K below the gallery's size, and the first at or above it (where every query hits)."""
    below = [k for k in ks if k < gallery_size]
    return below + [k for k in ks if k >= gallery_size][:1]


def run_protocol(name: str, rows: dict, gallery_size: int | None, draws: int, seed: int) -> dict:
    if name == OH:
        return oh_protocol(rows, gallery_size, draws, seed)
    if name == IDENTITY:
        return identity_protocol(rows, draws, seed)
    return matching_protocol(rows, seed)


def format_protocol(name: str, result: dict) -> str:
    """A few lines a person reads: the protocol, its gallery, each figure beside chance and its interval."""
    if name == MATCHING:
        return "\n".join([
            f"Matching ({result['identities']}s): {result['pairs']} voices, each with its face and one of another "
            "identity",
            f"  1:2 accuracy {100 * result['accuracy_1_to_2']:.1f} %  [{100 * result['accuracy_lo']:.1f}, "
            f"{100 * result['accuracy_hi']:.1f}]  chance 50.0 %",
            f"  verification ROC AUC {result['roc_auc']:.3f} (chance 0.5), EER {100 * result['eer']:.1f} % "
            "(chance 50 %)",
            f"  published: {result['published']}",
        ])  # fmt: skip
    what = (
        "faces (one per video)" if name == OH else f"identities ({result['identities']}s, each the mean of its faces)"
    )
    asked = result.get("gallery_size_asked", IDENTITY_GALLERY)
    fewer = f"; the split has only {result['gallery_size']}" if result["gallery_size"] < asked else ""
    lines = [
        f"{'Oh et al.' if name == OH else 'Identity'} protocol: {result['queries']} queries, galleries of "
        f"{result['gallery_size']} {what}{fewer}, averaged over {result['draws']} draws",
    ]
    for row in result["recall"]:
        lines.append(
            f"  R@{row['k']:<4}{100 * row['recall']:6.1f} %  [{100 * row['lo']:5.1f}, {100 * row['hi']:5.1f}]  "
            f"chance {100 * row['chance']:5.1f} %"
        )
    lines.append(
        f"  median rank {result['median_rank']:.1f}, mean {result['mean_rank']:.1f} "
        f"(chance {result['chance_rank']:.1f})"
    )
    lines.append(f"  published: {result['published']}")
    return "\n".join(lines)
