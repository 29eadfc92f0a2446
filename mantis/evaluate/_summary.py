"""Everything about one set of densities: metrics, bootstrap errors and metrics in slices."""

from __future__ import annotations

from typing import Any

import numpy as np

from mantis.evaluate._metrics import (
    POINT_ESTIMATORS,
    _density_summary,
    _point_summary,
    coverage,
    cvm_statistic,
    ks_statistic,
    residuals,
    score_densities,
)
from mantis.evaluate._validate import EvaluationError
from mantis.zgrid import ZGrid

__all__ = ["MIN_OBJECTS_PER_SLICE", "evaluate_densities", "summarise_scores"]

MIN_OBJECTS_PER_SLICE = 20


def summarise_scores(
    scores: dict[str, np.ndarray], z_spec: np.ndarray, *, point: str = "mean"
) -> dict[str, Any]:
    """Point and density metrics from the per-object output of `score_densities`.

    Returns
    -------
    dict
        ``{'n', 'point': {estimator: point_metrics}, 'density': density metrics}``; the point
        metrics of every estimator are given, ``point`` names the headline one.
    """
    point_block = {
        name: _point_summary(residuals(scores[f"z_{name}"], z_spec)) for name in POINT_ESTIMATORS
    }
    return {
        "n": int(z_spec.size),
        "point_estimator": point,
        "point": point_block,
        "density": _density_summary(scores),
    }


def _bootstrap_once(
    scores: dict[str, np.ndarray], z_spec: np.ndarray, index: np.ndarray, point: str
) -> dict[str, float]:
    """Return the bootstrapped scalars for one resample (fast statistics, no p-values)."""
    out = _point_summary(residuals(scores[f"z_{point}"][index], z_spec[index]))
    del out["n"], out["rail_threshold"]
    pit = scores["pit"][index]
    sorted_pit = np.sort(pit)
    out["ks"] = ks_statistic(sorted_pit)
    out["cvm"] = cvm_statistic(sorted_pit)
    out["crps"] = float(np.mean(scores["crps"][index]))
    out["cde_loss"] = float(
        np.mean(scores["cde_integral"][index]) - 2.0 * np.mean(scores["cde_at_truth"][index])
    )
    out.update(coverage(pit, scores["hpd"][index]))
    return out


def _slice_edges(name: str, values: np.ndarray, zgrid: ZGrid, n_slices: int) -> np.ndarray:
    finite = values[np.isfinite(values)]
    if name == "z":
        return np.linspace(zgrid.z_min, zgrid.z_max, n_slices + 1)
    if finite.size == 0:
        return np.array([])
    edges = np.unique(np.quantile(finite, np.linspace(0.0, 1.0, n_slices + 1)))
    return edges


def evaluate_densities(
    probs: np.ndarray,
    z_spec: np.ndarray,
    zgrid: ZGrid,
    *,
    point: str = "mean",
    n_boot: int = 100,
    n_slices: int = 8,
    seed: int = 0,
    progress: bool = False,
    **bins: np.ndarray,
) -> dict[str, Any]:
    """Every metric of a set of densities, with bootstrap errors and metrics in slices.

    Parameters
    ----------
    probs : ndarray, shape (n, n_z)
        Per-bin probabilities on ``zgrid``.
    z_spec : ndarray, shape (n,)
        True redshifts.
    zgrid : ZGrid
        The grid.
    point : {'mean', 'median', 'mode'}
        Point estimate used for the bootstrap and the slices.
    n_boot : int
        Bootstrap resamples (0 for none); errors are the standard deviation over resamples.
    n_slices : int
        Slices per binning variable: equal widths in z_spec over the grid, equal counts for
        the others.
    seed : int
        Seed of the bootstrap.
    progress : bool
        Show progress bars.
    **bins : ndarray, shape (n,)
        Further variables to slice by, e.g. ``mag=r_mag, ebv=ebv``; NaN values are left out of
        every slice.

    Returns
    -------
    dict
        `summarise_scores` output plus ``errors`` (bootstrap standard deviations) and
        ``slices``: ``{variable: {'edges': [...], 'metrics': [per-slice dicts or None]}}``.

    Raises
    ------
    EvaluationError
        For an unknown ``point``, a negative ``n_boot`` or a slicing variable of the wrong
        length.
    """
    if point not in POINT_ESTIMATORS:
        raise EvaluationError(f"point must be one of {POINT_ESTIMATORS}, got {point!r}")
    if int(n_boot) != n_boot or n_boot < 0:
        raise EvaluationError(f"n_boot must be a non-negative integer, got {n_boot!r}")
    if int(n_slices) != n_slices or n_slices < 1:
        raise EvaluationError(f"n_slices must be a positive integer, got {n_slices!r}")
    scores = score_densities(probs, z_spec, zgrid, progress=progress)
    z_spec = np.asarray(z_spec, dtype=np.float64)
    n = z_spec.size
    result = summarise_scores(scores, z_spec, point=point)

    rng = np.random.default_rng(seed)
    replicates: list[dict[str, float]] = []
    boot_iter = range(int(n_boot))
    if progress:
        from tqdm.auto import tqdm

        boot_iter = tqdm(boot_iter, desc="bootstrap", unit="resample")
    for _ in boot_iter:
        replicates.append(_bootstrap_once(scores, z_spec, rng.integers(0, n, n), point))
    result["errors"] = (
        {key: float(np.std([r[key] for r in replicates], ddof=1)) for key in replicates[0]}
        if len(replicates) > 1
        else {}
    )

    variables = {"z": z_spec, **bins}
    result["slices"] = {}
    for name, values in variables.items():
        values = np.asarray(values, dtype=np.float64).ravel()
        if values.size != n:
            raise EvaluationError(
                f"slicing variable {name!r} has {values.size} values but there are {n} objects"
            )
        edges = _slice_edges(name, values, zgrid, n_slices)
        per_slice = []
        for i in range(max(edges.size - 1, 0)):
            last = i == edges.size - 2
            upper = values <= edges[i + 1] if last else values < edges[i + 1]
            mask = (values >= edges[i]) & upper
            if mask.sum() < MIN_OBJECTS_PER_SLICE:
                per_slice.append({"n": int(mask.sum())})
                continue
            sliced = {key: arr[mask] for key, arr in scores.items()}
            summary = summarise_scores(sliced, z_spec[mask], point=point)
            per_slice.append({"n": summary["n"], **summary["point"][point], **summary["density"]})
        result["slices"][name] = {"edges": edges.tolist(), "metrics": per_slice}
    return result
