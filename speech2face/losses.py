"""Speech2Face training losses (Oh et al., CVPR 2019, eq. 1-5): L1, normalised L2, distillation, and the
face-decoder loss (L1 between the frozen face decoder's first layer of v_f and of v_s).

``pred`` is the voice encoder's output v_s and ``target`` the face feature v_f, both (batch, dim).
Every loss is a per-sample sum over the feature (as in the paper's formulas), then a mean over the
batch, so its size does not depend on the batch size. Losses are computed in float32, also under
autocast, because norms and softmaxes of 4096-D vectors lose too much precision in bf16.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

NORM_EPS = 1e-12


@dataclass
class LossWeights:
    """Weights of the loss terms; ``total = l1 * L1 + l2norm * L2norm + distill * L_distill``.

    Defaults are the seed's choice (L2norm only). The paper's total is L1 + λ1·L2norm + λ2·L_distill;
    one public implementation uses λ1 = 0.025, λ2 = 200, T = 2, i.e.
    ``LossWeights(l1=1.0, l2norm=0.025, distill=200.0, temperature=2.0)`` (not verified against the
    paper). Distillation needs the VGG-Face classifier, so it cannot be used with the dlib embedder.
    """

    l1: float = 0.0
    l2norm: float = 1.0
    distill: float = 0.0
    temperature: float = 2.0
    decoder: float = 0.0  # the paper's L1 on f_dec, the face decoder's first layer

    def __post_init__(self):
        if min(self.l1, self.l2norm, self.distill, self.decoder) < 0:
            raise ValueError(f"loss weights must be >= 0, got {self}")
        if self.l1 == self.l2norm == self.distill == self.decoder == 0:
            raise ValueError("all loss weights are 0, so nothing would be trained; set l1, l2norm, distill or "
                             "decoder > 0")  # fmt: skip
        if self.temperature <= 0:
            raise ValueError(f"the distillation temperature must be > 0, got {self.temperature}")


def _check_pair(pred: torch.Tensor, target: torch.Tensor) -> None:
    if pred.ndim != 2 or pred.shape != target.shape:
        raise ValueError(
            f"pred and target must both be (batch, dim) with equal shapes, got {tuple(pred.shape)} and "
            f"{tuple(target.shape)}; check that the encoder's out_dim matches the face embedder's feature size"
        )


def l1_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ||v_f - v_s||_1 (summed over the feature, not averaged)."""
    _check_pair(pred, target)
    return (target.float() - pred.float()).abs().sum(dim=1).mean()


def _unit(x: torch.Tensor) -> torch.Tensor:
    # rsqrt of a clamped sum of squares: a zero vector maps to zero with a zero (not NaN) gradient
    return x * torch.rsqrt(x.pow(2).sum(dim=1, keepdim=True).clamp_min(NORM_EPS**2))


def l2norm_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ||v_f/||v_f|| - v_s/||v_s|| ||_2^2, in [0, 4]; a zero vector counts as 0/0 = 0."""
    _check_pair(pred, target)
    return (_unit(target.float()) - _unit(pred.float())).pow(2).sum(dim=1).mean()


def distill_loss(teacher_logits: torch.Tensor, student_logits: torch.Tensor, temperature: float = 2.0) -> torch.Tensor:
    """Mean over the batch of -sum_i softmax(a/T)_i * log_softmax(b/T)_i (a: teacher, b: student).

    This is the cross-entropy between the tempered class distributions; it is not multiplied by T².
    """
    _check_pair(student_logits, teacher_logits)
    teacher_probs = F.softmax(teacher_logits.float() / temperature, dim=1)
    student_log_probs = F.log_softmax(student_logits.float() / temperature, dim=1)
    return -(teacher_probs * student_log_probs).sum(dim=1).mean()


def total_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    weights: LossWeights,
    classifier: Callable[[torch.Tensor], torch.Tensor] | None = None,
    decoder_first: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """The weighted total and each term, as scalar tensors: keys 'total', 'l1', 'l2norm' and, when a
    classifier is given, 'distill'; when ``decoder_first`` is given, 'decoder'.

    ``classifier(feature)`` must return the VGG-Face logits ``fc8(relu(feature))``; ``decoder_first``
    is a frozen face decoder's first layer (``FaceDecoder.first_layer``). Terms with weight 0 are still
    reported (for monitoring) but computed without gradient and left out of 'total'.
    """
    if weights.decoder > 0 and decoder_first is None:
        raise ValueError("the face-decoder loss needs decoder_first=<a trained FaceDecoder's first layer>")
    if weights.distill > 0 and classifier is None:
        raise ValueError(
            "distillation needs the VGG-Face classifier (fc8); the dlib embedder has none: "
            "set distill=0, or pass classifier=<the VGG-Face model's classifier_logits>"
        )
    terms: dict[str, Callable[[], torch.Tensor]] = {
        "l1": lambda: l1_loss(pred, target),
        "l2norm": lambda: l2norm_loss(pred, target),
    }
    if classifier is not None:

        def distill() -> torch.Tensor:
            with torch.no_grad():  # the teacher is the fixed face network
                teacher_logits = classifier(target)
            return distill_loss(teacher_logits, classifier(pred), weights.temperature)

        terms["distill"] = distill
    if decoder_first is not None:

        def decoder() -> torch.Tensor:
            with torch.no_grad():
                target_first = decoder_first(target.float())
            return l1_loss(decoder_first(pred.float()), target_first)

        terms["decoder"] = decoder

    losses: dict[str, torch.Tensor] = {}
    total = pred.new_zeros((), dtype=torch.float32)
    for name, compute in terms.items():
        weight = getattr(weights, name)
        if weight > 0:
            losses[name] = compute()
            total = total + weight * losses[name]
        else:
            with torch.no_grad():
                losses[name] = compute()
    return {"total": total, **losses}
