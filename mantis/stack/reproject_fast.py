"""Fast batched flux-conserving reprojection.

Each plane is treated as piecewise constant (flux spread evenly over each input pixel), which
is what the `reproject.reproject_exact` reference assumes. The flux an output pixel receives is
then the integral of that surface over the pixel's footprint in the input frame. The integral
over an axis-aligned rectangle is exact from four samples of the running two-dimensional sum
(the summed-area table, bilinear between its nodes); every output pixel's footprint is mapped
exactly through both TAN projections and replaced by the rectangle through the midpoints of
its sides, rescaled to the footprint's true area. The only approximation is that straightening,
whose error is second order in the (here sub-degree to few-degree) rotation between frames.

All planes of a batch go through one `torch.nn.functional.grid_sample` call, and the sky
transforms are vectorised over planes, so the cost per cutout is a few array passes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mantis.stack.grids import TanProjection, pixel_to_sky, sky_to_pixel, stack_projections
from mantis.stack.units import Plane

__all__ = ["Reprojected", "footprint_corners", "reproject_planes"]

_MAX_PLANES_PER_CALL = 48  # bounds the summed-area tables' memory (float64, 3 channels)


@dataclass
class Reprojected:
    """Planes on their target grids.

    Attributes
    ----------
    image : ndarray
        ``(N, H, W)`` float32, AB nanomaggies per pixel, 0 where not valid.
    valid : ndarray
        ``(N, H, W)`` bool.
    ivar : ndarray
        ``(N, H, W)`` float32 inverse variance, 0 where unknown or not valid.
    """

    image: np.ndarray
    valid: np.ndarray
    ivar: np.ndarray


def footprint_corners(
    sources: Sequence[TanProjection], targets: Sequence[TanProjection], shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Input-frame 0-based pixel coordinates of every output pixel corner.

    Returns
    -------
    x, y : ndarray
        ``(N, H + 1, W + 1)``; corner ``[n, i, j]`` is the lower-left corner of output pixel
        ``(i, j)`` of pair ``n``.
    """
    height, width = shape
    n_pairs = len(targets)
    cx = np.broadcast_to(np.arange(width + 1) - 0.5, (n_pairs, height + 1, width + 1))
    cy = np.broadcast_to((np.arange(height + 1) - 0.5)[:, None], (n_pairs, height + 1, width + 1))
    ra, dec = pixel_to_sky(stack_projections(list(targets)), cx, cy)
    return sky_to_pixel(stack_projections(list(sources)), ra, dec)


def _summed_area_tables(planes: Sequence[Plane]) -> tuple[np.ndarray, np.ndarray]:
    height = max(p.shape[0] for p in planes)
    width = max(p.shape[1] for p in planes)
    # channels: flux, valid, variance; padding beyond a plane's own size is invalid
    density = np.zeros((len(planes), 3, height, width))
    has_ivar = np.zeros(len(planes), dtype=bool)
    for n, plane in enumerate(planes):
        h, w = plane.shape
        density[n, 0, :h, :w] = plane.flux
        density[n, 1, :h, :w] = plane.valid
        if plane.ivar is not None:
            has_ivar[n] = True
            good = plane.valid & (plane.ivar > 0)
            density[n, 2, :h, :w][good] = 1.0 / plane.ivar[good]
    table = np.zeros((len(planes), 3, height + 1, width + 1))
    table[:, :, 1:, 1:] = density.cumsum(axis=2).cumsum(axis=3)
    return table, has_ivar


def _reproject_batch(
    planes: Sequence[Plane],
    targets: Sequence[TanProjection],
    shape: tuple[int, int],
    min_valid_fraction: float,
) -> Reprojected:
    import torch

    table, has_ivar = _summed_area_tables(planes)
    t_height, t_width = table.shape[-2] - 1, table.shape[-1] - 1
    cx, cy = footprint_corners([p.projection for p in planes], targets, shape)
    # rectangle through the midpoints of the footprint's sides
    x0 = 0.5 * (cx[:, :-1, :-1] + cx[:, 1:, :-1])
    x1 = 0.5 * (cx[:, :-1, 1:] + cx[:, 1:, 1:])
    y0 = 0.5 * (cy[:, :-1, :-1] + cy[:, :-1, 1:])
    y1 = 0.5 * (cy[:, 1:, :-1] + cy[:, 1:, 1:])
    rect_area = (x1 - x0) * (y1 - y0)  # signed: frames may be mirrored
    # shoelace over corners (i, j), (i, j+1), (i+1, j+1), (i+1, j)
    quad = [
        (cx[:, :-1, :-1], cy[:, :-1, :-1]),
        (cx[:, :-1, 1:], cy[:, :-1, 1:]),
        (cx[:, 1:, 1:], cy[:, 1:, 1:]),
        (cx[:, 1:, :-1], cy[:, 1:, :-1]),
    ]
    quad_area = 0.5 * np.abs(
        sum(quad[k][0] * quad[(k + 1) % 4][1] - quad[(k + 1) % 4][0] * quad[k][1] for k in range(4))
    )
    # summed-area node k sits at pixel coordinate k - 0.5; normalise for align_corners=True
    gx = [2.0 * (x + 0.5) / t_width - 1.0 for x in (x0, x1)]
    gy = [2.0 * (y + 0.5) / t_height - 1.0 for y in (y0, y1)]
    n_planes = len(planes)
    points = np.stack(
        [
            np.stack([gx[0], gy[0]], axis=-1),
            np.stack([gx[1], gy[0]], axis=-1),
            np.stack([gx[0], gy[1]], axis=-1),
            np.stack([gx[1], gy[1]], axis=-1),
        ],
        axis=1,
    ).reshape(n_planes, 4, -1, 2)
    sampled = torch.nn.functional.grid_sample(
        torch.from_numpy(table),
        torch.from_numpy(np.ascontiguousarray(points)),
        mode="bilinear",
        padding_mode="border",  # clamping the running sum = zero outside the plane
        align_corners=True,
    ).numpy()
    integral = sampled[:, :, 3] - sampled[:, :, 2] - sampled[:, :, 1] + sampled[:, :, 0]
    integral = integral.reshape(n_planes, 3, *shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_density = integral / rect_area[:, None]
        fraction = mean_density[:, 1]
        valid = np.isfinite(fraction) & (fraction >= min_valid_fraction)
        flux = mean_density[:, 0] * quad_area
        # sum of (weight x variance) for weights <= 1; exact when an output pixel lies within
        # one input pixel (weight = area ratio) or covers whole input pixels (weight = 1)
        variance = mean_density[:, 2] * quad_area * np.minimum(quad_area, 1.0)
        ivar = np.where(valid & has_ivar[:, None, None] & (variance > 0), 1.0 / variance, 0.0)
    return Reprojected(
        np.where(valid, flux, 0.0).astype(np.float32), valid, ivar.astype(np.float32)
    )


def reproject_planes(
    planes: Sequence[Plane],
    targets: Sequence[TanProjection],
    shape: tuple[int, int],
    *,
    min_valid_fraction: float = 0.999,
) -> Reprojected:
    """Reproject each plane onto its target grid, conserving flux.

    Parameters
    ----------
    planes : sequence of Plane
        Input images (any sizes; they are padded to a common size internally).
    targets : sequence of TanProjection
        One target projection per plane (usually `object_projection` of its object).
    shape : tuple of int
        Output ``(H, W)``, the same for every plane.
    min_valid_fraction : float
        An output pixel is valid when at least this fraction of its area is covered by valid
        input pixels.

    Returns
    -------
    Reprojected
        Arrays of shape ``(len(planes), H, W)``.
    """
    if len(planes) != len(targets):
        raise ValueError(f"got {len(planes)} planes but {len(targets)} target projections")
    if not planes:
        empty = np.zeros((0, *shape), dtype=np.float32)
        return Reprojected(empty, empty.astype(bool), empty)
    parts = [
        _reproject_batch(
            planes[start : start + _MAX_PLANES_PER_CALL],
            targets[start : start + _MAX_PLANES_PER_CALL],
            shape,
            min_valid_fraction,
        )
        for start in range(0, len(planes), _MAX_PLANES_PER_CALL)
    ]
    return Reprojected(
        np.concatenate([p.image for p in parts]),
        np.concatenate([p.valid for p in parts]),
        np.concatenate([p.ivar for p in parts]),
    )
