"""Retrieval evaluation of a trained voice encoder, and its report: the library behind trainer.evaluate.

Each clip's predicted face feature queries a gallery of face features (by default one face per video):
R@K for K = 1 ... 100 as in the seed's Table 1, with chance and 95 % intervals, in eval.json, and
retrieval.png (true face, then the top 5 retrieved, the true one framed green). The encoder runs over
the split as Ray Data batch inference (trainer.encoder.batch_inference); this process keeps only ids,
face features and predictions, and ranks them exactly, block by block.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from speech2face import plots, storage
from speech2face.audio import CLIP_SECONDS
from speech2face.dataset import CLIP_ID, FACE_FEATURE, SPLIT, TEST, YTID
from speech2face.errors import InputError
from speech2face.flags import flag
from speech2face.inference import check_same_embedder, gallery_indices, read_face_jpegs, read_metadata
from speech2face.inference.gallery import PREDICTION
from speech2face.inference.retrieval import BY_VIDEO, GALLERY_MODES
from speech2face.metrics import RANKS, recall_table, target_ranks
from trainer.encoder.batch_inference import predict_split, prediction_column
from trainer.encoder.protocol_reports import (
    CLIP,
    OH_GALLERY,
    controls,
    format_controls,
    format_leak_check,
    format_protocol,
    leak_check,
    parse_protocols,
    require_identities,
    run_protocol,
)

PNG_QUERIES = 6
PNG_TOP = 5


@dataclass(kw_only=True)
class EvaluateConfig:
    data: str = flag(help="preprocess output (local dir or s3://)")
    model: str = flag(help="model.safetensors of a training run")
    split: str = flag(TEST, help="split to evaluate (test, val or train)")
    gallery_by: str = flag(
        BY_VIDEO, choices=GALLERY_MODES, help="ytid: one face per video; clip: one per clip, the seed's protocol"
    )
    protocols: str = flag(
        CLIP,
        metavar="NAME[,NAME]",
        help="clip: every clip against one face per video of the split; oh: galleries of --gallery-size faces "
        "(Oh et al.); identity: galleries of 100 identities (SF2F); matching: 1:2 accuracy, ROC AUC, EER",
    )
    gallery_size: int | None = flag(
        None,
        minimum=1,
        help=f"clip: a random gallery of this many faces (default: all); oh: each gallery's faces "
        f"(default {OH_GALLERY})",
    )
    draws: int = flag(10, minimum=1, help="random galleries the oh and identity protocols average over")
    seconds: str | None = flag(
        None,
        metavar="S[,S]",
        help="also evaluate (clip protocol) on only the first S seconds of each clip's audio, looped to 6 s as "
        "preprocessing loops short clips, e.g. 1,3,6: Oh et al. compare 3 s with 6 s",
    )
    seed: int = flag(0, help="seed of the random galleries and pairs")
    batch_size: int = flag(16, minimum=1, help="clips per forward pass")
    cpus_per_actor: float = flag(
        2.0, above=0, help="CPUs of each encoder actor where the cluster has no GPU (else one actor a GPU)"
    )
    out: str | None = flag(None, help="output directory or s3:// prefix (default: eval-<split> next to the model)")

    def problems(self) -> list[str]:
        found = []
        for check in (lambda: parse_protocols(self.protocols), lambda: parse_seconds(self.seconds)):
            try:
                check()
            except InputError as error:
                found.append(str(error))
        return found


def parse_seconds(text: str | None) -> list[float]:
    """The audio lengths of ``--seconds``, each in (0, 6]."""
    if not text:
        return []
    try:
        values = [float(value) for value in text.split(",")]
    except ValueError:
        raise InputError(f"--seconds takes numbers separated by commas, e.g. 1,3,6; got {text!r}") from None
    if not all(0 < value <= CLIP_SECONDS for value in values):
        raise InputError(f"--seconds: each length must lie in (0, {CLIP_SECONDS:g}] seconds, got {text}")
    return values


def audio_length_table(config: EvaluateConfig, rows: dict, queries, gallery_rows, targets) -> list[dict]:
    """R@1/5/10 and the median rank of the clip protocol, the model fed only the first S seconds of each clip."""
    table = []
    for seconds in parse_seconds(config.seconds):
        predictions = _rows(rows[prediction_column(seconds)], queries)
        ranks = target_ranks(predictions, rows[FACE_FEATURE], targets, gallery_rows=gallery_rows)
        table.append({"seconds": seconds, "median_rank": float(np.median(ranks)),
                      "recall": recall_table(ranks, len(gallery_rows), (1, 5, 10))})  # fmt: skip
    return table


def format_audio_length(table: list[dict], gallery_size: int) -> str:
    lines = [f"Audio length (clip protocol, gallery of {gallery_size} faces)",
             f"  {'seconds':>7}  {'R@1':>7}  {'R@5':>7}  {'R@10':>7}  {'median rank':>11}"]  # fmt: skip
    for row in table:
        recalls = "  ".join(f"{100 * r['recall']:5.1f} %" for r in row["recall"])
        lines.append(f"  {row['seconds']:>7g}  {recalls}  {row['median_rank']:>11.1f}")
    return "\n".join(lines)


def sample_gallery(targets: np.ndarray, gallery_rows: np.ndarray, size: int | None, seed: int):
    """Keep ``size`` gallery faces at random and only the queries whose face is kept."""
    if size is None or size >= len(gallery_rows):
        return np.arange(len(targets)), gallery_rows, targets
    if size < 1:
        raise InputError(f"--gallery-size must be >= 1, got {size}")
    keep = np.sort(np.random.default_rng(seed).choice(len(gallery_rows), size, replace=False))
    new_index = np.full(len(gallery_rows), -1)
    new_index[keep] = np.arange(size)
    queries = np.flatnonzero(new_index[targets] >= 0)
    return queries, gallery_rows[keep], new_index[targets[queries]]


def format_table(rows: list[dict], split: str, gallery_size: int, gallery_by: str) -> str:
    kind = "one face per video" if gallery_by == BY_VIDEO else "one face per clip"
    lines = [
        f"Retrieval on {split}: {rows[0]['queries']} queries, gallery of {gallery_size} faces ({kind})",
        f"{'':6}{'recall':>8}   {'95 % interval':<15}{'chance':>8}{'x chance':>10}",
    ]
    for row in rows:
        ratio = row["recall"] / row["chance"]
        lines.append(
            f"R@{row['k']:<4}{100 * row['recall']:7.1f} %  [{100 * row['lo']:5.1f}, {100 * row['hi']:5.1f}]"
            f"{100 * row['chance']:8.1f} %{ratio:9.1f}x"
        )
    return "\n".join(lines)


def retrieval_figure(data_uri: str, rows: dict, queries, gallery_rows, targets) -> bytes:
    """For a few queries (different videos), the true face then the top-5 retrieved.

    Only the figure's face crops are read (a second pass over the split's JPEG column): the split's
    thousands of others never reach this process's memory.
    """
    # cosine, as in the ranking, without a copy of the gallery: every row's score divided by its norm
    faces = rows[FACE_FEATURE]
    norms = np.sqrt(np.einsum("ij,ij->i", faces, faces, dtype=np.float64))
    chosen, seen = [], set()
    for q, target in zip(queries, targets, strict=True):
        if target not in seen:
            chosen.append((q, target))
            seen.add(target)
        if len(chosen) == PNG_QUERIES:
            break
    shown = []
    for q, target in chosen:
        prediction = rows[PREDICTION][q] / np.linalg.norm(rows[PREDICTION][q])
        scores = ((faces @ prediction) / norms)[gallery_rows]
        shown.append((q, target, np.argsort(-scores, kind="stable")[:PNG_TOP]))
    wanted = {rows[CLIP_ID][gallery_rows[g]] for _, target, top in shown for g in [target, *top]}
    jpegs = read_face_jpegs(data_uri, wanted)
    figure_rows = []
    for q, target, top in shown:
        faces = [(jpegs[rows[CLIP_ID][gallery_rows[target]]], "true face", True)]
        faces += [
            (jpegs[rows[CLIP_ID][gallery_rows[g]]], f"#{i + 1} {rows[YTID][gallery_rows[g]]}", g == target)
            for i, g in enumerate(top)
        ]
        figure_rows.append({"label": f"query {rows[CLIP_ID][q]}", "faces": faces})
    return plots.face_grid_png(figure_rows, title="voice query -> true face | top-5 retrieved faces (green: true)")


def _rows(values: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """values[indices], without a copy where the indices are every row in order (a split's worth of features)."""
    return values if np.array_equal(indices, np.arange(len(values))) else values[indices]


def evaluate(config: EvaluateConfig) -> dict:
    meta = read_metadata(config.model)
    manifest = check_same_embedder(meta, config.data)
    protocol_names = parse_protocols(config.protocols)
    require_identities(config.data, config.split, manifest.layout.store_source, protocol_names)
    lengths = tuple(parse_seconds(config.seconds))
    rows = predict_split(config.data, config.split, config.model, config.batch_size, config.cpus_per_actor, lengths)
    groups = rows[YTID] if config.gallery_by == BY_VIDEO else rows[CLIP_ID]
    gallery_rows, targets = gallery_indices(groups.astype(str), rows[CLIP_ID].astype(str), config.gallery_by)
    queries, gallery_rows, targets = sample_gallery(targets, gallery_rows, config.gallery_size, config.seed)
    # the gallery is rows of the features, gathered a chunk at a time (no copy of a split's size)
    ranks = target_ranks(_rows(rows[PREDICTION], queries), rows[FACE_FEATURE], targets, gallery_rows=gallery_rows)
    table = recall_table(ranks, len(gallery_rows), RANKS)
    print(format_table(table, config.split, len(gallery_rows), config.gallery_by))
    model_dir = config.model.rsplit("/", 1)[0] if "/" in config.model else "."
    out = config.out or storage.join(model_dir, f"eval-{config.split}")
    storage.makedirs(out)
    report = {
        "data": config.data,
        "model": config.model,
        SPLIT: config.split,
        "gallery_by": config.gallery_by,
        "gallery_size": len(gallery_rows),
        "queries": len(queries),
        "model_info": meta,
        "median_rank": float(np.median(ranks)),
        "mean_rank": float(np.mean(ranks)),
        "recall": table,
        "per_query": [
            {CLIP_ID: rows[CLIP_ID][q], YTID: rows[YTID][q], "rank": int(r)}
            for q, r in zip(queries, ranks, strict=True)
        ],
    }
    if config.seconds:
        length = audio_length_table(config, rows, queries, gallery_rows, targets)
        report["audio_length"] = length
        print(format_audio_length(length, len(gallery_rows)))
    report["controls"] = controls(config.data, rows, queries, gallery_rows, targets, config.seed)
    print(format_controls(report["controls"]))
    report["leak_check"] = leak_check(config.data, config.split, rows)
    print(format_leak_check(config.split, report["leak_check"]))
    report["protocols"] = {CLIP: {"gallery_size": len(gallery_rows), "recall": table}}
    for name in protocol_names:
        if name != CLIP:
            result = run_protocol(name, rows, config.gallery_size, config.draws, config.seed)
            report["protocols"][name] = result
            print(format_protocol(name, result))
            if "rank_cdf" in result:
                title = f"{name}: galleries of {result['gallery_size']}, {result['draws']} draws"
                png = plots.rank_cdf_png(result["rank_cdf"], result["gallery_size"], title)
                storage.write_bytes(storage.join(out, f"{name}_rank_cdf.png"), png)
    storage.write_json(storage.join(out, "eval.json"), report)
    png = retrieval_figure(config.data, rows, queries, gallery_rows, targets)
    storage.write_bytes(storage.join(out, "retrieval.png"), png)
    print(f"wrote {storage.join(out, 'eval.json')} and {storage.join(out, 'retrieval.png')}")
    return report
