"""Losses against hand-computed values, and their behaviour at the edges."""

import math

import pytest
import torch
import torch.nn.functional as F

from speech2face.losses import LossWeights, distill_loss, l1_loss, l2norm_loss, total_loss

PRED = torch.tensor([[1.0, 2.0], [0.0, -1.0]])
TARGET = torch.tensor([[2.0, 0.0], [4.0, 1.0]])


def test_l1_is_the_batch_mean_of_per_sample_sums():
    # sample 0: |2-1| + |0-2| = 3; sample 1: |4-0| + |1+1| = 6
    assert l1_loss(PRED, TARGET).item() == pytest.approx(4.5)


def test_l2norm_is_two_minus_twice_the_cosine():
    # ||a/|a| - b/|b| ||^2 = 2 - 2 cos(a, b); cosines: 2/(2*sqrt 5) = 1/sqrt 5 and -1/sqrt 17
    expected = ((2 - 2 / math.sqrt(5)) + (2 + 2 / math.sqrt(17))) / 2
    assert l2norm_loss(PRED, TARGET).item() == pytest.approx(expected, rel=1e-6)


def test_l2norm_has_no_nan_for_zero_vectors():
    pred = torch.zeros(2, 3, requires_grad=True)
    target = torch.tensor([[0.0, 3.0, 4.0], [0.0, 0.0, 0.0]])
    loss = l2norm_loss(pred, target)
    loss.backward()
    assert loss.item() == pytest.approx((1.0 + 0.0) / 2)  # unit target vs zero, then zero vs zero
    assert torch.isfinite(pred.grad).all()


def test_distill_hand_value():
    # T = 2: teacher [0, 0] -> [1/2, 1/2]; student [0, 2 ln 3] / 2 -> softmax [1/4, 3/4]
    teacher = torch.tensor([[0.0, 0.0]])
    student = torch.tensor([[0.0, 2 * math.log(3)]])
    expected = -(0.5 * math.log(0.25) + 0.5 * math.log(0.75))
    assert distill_loss(teacher, student, temperature=2.0).item() == pytest.approx(expected, rel=1e-6)


def test_distill_is_cross_entropy_of_tempered_softmaxes():
    torch.manual_seed(0)
    teacher, student = torch.randn(5, 2622) * 10, torch.randn(5, 2622) * 10  # large logits: needs log_softmax
    reference = F.cross_entropy(student.double() / 3.0, F.softmax(teacher.double() / 3.0, dim=1))
    assert distill_loss(teacher, student, temperature=3.0).item() == pytest.approx(reference.item(), rel=1e-5)


def make_classifier(dim=6, classes=4):
    torch.manual_seed(1)
    fc8 = torch.nn.Linear(dim, classes)
    return lambda feature: fc8(torch.relu(feature))


def test_total_is_the_weighted_sum_and_reports_every_term():
    torch.manual_seed(0)
    pred, target = torch.randn(3, 6, requires_grad=True), torch.randn(3, 6)
    classifier = make_classifier()
    weights = LossWeights(l1=2.0, l2norm=3.0, distill=0.5, temperature=2.0)
    losses = total_loss(pred, target, weights, classifier)
    assert set(losses) == {"total", "l1", "l2norm", "distill"}
    teacher, student = classifier(target), classifier(pred)
    expected = 2 * l1_loss(pred, target) + 3 * l2norm_loss(pred, target) + 0.5 * distill_loss(teacher, student, 2.0)
    assert losses["total"].item() == pytest.approx(expected.item(), rel=1e-6)

    seed_losses = total_loss(pred, target, LossWeights())  # the seed: L2norm only, no classifier
    assert set(seed_losses) == {"total", "l1", "l2norm"}
    assert seed_losses["total"].item() == pytest.approx(seed_losses["l2norm"].item())
    assert not seed_losses["l1"].requires_grad  # weight 0: reported, not trained on


def test_distillation_teacher_gets_no_gradient():
    pred = torch.randn(3, 6, requires_grad=True)
    target = torch.randn(3, 6, requires_grad=True)
    losses = total_loss(pred, target, LossWeights(l2norm=0.0, distill=1.0), make_classifier())
    losses["total"].backward()
    assert target.grad is None
    assert pred.grad is not None and pred.grad.abs().sum() > 0


def test_the_face_decoder_loss_is_l1_between_its_first_layers_and_trains_only_the_prediction():
    from speech2face.decoder import FaceDecoder

    torch.manual_seed(0)
    decoder = FaceDecoder(6, "tiny").requires_grad_(False)
    first = decoder.first_layer  # Linear(6, 1000) + ReLU of the normalised feature, frozen
    pred, target = torch.randn(3, 6, requires_grad=True), torch.randn(3, 6)
    losses = total_loss(pred, target, LossWeights(l2norm=0.0, decoder=2.0), decoder_first=first)
    expected = (first(target) - first(pred)).abs().sum(dim=1).mean()
    assert losses["decoder"].item() == pytest.approx(expected.item(), rel=1e-6)
    assert losses["total"].item() == pytest.approx(2 * expected.item(), rel=1e-6)
    losses["total"].backward()
    assert pred.grad.abs().sum() > 0 and decoder.first[0].weight.grad is None
    with pytest.raises(ValueError, match="decoder_first"):
        total_loss(pred, target, LossWeights(decoder=1.0))


def test_distillation_without_classifier_is_a_clear_error():
    with pytest.raises(ValueError, match="dlib embedder has none: set distill=0"):
        total_loss(PRED, TARGET, LossWeights(distill=200.0))


def test_bad_weights_and_shapes_are_refused():
    with pytest.raises(ValueError, match="all loss weights are 0"):
        LossWeights(l2norm=0.0)
    with pytest.raises(ValueError, match=">= 0"):
        LossWeights(l1=-1.0)
    with pytest.raises(ValueError, match="temperature"):
        LossWeights(temperature=0.0)
    with pytest.raises(ValueError, match="out_dim matches"):
        l2norm_loss(torch.zeros(2, 128), torch.zeros(2, 4096))
