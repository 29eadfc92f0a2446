"""Input checks shared by the evaluation modules, and the error they raise."""

from __future__ import annotations

import numpy as np

from mantis.exceptions import MantisError
from mantis.zgrid import ZGrid

__all__ = ["EvaluationError", "check_probs", "check_redshifts"]

# Row sums further than this from one mean the input is not a per-bin density.
_ROW_SUM_TOLERANCE = 1e-3


class EvaluationError(MantisError):
    """Densities, redshifts or evaluation settings that cannot be scored."""


def check_probs(probs: np.ndarray, zgrid: ZGrid, *, name: str = "probs") -> np.ndarray:
    """Return ``probs`` as a 2-D float array after checking it is a per-bin density on ``zgrid``.

    Float32 input stays float32 (no copy) so that large ensembles fit in memory.

    Raises
    ------
    EvaluationError
        If the shape does not match the grid, values are negative or not finite, or rows do
        not sum to one.
    """
    arr = np.asarray(probs)
    if arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float64)
    if arr.ndim != 2 or arr.shape[1] != zgrid.n_bins:
        raise EvaluationError(
            f"{name} must have shape (n_objects, {zgrid.n_bins}) for the grid {zgrid.to_dict()}, "
            f"got {arr.shape}"
        )
    if arr.shape[0] == 0:
        raise EvaluationError(f"{name} holds no objects; at least one is needed")
    # Checked on a strided sample for speed; a full pass would double the cost of scoring 1e6 rows.
    sample = arr[:: max(1, arr.shape[0] // 4096)]
    if not np.isfinite(sample).all() or (sample < 0).any():
        raise EvaluationError(f"{name} holds negative or non-finite probabilities")
    sums = sample.sum(axis=1, dtype=np.float64)
    worst = float(np.max(np.abs(sums - 1.0)))
    if worst > _ROW_SUM_TOLERANCE:
        raise EvaluationError(
            f"{name} rows must be per-bin probabilities summing to one; a row sums to "
            f"{sums[np.argmax(np.abs(sums - 1.0))]:.6g} (normalise with ZGrid.normalise)"
        )
    return arr


def check_redshifts(z: np.ndarray, n: int | None = None, *, name: str = "z_spec") -> np.ndarray:
    """Return ``z`` as a 1-D float64 array of finite redshifts of length ``n``.

    Raises
    ------
    EvaluationError
        If the length differs from ``n`` or any value is NaN, infinite or below -1.
    """
    arr = np.asarray(z, dtype=np.float64).ravel()
    if n is not None and arr.shape[0] != n:
        raise EvaluationError(f"{name} has {arr.shape[0]} values but there are {n} objects")
    bad = ~np.isfinite(arr) | (arr <= -1.0)
    if bad.any():
        first = np.flatnonzero(bad)[:5].tolist()
        raise EvaluationError(
            f"{name} must be finite redshifts > -1; {int(bad.sum())} are not (rows {first}); "
            "drop objects without a spectroscopic redshift first"
        )
    return arr
