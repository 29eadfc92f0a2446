"""Point estimates and intervals from per-bin probabilities on a `ZGrid`.

The density is piecewise constant inside each bin, so the CDF is piecewise linear between bin
edges and quantiles are found by linear interpolation inside the bin that crosses them.
"""

from __future__ import annotations

import numpy as np

from mantis.zgrid import ZGrid

__all__ = ["ODDS_HALF_WIDTH", "SUMMARY_COLUMNS", "quantiles", "summarise_densities"]

ODDS_HALF_WIDTH = 0.06
"""Odds = probability within ``z_mode ± ODDS_HALF_WIDTH·(1 + z_mode)`` (the BPZ-style odds)."""

SUMMARY_COLUMNS: tuple[str, ...] = (
    "z_mean",
    "z_median",
    "z_mode",
    "z_std",
    "z_lo68",
    "z_hi68",
    "z_lo95",
    "z_hi95",
    "odds",
)

_QUANTILE_LEVELS = {"z_median": 0.5, "z_lo68": 0.15865525, "z_hi68": 0.84134475,
                    "z_lo95": 0.025, "z_hi95": 0.975}  # fmt: skip


def _cdf_at_edges(probs: np.ndarray) -> np.ndarray:
    cdf = np.zeros((probs.shape[0], probs.shape[1] + 1))
    np.cumsum(probs, axis=1, out=cdf[:, 1:])
    return cdf


def _cdf_at(cdf: np.ndarray, zgrid: ZGrid, z: np.ndarray) -> np.ndarray:
    pos = np.clip((z - zgrid.z_min) / zgrid.width, 0.0, zgrid.n_bins)
    j = np.minimum(np.floor(pos).astype(np.int64), zgrid.n_bins - 1)
    rows = np.arange(cdf.shape[0])
    return cdf[rows, j] + (pos - j) * (cdf[rows, j + 1] - cdf[rows, j])


def quantiles(probs: np.ndarray, zgrid: ZGrid, levels: np.ndarray) -> np.ndarray:
    """Quantiles of each density.

    Parameters
    ----------
    probs : ndarray, shape (n_objects, n_z)
        Per-bin probabilities, rows summing to one.
    zgrid : ZGrid
        The grid of ``probs``.
    levels : ndarray, shape (n_levels,)
        Probability levels in [0, 1].

    Returns
    -------
    ndarray, shape (n_objects, n_levels)
    """
    probs = np.asarray(probs, dtype=np.float64)
    cdf = _cdf_at_edges(probs)
    cdf /= cdf[:, -1:]
    rows = np.arange(probs.shape[0])
    out = np.empty((probs.shape[0], len(levels)))
    for k, level in enumerate(levels):
        # first edge whose CDF reaches the level; the crossing lies in the bin before it
        j = np.clip(np.argmax(cdf >= level, axis=1), 1, zgrid.n_bins)
        lo, hi = cdf[rows, j - 1], cdf[rows, j]
        frac = np.where(hi > lo, (level - lo) / np.where(hi > lo, hi - lo, 1.0), 0.0)
        out[:, k] = zgrid.edges[j - 1] + np.clip(frac, 0.0, 1.0) * zgrid.width
    return out


def summarise_densities(probs: np.ndarray, zgrid: ZGrid) -> dict[str, np.ndarray]:
    """Point estimates, spread, intervals and odds of each density.

    Parameters
    ----------
    probs : ndarray, shape (n_objects, n_z)
        Per-bin probabilities, rows summing to one.
    zgrid : ZGrid
        The grid of ``probs``.

    Returns
    -------
    dict of str to ndarray, shape (n_objects,)
        ``z_mean``, ``z_median``, ``z_mode`` (centre of the most probable bin), ``z_std``,
        ``z_lo68``/``z_hi68`` and ``z_lo95``/``z_hi95`` (central intervals) and ``odds``.
    """
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] != zgrid.n_bins:
        raise ValueError(
            f"densities have shape {probs.shape}; expected (n_objects, {zgrid.n_bins}) on {zgrid}"
        )
    centres = zgrid.centres
    # row-wise sums, not a matrix product: BLAS rounds a row differently depending on how
    # many rows share the call, and a row's answer must not depend on its neighbours
    z_mean = (probs * centres).sum(axis=1)
    # moments of the mass at bin centres, as RAIL/qp take them on a grid
    z_var = (probs * centres**2).sum(axis=1) - z_mean**2
    z_mode = centres[np.argmax(probs, axis=1)]
    summary = {"z_mean": z_mean, "z_mode": z_mode, "z_std": np.sqrt(np.maximum(z_var, 0.0))}
    levels = np.array(list(_QUANTILE_LEVELS.values()))
    for name, column in zip(_QUANTILE_LEVELS, quantiles(probs, zgrid, levels).T, strict=True):
        summary[name] = column
    cdf = _cdf_at_edges(probs)
    half = ODDS_HALF_WIDTH * (1.0 + z_mode)
    summary["odds"] = _cdf_at(cdf, zgrid, z_mode + half) - _cdf_at(cdf, zgrid, z_mode - half)
    return {name: summary[name] for name in SUMMARY_COLUMNS}
