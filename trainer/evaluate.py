"""Retrieval evaluation of a trained model: ``python -m trainer.evaluate --data D --model M --split test``.

Each clip's predicted face feature queries a gallery of face features (by default one face per
video); prints R@K for K = 1 ... 100 as in the seed's Table 1, with chance and 95 % intervals, and
writes eval.json and retrieval.png (true face, then the top 5 retrieved, the true one framed green).
The encoder runs over the split as Ray Data batch inference on the cluster (GPU actors where there
are GPUs); this process keeps only ids, face features and predictions, and ranks them exactly.
"""

from __future__ import annotations

import sys

from speech2face import flags
from trainer.encoder.evaluation import EvaluateConfig, evaluate

PROG = "python -m trainer.evaluate"


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    return flags.run_command(evaluate, flags.parse(EvaluateConfig, argv, prog, __doc__))


if __name__ == "__main__":
    sys.exit(main())
