"""How well the face decoder draws faces: ``python -m trainer.evaluate_decoder --data D --decoder DEC [--model M]``.

Decodes (a) each clip's true face feature (face -> face) and, with --model, (b) the voice encoder's
prediction (voice -> face); a judge network (--judge: by default one other than the data's embedder,
else the data's own, said so) embeds every drawn face and the split's gallery crops (one face per video)
and ranks the drawing among them: R@K with chance and 95 % intervals. Beside them,
two baselines: the mean training face (one image for every query), and the nearest real training
face to the decoder's input. Also the landmark error in pixels of a 224 crop and how often dlib's HOG
detector finds a face in a drawing. Writes decoder_eval.json and decoder_eval.png (true face |
decoded from the face feature | decoded from the voice). Needs no Ray.
"""

from __future__ import annotations

import sys

from speech2face import flags
from trainer.decoder.evaluation import EvaluateDecoderConfig, evaluate

PROG = "python -m trainer.evaluate_decoder"


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    return flags.run_command(evaluate, flags.parse(EvaluateDecoderConfig, argv, prog, __doc__))


if __name__ == "__main__":
    sys.exit(main())
