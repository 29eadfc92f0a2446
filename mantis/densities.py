"""The maths of binned redshift densities: the one place every stage takes it from.

A density is an ``(n_objects, n_z)`` array of probability *per bin* on a `ZGrid` (each row sums
to one), read as piecewise constant inside each bin, so the CDF is linear between bin edges.
This is qp's ``hist`` parameterisation (`to_qp` / `from_qp` convert); evaluation, prediction,
priors and the models all take CDFs, quantiles, moments, intervals, odds and PITs from here.

Functions work on chunks of rows at a time, so a float32 array of 10⁶ densities is never
copied whole to float64.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mantis.exceptions import DensityError
from mantis.zgrid import ZGrid

__all__ = [
    "ODDS_HALF_WIDTH",
    "DensityError",
    "cdf_at_edges",
    "central_interval",
    "check_probs",
    "check_redshifts",
    "from_qp",
    "hpd_interval",
    "hpd_level",
    "mean",
    "median",
    "mode",
    "normalise",
    "odds",
    "pit_at",
    "quantiles",
    "rebin",
    "std",
    "to_qp",
]

ODDS_HALF_WIDTH = 0.06
"""Odds = probability within ``z_mode ± ODDS_HALF_WIDTH·(1 + z_mode)`` (the BPZ-style odds)."""

# Row sums further than this from one mean the input is not a per-bin density.
_ROW_SUM_TOLERANCE = 1e-3
_CHUNK_ROWS = 8192  # 8192 x 400 float64 = 26 MB working set per array


def check_probs(probs: np.ndarray, zgrid: ZGrid, *, name: str = "probs") -> np.ndarray:
    """Return ``probs`` as a 2-D float array after checking it is a per-bin density on ``zgrid``.

    Float32 input stays float32 (no copy) so that large ensembles fit in memory.

    Raises
    ------
    DensityError
        If the shape does not match the grid, values are negative or not finite, or rows do
        not sum to one.
    """
    arr = np.asarray(probs)
    if arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float64)
    if arr.ndim != 2 or arr.shape[1] != zgrid.n_bins:
        raise DensityError(
            f"{name} must have shape (n_objects, {zgrid.n_bins}) for the grid {zgrid.to_dict()}, "
            f"got {arr.shape}"
        )
    if arr.shape[0] == 0:
        raise DensityError(f"{name} holds no objects; at least one is needed")
    # Checked on a strided sample for speed; a full pass would double the cost of scoring 1e6 rows.
    sample = arr[:: max(1, arr.shape[0] // 4096)]
    if not np.isfinite(sample).all() or (sample < 0).any():
        raise DensityError(f"{name} holds negative or non-finite probabilities")
    sums = sample.sum(axis=1, dtype=np.float64)
    worst = float(np.max(np.abs(sums - 1.0)))
    if worst > _ROW_SUM_TOLERANCE:
        raise DensityError(
            f"{name} rows must be per-bin probabilities summing to one; a row sums to "
            f"{sums[np.argmax(np.abs(sums - 1.0))]:.6g} (normalise with mantis.densities.normalise)"
        )
    return arr


def check_redshifts(z: np.ndarray, n: int | None = None, *, name: str = "z_spec") -> np.ndarray:
    """Return ``z`` as a 1-D float64 array of finite redshifts of length ``n``.

    Raises
    ------
    DensityError
        If the length differs from ``n`` or any value is NaN, infinite or below -1.
    """
    arr = np.asarray(z, dtype=np.float64).ravel()
    if n is not None and arr.shape[0] != n:
        raise DensityError(f"{name} has {arr.shape[0]} values but there are {n} objects")
    bad = ~np.isfinite(arr) | (arr <= -1.0)
    if bad.any():
        first = np.flatnonzero(bad)[:5].tolist()
        raise DensityError(
            f"{name} must be finite redshifts > -1; {int(bad.sum())} are not (rows {first}); "
            "drop objects without a spectroscopic redshift first"
        )
    return arr


def _chunks(probs: np.ndarray):
    for start in range(0, probs.shape[0], _CHUNK_ROWS):
        yield start, np.asarray(probs[start : start + _CHUNK_ROWS], dtype=np.float64)


def normalise(weights: np.ndarray) -> np.ndarray:
    """Rescale rows of non-negative weights so that each sums to one (float64).

    Raises
    ------
    DensityError
        If a row is zero everywhere, or a weight is negative or not finite.
    """
    weights = np.asarray(weights, dtype=np.float64)
    if not np.isfinite(weights).all() or (weights < 0).any():
        raise DensityError("density weights must be finite and non-negative")
    total = weights.sum(axis=-1, keepdims=True)
    if np.any(total <= 0):
        raise DensityError("cannot normalise a density that is zero everywhere")
    return weights / total


def cdf_at_edges(probs: np.ndarray) -> np.ndarray:
    """CDF of each density at the ``n_z + 1`` bin edges (0 at the first edge), float64."""
    probs = np.asarray(probs, dtype=np.float64)
    cdf = np.zeros((*probs.shape[:-1], probs.shape[-1] + 1))
    np.cumsum(probs, axis=-1, out=cdf[..., 1:])
    return cdf


def _pit_chunk(probs: np.ndarray, right: np.ndarray, zgrid: ZGrid, z: np.ndarray) -> np.ndarray:
    """F(z) of float64 rows whose cumulative sums are ``right``; 0 below, 1 above the grid."""
    rows = np.arange(probs.shape[0])
    width = zgrid.width
    k = np.clip(np.floor((z - zgrid.z_min) / width).astype(np.int64), 0, zgrid.n_bins - 1)
    offset = np.clip(z - zgrid.edges[k], 0.0, width)
    p_k = probs[rows, k]
    left_k = right[rows, k] - p_k
    pit = np.clip(left_k + p_k * offset / width, 0.0, 1.0)
    # Exact 0 and 1 outside the grid (a cumulative sum can end a rounding error short of one).
    return np.where(z < zgrid.z_min, 0.0, np.where(z >= zgrid.z_max, 1.0, pit))


def pit_at(probs: np.ndarray, zgrid: ZGrid, z: np.ndarray) -> np.ndarray:
    """CDF of each density at one redshift per row (the PIT when ``z`` is the truth).

    Parameters
    ----------
    probs : ndarray, shape (n, n_z)
        Per-bin probabilities on ``zgrid``.
    zgrid : ZGrid
        The grid.
    z : ndarray, shape (n,) or float
        Where to evaluate; 0 below and 1 above the grid.

    Returns
    -------
    ndarray, shape (n,)
    """
    probs = check_probs(probs, zgrid)
    z = np.broadcast_to(np.asarray(z, dtype=np.float64), (probs.shape[0],))
    out = np.empty(probs.shape[0])
    for start, chunk in _chunks(probs):
        stop = start + chunk.shape[0]
        out[start:stop] = _pit_chunk(chunk, np.cumsum(chunk, axis=1), zgrid, z[start:stop])
    return out


def _quantile_chunk(
    right: np.ndarray, probs: np.ndarray, zgrid: ZGrid, levels: np.ndarray
) -> np.ndarray:
    """Quantiles of float64 rows whose cumulative sums are ``right``, ``(rows, len(levels))``."""
    out = np.empty((probs.shape[0], levels.size))
    rows = np.arange(probs.shape[0])
    for j, q in enumerate(levels):
        # the bin whose right edge is the first to reach q holds the crossing
        idx = np.minimum((right < q).sum(axis=1), zgrid.n_bins - 1)
        p_bin = probs[rows, idx]
        left = right[rows, idx] - p_bin
        with np.errstate(divide="ignore", invalid="ignore"):
            frac = np.where(p_bin > 0, (q - left) / p_bin, 0.5)
        out[:, j] = zgrid.edges[idx] + zgrid.width * np.clip(frac, 0.0, 1.0)
    return out


def quantiles(probs: np.ndarray, zgrid: ZGrid, levels: np.ndarray) -> np.ndarray:
    """Redshifts at which each CDF reaches the given levels, interpolated inside bins.

    Parameters
    ----------
    probs : ndarray, shape (n, n_z)
        Per-bin probabilities on ``zgrid``.
    zgrid : ZGrid
        The grid.
    levels : array_like, shape (m,)
        Probability levels in [0, 1].

    Returns
    -------
    ndarray, shape (n, m)

    Raises
    ------
    DensityError
        If a level lies outside [0, 1] or ``probs`` is not a density on ``zgrid``.
    """
    probs = check_probs(probs, zgrid)
    levels = np.atleast_1d(np.asarray(levels, dtype=np.float64))
    if ((levels < 0) | (levels > 1)).any() or not np.isfinite(levels).all():
        raise DensityError(f"quantile levels must lie in [0, 1], got {levels.tolist()}")
    out = np.empty((probs.shape[0], levels.size))
    for start, chunk in _chunks(probs):
        right = np.cumsum(chunk, axis=1)
        out[start : start + chunk.shape[0]] = _quantile_chunk(right, chunk, zgrid, levels)
    return out


def median(probs: np.ndarray, zgrid: ZGrid) -> np.ndarray:
    """Median of each density (interpolated inside its bin), shape ``(n,)``."""
    return quantiles(probs, zgrid, [0.5])[:, 0]


def mean(probs: np.ndarray, zgrid: ZGrid) -> np.ndarray:
    """Mean of each density, taking each bin's mass at its centre (as RAIL/qp on a grid)."""
    probs = check_probs(probs, zgrid)
    out = np.empty(probs.shape[0])
    for start, chunk in _chunks(probs):
        # row-wise sums, not a matrix product: BLAS rounds a row differently depending on
        # how many rows share the call, and a row's answer must not depend on its neighbours
        out[start : start + chunk.shape[0]] = (chunk * zgrid.centres).sum(axis=1)
    return out


def mode(probs: np.ndarray, zgrid: ZGrid) -> np.ndarray:
    """Centre of the most probable bin of each density (the first one on ties)."""
    probs = check_probs(probs, zgrid)
    return zgrid.centres[np.argmax(probs, axis=1)]


def std(probs: np.ndarray, zgrid: ZGrid) -> np.ndarray:
    """Return the standard deviation of each density, mass at the bin centres (as `mean`)."""
    probs = check_probs(probs, zgrid)
    out = np.empty(probs.shape[0])
    centres = zgrid.centres
    for start, chunk in _chunks(probs):
        z_mean = (chunk * centres).sum(axis=1)  # row-wise, as in `mean`
        out[start : start + chunk.shape[0]] = np.sqrt(
            np.maximum((chunk * centres**2).sum(axis=1) - z_mean**2, 0.0)
        )
    return out


def _check_level(level: float) -> float:
    if not (isinstance(level, int | float) and 0.0 < float(level) < 1.0):
        raise DensityError(f"credible level must lie strictly between 0 and 1, got {level!r}")
    return float(level)


def central_interval(probs: np.ndarray, zgrid: ZGrid, level: float) -> np.ndarray:
    """Return the central credible interval ``[F⁻¹((1−α)/2), F⁻¹((1+α)/2)]``, shape ``(n, 2)``."""
    level = _check_level(level)
    return quantiles(probs, zgrid, [0.5 * (1.0 - level), 0.5 * (1.0 + level)])


def hpd_interval(probs: np.ndarray, zgrid: ZGrid, level: float) -> np.ndarray:
    """Return the span of the densest bins holding at least ``level`` of the mass, ``(n, 2)``.

    Bins are taken from the densest down until their mass reaches ``level``; the interval runs
    from the lower edge of the lowest to the upper edge of the highest bin taken (for a
    multimodal density it therefore also spans the gaps between the modes).
    """
    level = _check_level(level)
    probs = check_probs(probs, zgrid)
    out = np.empty((probs.shape[0], 2))
    for start, chunk in _chunks(probs):
        order = np.argsort(-chunk, axis=1, kind="stable")
        mass = np.cumsum(np.take_along_axis(chunk, order, axis=1), axis=1)
        # number of bins taken: the first prefix whose mass reaches the level
        taken = np.minimum((mass < level * mass[:, -1:]).sum(axis=1) + 1, zgrid.n_bins)
        chosen = np.arange(zgrid.n_bins)[None, :] < taken[:, None]
        lo = np.where(chosen, order, zgrid.n_bins).min(axis=1)
        hi = np.where(chosen, order, -1).max(axis=1)
        out[start : start + chunk.shape[0], 0] = zgrid.edges[lo]
        out[start : start + chunk.shape[0], 1] = zgrid.edges[hi + 1]
    return out


def hpd_level(probs: np.ndarray, zgrid: ZGrid, z: np.ndarray) -> np.ndarray:
    """Smallest HPD level whose region holds ``z``: mass of bins denser than z's, half of ties.

    Outside the grid ``z`` has zero density and lies outside every region (level 1).
    """
    probs = check_probs(probs, zgrid)
    z = np.broadcast_to(np.asarray(z, dtype=np.float64), (probs.shape[0],))
    out = np.empty(probs.shape[0])
    for start, chunk in _chunks(probs):
        stop = start + chunk.shape[0]
        out[start:stop] = _hpd_chunk(chunk, zgrid, z[start:stop])
    return out


def _hpd_chunk(probs: np.ndarray, zgrid: ZGrid, z: np.ndarray) -> np.ndarray:
    k = np.clip(np.floor((z - zgrid.z_min) / zgrid.width).astype(np.int64), 0, zgrid.n_bins - 1)
    p_k = probs[np.arange(probs.shape[0]), k]
    denser = np.where(probs > p_k[:, None], probs, 0.0).sum(axis=1)
    equal = np.where(probs == p_k[:, None], probs, 0.0).sum(axis=1)
    return np.where(zgrid.contains(z), np.minimum(denser + 0.5 * equal, 1.0), 1.0)


def odds(
    probs: np.ndarray,
    zgrid: ZGrid,
    centre: np.ndarray | None = None,
    half_width: float = ODDS_HALF_WIDTH,
) -> np.ndarray:
    """Probability within ``centre ± half_width·(1 + centre)`` (default centre: the mode)."""
    probs = check_probs(probs, zgrid)
    centre = mode(probs, zgrid) if centre is None else np.asarray(centre, dtype=np.float64)
    centre = np.broadcast_to(centre, (probs.shape[0],))
    half = half_width * (1.0 + centre)
    return pit_at(probs, zgrid, centre + half) - pit_at(probs, zgrid, centre - half)


def rebin(probs: np.ndarray, zgrid: ZGrid, target: ZGrid) -> np.ndarray:
    """Return the same densities on another grid, conserving the mass inside the target grid.

    Each target bin gets ``F(upper edge) − F(lower edge)`` with F linear inside the source bins;
    mass outside the target grid is dropped and the rows renormalised.

    Raises
    ------
    DensityError
        If a density has no mass inside the target grid.
    """
    probs = check_probs(probs, zgrid)
    out = np.empty((probs.shape[0], target.n_bins))
    for start, chunk in _chunks(probs):
        right = np.cumsum(chunk, axis=1)
        at_edges = np.stack(
            [_pit_chunk(chunk, right, zgrid, np.full(chunk.shape[0], e)) for e in target.edges],
            axis=1,
        )
        out[start : start + chunk.shape[0]] = np.maximum(np.diff(at_edges, axis=1), 0.0)
    total = out.sum(axis=1, keepdims=True)
    if np.any(total <= 0):
        raise DensityError(f"a density has no mass inside the target grid {target.to_dict()}")
    return out / total


def to_qp(probs: np.ndarray, zgrid: ZGrid, ancil: dict[str, Any] | None = None) -> Any:
    """Return a qp ``hist`` ensemble of the densities (probability density in 1/z units)."""
    import qp

    probs = check_probs(probs, zgrid)
    data = {"bins": zgrid.edges, "pdfs": zgrid.pdf_values(np.asarray(probs, dtype=np.float64))}
    return qp.Ensemble(qp.hist, data=data, ancil=ancil)


def from_qp(ensemble: Any, zgrid: ZGrid) -> np.ndarray:
    """Per-bin probabilities on ``zgrid`` of any qp ensemble, from its CDF at the bin edges.

    Mass outside the grid is dropped and the rows renormalised.

    Raises
    ------
    DensityError
        If a density has no mass inside the grid.
    """
    cdf = np.asarray(ensemble.cdf(zgrid.edges), dtype=np.float64).reshape(-1, zgrid.n_bins + 1)
    mass = np.maximum(np.diff(cdf, axis=1), 0.0)
    total = mass.sum(axis=1, keepdims=True)
    if np.any(total <= 0):
        raise DensityError(f"a qp density has no mass inside the grid {zgrid.to_dict()}")
    return mass / total
