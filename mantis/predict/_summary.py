"""The summary columns of a prediction row, from `mantis.densities`."""

from __future__ import annotations

import numpy as np

from mantis import densities
from mantis.densities import ODDS_HALF_WIDTH
from mantis.zgrid import ZGrid

__all__ = ["ODDS_HALF_WIDTH", "SUMMARY_COLUMNS", "summarise_densities"]

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

    Raises
    ------
    DensityError
        If ``probs`` is not a density on ``zgrid``.
    """
    shape = np.shape(probs)
    if len(shape) != 2 or shape[1] != zgrid.n_bins:
        raise densities.DensityError(
            f"densities have shape {shape}; expected (n_objects, {zgrid.n_bins}) on {zgrid}"
        )
    probs = densities.check_probs(probs, zgrid, name="densities")
    summary = {
        "z_mean": densities.mean(probs, zgrid),
        "z_mode": densities.mode(probs, zgrid),
        "z_std": densities.std(probs, zgrid),
    }
    levels = list(_QUANTILE_LEVELS.values())
    for name, column in zip(
        _QUANTILE_LEVELS, densities.quantiles(probs, zgrid, levels).T, strict=True
    ):
        summary[name] = column
    summary["odds"] = densities.odds(probs, zgrid, summary["z_mode"])
    return {name: summary[name] for name in SUMMARY_COLUMNS}
