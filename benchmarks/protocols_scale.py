"""The published protocols at scale: seconds and peak memory of the driver's ranking, on synthetic rows.

``--rows`` clips (default 50,000) of ``--dim``-D face features (4096, VGG-Face) and predictions, ``--videos``
videos and as many speakers, go through the product's own functions (``trainer.encoder.protocol_reports``:
``oh_protocol`` with galleries of 5,000 faces, ``identity_protocol`` with galleries of 100 identities,
``--draws`` each). Peak RSS is the process's (``ru_maxrss``), beside the bytes of the features and
predictions themselves: the bound is those plus a constant, no copy that grows with the split.

    python -m benchmarks.protocols_scale --json benchmarks/results/protocols_scale.json
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np

from benchmarks.train_step import finish_report, new_report
from speech2face.dataset import CLIP_ID, FACE_FEATURE, SPEAKER, YTID
from speech2face.inference.gallery import PREDICTION
from trainer.encoder.protocol_reports import identity_protocol, oh_protocol


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def synthetic_rows(rows: int, dim: int, videos: int, seed: int = 0) -> dict:
    """Rows as ``predict_split`` hands them to the driver: ids, float32 features and predictions."""
    generator = np.random.default_rng(seed)
    video = generator.integers(0, videos, size=rows)
    return {
        CLIP_ID: np.array([f"clip{i:07d}" for i in range(rows)]),
        YTID: np.array([f"v{v:010d}" for v in video]),
        SPEAKER: np.array([f"id{v:05d}" for v in video], dtype=object),
        FACE_FEATURE: generator.standard_normal((rows, dim), dtype=np.float32),
        PREDICTION: generator.standard_normal((rows, dim), dtype=np.float32),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--dim", type=int, default=4096)
    parser.add_argument("--videos", type=int, default=10_000)
    parser.add_argument("--draws", type=int, default=10)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    report = new_report("benchmarks.protocols_scale", argv)
    before = _peak_mb()
    rows = synthetic_rows(args.rows, args.dim, args.videos)
    arrays_mb = (rows[FACE_FEATURE].nbytes + rows[PREDICTION].nbytes) / 2**20
    report["rows"], report["dim"], report["arrays_mb"] = args.rows, args.dim, round(arrays_mb, 1)
    report["peak_rss_mb_with_arrays"] = round(_peak_mb(), 1)
    for name, run in (("oh", lambda: oh_protocol(rows, 5000, args.draws, 0)),
                      ("identity", lambda: identity_protocol(rows, args.draws, 0))):  # fmt: skip
        started = time.perf_counter()
        result = run()
        report[name] = {
            "seconds": round(time.perf_counter() - started, 1),
            "peak_rss_mb_after": round(_peak_mb(), 1),
            "gallery_size": result["gallery_size"],
            "draws": result["draws"],
            "queries": result["queries"],
            "recall": result["recall"][:3],
        }
        print(name, report[name], flush=True)
    report["peak_rss_mb_before_arrays"] = round(before, 1)
    report["peak_over_arrays_mb"] = round(_peak_mb() - arrays_mb, 1)
    finish_report(report, args.json)


if __name__ == "__main__":
    main()
