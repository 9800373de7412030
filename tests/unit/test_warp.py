"""The thin-plate-spline warp: exact at its points, identity when nothing moves, and differentiable."""

import pytest
import torch

from speech2face.warp import border_points, warp


def dot_image(size: int, x: int, y: int) -> torch.Tensor:
    image = torch.zeros(1, 1, size, size, dtype=torch.float64)
    image[0, 0, y - 1 : y + 2, x - 1 : x + 2] = 1.0
    return image


def test_the_same_points_give_the_image_back():
    images = torch.rand(2, 3, 24, 20, dtype=torch.float64)
    points = torch.rand(2, 7, 2, dtype=torch.float64) * torch.tensor([19.0, 23.0], dtype=torch.float64)
    torch.testing.assert_close(warp(images, points, points), images, atol=1e-6, rtol=0)


@pytest.mark.parametrize(("flow_size", "least"), [(None, 0.999), (16, 0.95)])
def test_a_moved_dot_lands_on_its_target(flow_size, least):
    image = dot_image(32, x=10, y=12)
    anchors = torch.tensor([[6.0, 25.0], [25.0, 6.0], [26.0, 26.0]], dtype=torch.float64)
    source = torch.cat([torch.tensor([[10.0, 12.0]], dtype=torch.float64), anchors])[None]
    target = torch.cat([torch.tensor([[20.0, 17.0]], dtype=torch.float64), anchors])[None]
    moved = warp(image, source, target, flow_size=flow_size)
    assert moved[0, 0, 17, 20] > least  # the output pixel at the target reads the dot's centre
    assert moved[0, 0, 12, 10] < 0.05  # nothing left where it was
    assert torch.allclose(moved.sum(), image.sum(), rtol=0.3)  # moved, not smeared away


def test_border_points_sit_on_the_frame():
    points = border_points(10, 20, per_side=3)
    assert points.shape == (12, 2)
    on_edge = (points[:, 0] == 0) | (points[:, 0] == 19) | (points[:, 1] == 0) | (points[:, 1] == 9)
    assert on_edge.all() and len({tuple(p) for p in points.tolist()}) == 12


def test_gradients_reach_the_image_and_both_point_sets():
    torch.manual_seed(0)
    image = torch.rand(1, 1, 6, 6, dtype=torch.float64, requires_grad=True)
    source = (torch.rand(1, 3, 2, dtype=torch.float64) * 3 + 1).requires_grad_()
    target = (torch.rand(1, 3, 2, dtype=torch.float64) * 3 + 1).requires_grad_()
    assert torch.autograd.gradcheck(lambda i, s, t: warp(i, s, t, border_per_side=2), (image, source, target))


def test_coincident_points_stay_solvable_and_shapes_are_checked():
    image = torch.rand(1, 3, 16, 16)
    points = torch.tensor([[[5.0, 9.0], [5.0, 9.0], [10.0, 4.0]]])  # a closed mouth's inner lips coincide
    assert torch.isfinite(warp(image, points, points)).all()
    with pytest.raises(ValueError, match="source and target"):
        warp(image, points, points[:, :2])
