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
transforms are vectorised over planes, so the cost per cutout is a few array passes. The tables
are built once per batch and sampled for every target grid (`reproject_planes_to_grids`: each
survey's native grid and the early-fusion grid in ``mantis build``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mantis.stack._grids import TanProjection, pixel_to_sky, sky_to_pixel, stack_projections
from mantis.stack._units import Plane

__all__ = ["Reprojected", "footprint_corners", "reproject_planes", "reproject_planes_to_grids"]

# working memory of one batch (tables, sample points, samples; float64): about 48 PS1 cutouts
# onto its native grid, hundreds of GALEX or unWISE ones, so few calls and thread wake-ups
_BATCH_BYTES = 128 * 2**20


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

    The TAN-to-TAN mapping is exact at a 5 x 5 lattice of control points and a quadratic in
    the output pixel coordinates in between: over a cutout its third-order terms are below
    1e-6 pixel, and evaluating a quadratic is a matrix product rather than trigonometry at
    every corner.

    Returns
    -------
    x, y : ndarray
        ``(N, H + 1, W + 1)``; corner ``[n, i, j]`` is the lower-left corner of output pixel
        ``(i, j)`` of pair ``n``.
    """
    height, width = shape
    n_pairs = len(targets)
    half = np.array([width + 1.0, height + 1.0]) / 2.0  # maps corner coordinates into [-1, 1]

    def basis(cx: np.ndarray, cy: np.ndarray) -> np.ndarray:
        u = (cx + 0.5) / half[0] - 1.0
        v = (cy + 0.5) / half[1] - 1.0
        return np.stack([np.ones_like(u), u, v, u * u, u * v, v * v], axis=-1)

    lattice_x, lattice_y = np.meshgrid(
        np.linspace(-0.5, width + 0.5, 5), np.linspace(-0.5, height + 0.5, 5)
    )
    lattice_x, lattice_y = lattice_x.ravel(), lattice_y.ravel()
    ra, dec = pixel_to_sky(
        stack_projections(list(targets)),
        np.broadcast_to(lattice_x, (n_pairs, lattice_x.size)),
        np.broadcast_to(lattice_y, (n_pairs, lattice_y.size)),
    )
    sx, sy = sky_to_pixel(stack_projections(list(sources)), ra, dec)
    fit = np.linalg.pinv(basis(lattice_x, lattice_y))  # (6, 25), the same for every pair
    # the corners form a regular lattice, so the quadratic separates into row and column
    # terms plus one cross term: a few broadcast passes instead of a (pairs x corners) product
    u = basis(np.arange(width + 1) - 0.5, np.zeros(width + 1))[:, 1]
    v = basis(np.zeros(height + 1), np.arange(height + 1) - 0.5)[:, 2]

    def evaluate(values: np.ndarray) -> np.ndarray:
        c = (values @ fit.T)[:, :, None, None]  # (N, 6, 1, 1)
        out = c[:, 0] + c[:, 1] * u + c[:, 3] * (u * u)  # (N, 1, W + 1)
        out = out + (c[:, 2] * v[:, None] + c[:, 5] * (v * v)[:, None])  # (N, H + 1, W + 1)
        out += c[:, 4] * np.outer(v, u)
        return out

    return evaluate(sx), evaluate(sy)


@dataclass
class _SummedAreaTables:
    """Running two-dimensional sums of a batch of planes, shared by every target grid.

    Channels: flux, then validity only when some plane has invalid pixels (for the others the
    covered fraction follows from the plane's bounds), then variance when some plane has it.
    """

    table: np.ndarray  # (N, C, H + 1, W + 1) float64
    valid_channel: int | None
    variance_channel: int | None
    plane_shapes: np.ndarray  # (N, 2) each plane's own (H, W) before padding
    has_ivar: np.ndarray  # (N,) bool


def _summed_area_tables(planes: Sequence[Plane]) -> _SummedAreaTables:
    height = max(p.shape[0] for p in planes)
    width = max(p.shape[1] for p in planes)
    has_ivar = np.array([p.ivar is not None for p in planes])
    with_valid = not all(p.valid.all() for p in planes)
    n_channels = 1 + int(with_valid) + int(has_ivar.any())
    valid_channel = 1 if with_valid else None
    variance_channel = n_channels - 1 if has_ivar.any() else None
    # padding beyond a plane's own size holds no flux and counts as invalid
    table = np.zeros((len(planes), n_channels, height + 1, width + 1))
    density = table[:, :, 1:, 1:]
    if len({p.shape for p in planes}) == 1:  # the usual case: one copy per channel
        density[:, 0] = np.stack([p.flux for p in planes])
        if valid_channel is not None:
            density[:, valid_channel] = np.stack([p.valid for p in planes])
    else:
        for n, plane in enumerate(planes):
            h, w = plane.shape
            density[n, 0, :h, :w] = plane.flux
            if valid_channel is not None:
                density[n, valid_channel, :h, :w] = plane.valid
    for n, plane in enumerate(planes):
        if plane.ivar is not None:
            h, w = plane.shape
            good = plane.valid & (plane.ivar > 0)
            np.divide(1.0, plane.ivar, out=density[n, variance_channel, :h, :w], where=good)
    # in place; the zero first row and column make node (k, l) the sum of the pixels below it
    np.cumsum(density, axis=2, out=density)
    np.cumsum(density, axis=3, out=density)
    return _SummedAreaTables(
        table, valid_channel, variance_channel, np.array([p.shape for p in planes]), has_ivar
    )


def _integrate(
    tables: _SummedAreaTables,
    sources: Sequence[TanProjection],
    targets: Sequence[TanProjection],
    shape: tuple[int, int],
    min_valid_fraction: float,
) -> Reprojected:
    """Sample the tables over every output pixel's footprint on one set of target grids."""
    import torch

    table = tables.table
    t_height, t_width = table.shape[-2] - 1, table.shape[-1] - 1
    n_planes, n_channels = table.shape[:2]
    cx, cy = footprint_corners(sources, targets, shape)
    # rectangles through the midpoints of the footprints' sides: left/right edges at x_edge
    # (N, H, W + 1), bottom/top edges at y_edge (N, H + 1, W)
    x_edge = 0.5 * (cx[:, :-1, :] + cx[:, 1:, :])
    y_edge = 0.5 * (cy[:, :, :-1] + cy[:, :, 1:])
    # footprint areas vary by < 1e-5 over a cutout, so each pair's central pixel stands for all
    i, j = shape[0] // 2, shape[1] // 2
    rect_area = (x_edge[:, i, j + 1] - x_edge[:, i, j]) * (y_edge[:, i + 1, j] - y_edge[:, i, j])
    corners_x = np.stack([cx[:, i, j], cx[:, i, j + 1], cx[:, i + 1, j + 1], cx[:, i + 1, j]])
    corners_y = np.stack([cy[:, i, j], cy[:, i, j + 1], cy[:, i + 1, j + 1], cy[:, i + 1, j]])
    quad_area = 0.5 * np.abs(
        (
            corners_x * np.roll(corners_y, -1, axis=0) - np.roll(corners_x, -1, axis=0) * corners_y
        ).sum(axis=0)
    )
    rect_area, quad_area = rect_area[:, None, None], quad_area[:, None, None]
    # summed-area node k sits at pixel coordinate k - 0.5; normalise for align_corners=True;
    # the four corners of every rectangle, (bottom, top) x (left, right)
    x_norm = (x_edge + 0.5) * (2.0 / t_width) - 1.0
    y_norm = (y_edge + 0.5) * (2.0 / t_height) - 1.0
    points = np.empty((n_planes, 2, 2, *shape, 2))
    points[:, :, 0, :, :, 0] = x_norm[:, None, :, :-1]
    points[:, :, 1, :, :, 0] = x_norm[:, None, :, 1:]
    points[:, 0, :, :, :, 1] = y_norm[:, None, :-1, :]
    points[:, 1, :, :, :, 1] = y_norm[:, None, 1:, :]
    # torch only for the sampling: its thread pool does not interleave with numpy work
    sampled = torch.nn.functional.grid_sample(
        torch.from_numpy(table),
        torch.from_numpy(points.reshape(n_planes, 4, -1, 2)),
        mode="bilinear",
        padding_mode="border",  # clamping the running sum = zero outside the plane
        align_corners=True,
    ).numpy()
    integral = sampled[:, :, 3] - sampled[:, :, 2]
    integral -= sampled[:, :, 1]
    integral += sampled[:, :, 0]
    integral = integral.reshape(n_planes, n_channels, *shape)
    if tables.valid_channel is not None:
        covered = integral[:, tables.valid_channel]
    else:  # every pixel of every plane is valid: the overlap with the plane's own bounds
        left, right = x_edge[:, :, :-1], x_edge[:, :, 1:]
        bottom, top = y_edge[:, :-1, :], y_edge[:, 1:, :]
        limits = tables.plane_shapes - 0.5  # (N, 2): top and right bounds
        inside = (
            min(left.min(), bottom.min()) >= -0.5
            and (right.max(axis=(1, 2)) <= limits[:, 1]).all()
            and (top.max(axis=(1, 2)) <= limits[:, 0]).all()
        )
        if not inside:  # clipping is only needed where a grid overhangs its plane
            high_x, high_y = limits[:, 1, None, None], limits[:, 0, None, None]
            left, right = np.clip(left, -0.5, high_x), np.clip(right, -0.5, high_x)
            bottom, top = np.clip(bottom, -0.5, high_y), np.clip(top, -0.5, high_y)
        covered = (right - left) * (top - bottom)
    with np.errstate(divide="ignore", invalid="ignore"):
        fraction = covered / rect_area
        valid = fraction >= min_valid_fraction  # False for NaN
        flux = np.multiply(integral[:, 0], quad_area / rect_area, dtype=np.float32)
        flux[~valid] = 0.0
        # sum of (weight x variance) for weights <= 1; exact when an output pixel lies within
        # one input pixel (weight = area ratio) or covers whole input pixels (weight = 1)
        ivar = np.zeros(flux.shape, dtype=np.float32)
        if tables.variance_channel is not None:
            variance = integral[:, tables.variance_channel] * (
                quad_area * np.minimum(quad_area, 1.0) / rect_area
            )
            known = valid & tables.has_ivar[:, None, None] & (variance > 0)
            ivar[known] = 1.0 / variance[known]
    return Reprojected(flux, valid, ivar)


def _batch_groups(planes: Sequence[Plane], output_pixels: int) -> list[list[int]]:
    """Group plane indices into batches alike in validity and variance, within `_BATCH_BYTES`.

    Alike planes need the same summed-area channels, so a single plane with a masked edge
    does not make every plane of its batch carry a validity channel. ``output_pixels`` is the
    largest target grid's pixel count.
    """
    groups: dict[tuple[bool, bool], list[int]] = {}
    for k, plane in enumerate(planes):
        groups.setdefault((bool(plane.valid.all()), plane.ivar is not None), []).append(k)
    batches = []
    for (all_valid, has_ivar), members in groups.items():
        n_channels = 1 + (not all_valid) + has_ivar
        height = max(planes[k].shape[0] for k in members)
        width = max(planes[k].shape[1] for k in members)
        # per plane: its table, 4 corner points (x, y) and 4 samples per channel per pixel
        per_plane = 8 * (
            n_channels * (height + 1) * (width + 1) + output_pixels * 4 * (2 + n_channels)
        )
        size = max(1, _BATCH_BYTES // per_plane)
        batches += [members[start : start + size] for start in range(0, len(members), size)]
    return batches


def reproject_planes_to_grids(
    planes: Sequence[Plane],
    grids: Sequence[tuple[Sequence[TanProjection], tuple[int, int]]],
    *,
    min_valid_fraction: float = 0.999,
) -> list[Reprojected]:
    """Reproject each plane onto several sets of target grids, sharing the per-plane work.

    The summed-area tables of the planes are built once and sampled for every set (for
    example each survey's native grid and the early-fusion grid).

    Parameters
    ----------
    planes : sequence of Plane
        Input images (any sizes; they are padded to a common size internally).
    grids : sequence of (targets, shape)
        Per set, one target `TanProjection` per plane and the output ``(H, W)``.
    min_valid_fraction : float
        An output pixel is valid when at least this fraction of its area is covered by valid
        input pixels.

    Returns
    -------
    list of Reprojected
        One per set, arrays of shape ``(len(planes), H, W)``.
    """
    if not grids:
        return []
    for targets, _ in grids:
        if len(targets) != len(planes):
            raise ValueError(f"got {len(planes)} planes but {len(targets)} target projections")
    outputs = [
        Reprojected(
            np.zeros((len(planes), *shape), dtype=np.float32),
            np.zeros((len(planes), *shape), dtype=bool),
            np.zeros((len(planes), *shape), dtype=np.float32),
        )
        for _, shape in grids
    ]
    for members in _batch_groups(planes, max(shape[0] * shape[1] for _, shape in grids)):
        batch = [planes[k] for k in members]
        tables = _summed_area_tables(batch)
        sources = [plane.projection for plane in batch]
        for (targets, shape), out in zip(grids, outputs, strict=True):
            part = _integrate(
                tables, sources, [targets[k] for k in members], shape, min_valid_fraction
            )
            out.image[members], out.valid[members], out.ivar[members] = (
                part.image,
                part.valid,
                part.ivar,
            )
    return outputs


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
    return reproject_planes_to_grids(
        planes, [(targets, shape)], min_valid_fraction=min_valid_fraction
    )[0]
