"""A differentiable thin-plate-spline image warp (Cole et al.'s render step), in torch.

``warp(images, source, target)`` moves the image content at each ``source`` point to its ``target``
point and bends everything between smoothly; points pinned on the image border keep the frame still.
The spline is solved with ``torch.linalg.solve`` and the image resampled with ``F.grid_sample``, so
gradients reach the images and both point sets.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

BORDER_POINTS_PER_SIDE = 4
# Added to the kernel's diagonal: dlib's integer landmarks can coincide (a closed mouth's inner lips),
# which makes the exact system singular; this little smoothing keeps it solvable.
REGULARISATION = 1e-6


def border_points(height: int, width: int, per_side: int = BORDER_POINTS_PER_SIDE) -> torch.Tensor:
    """(4 * per_side, 2) fixed (x, y) pixel points around the image edge, corners included."""
    if per_side < 1:
        raise ValueError(f"per_side must be >= 1, got {per_side}")
    steps = torch.linspace(0, 1, per_side + 1)[:-1]
    right, bottom = width - 1, height - 1
    top = torch.stack([steps * right, torch.zeros_like(steps)], dim=1)
    side_right = torch.stack([torch.full_like(steps, right), steps * bottom], dim=1)
    base = torch.stack([right - steps * right, torch.full_like(steps, bottom)], dim=1)
    side_left = torch.stack([torch.zeros_like(steps), bottom - steps * bottom], dim=1)
    return torch.cat([top, side_right, base, side_left])


def _radial(squared_distance: torch.Tensor) -> torch.Tensor:
    # U(r) = r^2 log r = 0.5 * d log d with d = r^2; U(0) = 0 (the clamp keeps the gradient finite there)
    return 0.5 * squared_distance * torch.log(squared_distance.clamp_min(1e-12))


def _squared_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return ((a[:, :, None, :] - b[:, None, :, :]) ** 2).sum(-1)


def fit_spline(centres: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Coefficients (N, K + 3, 2) of the thin-plate spline through ``values`` (N, K, 2) at ``centres`` (N, K, 2).

    Use coordinates of order 1 (``warp`` fits in units of the image size): pixels make it ill-conditioned.
    """
    batch, count, _ = centres.shape
    kernel = _radial(_squared_distances(centres, centres))
    affine = torch.cat([torch.ones_like(centres[..., :1]), centres], dim=-1)  # (N, K, 3)
    system = torch.zeros(batch, count + 3, count + 3, dtype=centres.dtype, device=centres.device)
    system[:, :count, :count] = kernel + REGULARISATION * torch.eye(count, dtype=centres.dtype, device=centres.device)
    system[:, :count, count:] = affine
    system[:, count:, :count] = affine.transpose(1, 2)
    rhs = torch.cat([values, torch.zeros(batch, 3, 2, dtype=values.dtype, device=values.device)], dim=1)
    return torch.linalg.solve(system, rhs)


def evaluate_spline(coefficients: torch.Tensor, centres: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """The spline fitted by ``fit_spline`` at ``points`` (N, P, 2) -> (N, P, 2)."""
    count = centres.shape[1]
    kernel = _radial(_squared_distances(points, centres))
    affine = torch.cat([torch.ones_like(points[..., :1]), points], dim=-1)
    return kernel @ coefficients[:, :count] + affine @ coefficients[:, count:]


def _pixel_grid(height: int, width: int, like: torch.Tensor) -> torch.Tensor:
    ys, xs = torch.meshgrid(torch.arange(height, dtype=like.dtype, device=like.device),
                            torch.arange(width, dtype=like.dtype, device=like.device), indexing="ij")  # fmt: skip
    return torch.stack([xs, ys], dim=-1).reshape(1, height * width, 2)


def warp(
    images: torch.Tensor,
    source: torch.Tensor,
    target: torch.Tensor,
    border_per_side: int = BORDER_POINTS_PER_SIDE,
    flow_size: int | None = None,
) -> torch.Tensor:
    """``images`` (N, C, H, W) warped so that the content at ``source`` (N, K, 2) lands on ``target`` (N, K, 2).

    Points are (x, y) in pixels of ``images``. Sampling is backward: each output pixel p reads the
    input at f(p), the spline that takes ``target`` to ``source``. ``flow_size``: evaluate the spline
    on a flow_size x flow_size grid and upsample the sampling field bilinearly (much cheaper; the
    field is smooth), else on every pixel.
    """
    if images.ndim != 4:
        raise ValueError(f"images must be (N, C, H, W), got shape {tuple(images.shape)}")
    if source.shape != target.shape or source.ndim != 3 or source.shape[-1] != 2 or len(source) != len(images):
        raise ValueError(f"source and target must both be (N, K, 2) with N={len(images)}, "
                         f"got {tuple(source.shape)} and {tuple(target.shape)}")  # fmt: skip
    height, width = images.shape[-2:]
    precision = torch.float64 if source.dtype == torch.float64 else torch.float32  # never the spline in bf16
    with torch.autocast(images.device.type, enabled=False):
        sample_at = _sampling_field(source.to(precision), target.to(precision), height, width, border_per_side,
                                    flow_size)  # fmt: skip
    # image units -> grid_sample's [-1, 1], where -1 and 1 are the centres of the edge pixels
    normalised = sample_at * 2 - 1
    return F.grid_sample(images, normalised.to(images.dtype), mode="bilinear", padding_mode="border",
                         align_corners=True)  # fmt: skip


def _sampling_field(source, target, height, width, border_per_side, flow_size) -> torch.Tensor:
    """Where each output pixel samples the input, (N, H, W, 2) in image units."""
    batch = len(source)
    unit = torch.tensor([width - 1, height - 1]).to(source)  # fit in image units: a well-conditioned system
    pinned = border_points(height, width, border_per_side).to(source)[None].expand(batch, -1, -1)
    centres, values = torch.cat([target, pinned], dim=1) / unit, torch.cat([source, pinned], dim=1) / unit
    coefficients = fit_spline(centres, values)
    grid_height, grid_width = (height, width) if flow_size is None else (flow_size, flow_size)
    grid = _pixel_grid(grid_height, grid_width, source) / torch.tensor([grid_width - 1, grid_height - 1]).to(source)
    sample_at = evaluate_spline(coefficients, centres, grid.expand(batch, -1, -1)).reshape(batch, grid_height,
                                                                                            grid_width, 2)  # fmt: skip
    if flow_size is not None:
        sample_at = F.interpolate(sample_at.permute(0, 3, 1, 2), size=(height, width), mode="bilinear",
                                  align_corners=True).permute(0, 2, 3, 1)  # fmt: skip
    return sample_at
