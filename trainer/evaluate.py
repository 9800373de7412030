"""Retrieval evaluation of a trained model: ``python -m trainer.evaluate --data D --model M --split test``.

Each clip's predicted face feature queries a gallery of face features (by default one face per
video); prints R@K for K = 1 ... 100 as in the seed's Table 1, with chance and 95 % intervals, and
writes eval.json and retrieval.png (true face, then the top 5 retrieved, the true one framed green).
The encoder runs over the split as Ray Data batch inference on the cluster (trainer.batch_inference:
GPU actors where there are GPUs); this process keeps only ids, face features and predictions, and
ranks them exactly, block by block.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from speech2face import storage
from speech2face.metrics import RANKS, recall_table, target_ranks
from trainer import plots
from trainer.batch_inference import predict_split
from trainer.inference import InputError, check_same_embedder, read_face_jpegs, run_cli
from trainer.model_io import read_metadata
from trainer.retrieval import gallery_indices

PNG_QUERIES = 6
PNG_TOP = 5


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m trainer.evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--data", required=True, help="preprocess output (local dir or s3://)")
    p.add_argument("--model", required=True, help="model.safetensors of a training run")
    p.add_argument("--split", default="test", help="split to evaluate (test, val or train)")
    p.add_argument(
        "--gallery-by",
        choices=["ytid", "clip"],
        default="ytid",
        help="ytid: one face per video (default); clip: one per clip, the seed's protocol",
    )
    p.add_argument("--gallery-size", type=int, help="evaluate against a random gallery of this many faces")
    p.add_argument("--seed", type=int, default=0, help="seed for --gallery-size sampling")
    p.add_argument("--batch-size", type=int, default=16, help="clips per forward pass")
    p.add_argument("--cpus-per-actor", type=float, default=2.0,
                   help="CPUs of each encoder actor where the cluster has no GPU (else one actor a GPU)")  # fmt: skip
    p.add_argument("--out", help="output directory or s3:// prefix (default: eval-<split> next to the model)")
    return p  # fmt: skip


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
    kind = "one face per video" if gallery_by == "ytid" else "one face per clip"
    lines = [f"Retrieval on {split}: {rows[0]['queries']} queries, gallery of {gallery_size} faces ({kind})",
             f"{'':6}{'recall':>8}   {'95 % interval':<15}{'chance':>8}{'x chance':>10}"]  # fmt: skip
    for row in rows:
        ratio = row["recall"] / row["chance"]
        lines.append(f"R@{row['k']:<4}{100 * row['recall']:7.1f} %  [{100 * row['lo']:5.1f}, {100 * row['hi']:5.1f}]"
                     f"{100 * row['chance']:8.1f} %{ratio:9.1f}x")  # fmt: skip
    return "\n".join(lines)


def retrieval_figure(data_uri: str, rows: dict, queries, gallery_rows, targets) -> bytes:
    """For a few queries (different videos), the true face then the top-5 retrieved.

    Only the figure's face crops are read (a second pass over the split's JPEG column): the split's
    thousands of others never reach this process's memory.
    """
    # cosine, as in the ranking, without a copy of the gallery: every row's score divided by its norm
    faces = rows["face_feature"]
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
        prediction = rows["prediction"][q] / np.linalg.norm(rows["prediction"][q])
        scores = ((faces @ prediction) / norms)[gallery_rows]
        shown.append((q, target, np.argsort(-scores, kind="stable")[:PNG_TOP]))
    wanted = {rows["clip_id"][gallery_rows[g]] for _, target, top in shown for g in [target, *top]}
    jpegs = read_face_jpegs(data_uri, wanted)
    figure_rows = []
    for q, target, top in shown:
        faces = [(jpegs[rows["clip_id"][gallery_rows[target]]], "true face", True)]
        faces += [(jpegs[rows["clip_id"][gallery_rows[g]]], f"#{i + 1} {rows['ytid'][gallery_rows[g]]}", g == target)
                  for i, g in enumerate(top)]  # fmt: skip
        figure_rows.append({"label": f"query {rows['clip_id'][q]}", "faces": faces})
    return plots.face_grid_png(figure_rows, title="voice query -> true face | top-5 retrieved faces (green: true)")


def _rows(values: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """values[indices], without a copy where the indices are every row in order (a split's worth of features)."""
    return values if np.array_equal(indices, np.arange(len(values))) else values[indices]


def evaluate(args) -> dict:
    meta = read_metadata(args.model)
    check_same_embedder(meta, args.data)
    rows = predict_split(args.data, args.split, args.model, args.batch_size, args.cpus_per_actor)
    groups = rows["ytid"] if args.gallery_by == "ytid" else rows["clip_id"]
    gallery_rows, targets = gallery_indices(groups.astype(str), rows["clip_id"].astype(str), args.gallery_by)
    queries, gallery_rows, targets = sample_gallery(targets, gallery_rows, args.gallery_size, args.seed)
    # the gallery is rows of the features, gathered a chunk at a time (no copy of a split's size)
    ranks = target_ranks(_rows(rows["prediction"], queries), rows["face_feature"], targets, gallery_rows=gallery_rows)
    table = recall_table(ranks, len(gallery_rows), RANKS)
    print(format_table(table, args.split, len(gallery_rows), args.gallery_by))
    out = args.out or storage.join(args.model.rsplit("/", 1)[0] if "/" in args.model else ".", f"eval-{args.split}")
    storage.makedirs(out)
    report = {
        "data": args.data, "model": args.model, "split": args.split, "gallery_by": args.gallery_by,
        "gallery_size": len(gallery_rows), "queries": len(queries), "model_info": meta,
        "median_rank": float(np.median(ranks)), "mean_rank": float(np.mean(ranks)), "recall": table,
        "per_query": [{"clip_id": rows["clip_id"][q], "ytid": rows["ytid"][q], "rank": int(r)}
                      for q, r in zip(queries, ranks, strict=True)],
    }  # fmt: skip
    storage.write_json(storage.join(out, "eval.json"), report)
    png = retrieval_figure(args.data, rows, queries, gallery_rows, targets)
    storage.write_bytes(storage.join(out, "retrieval.png"), png)
    print(f"wrote {storage.join(out, 'eval.json')} and {storage.join(out, 'retrieval.png')}")
    return report


def main(argv: list[str] | None = None) -> int:
    return run_cli(evaluate, build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
