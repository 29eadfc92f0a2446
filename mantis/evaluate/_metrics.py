"""Point and density metrics for photometric redshifts, vectorised over many objects.

Conventions (``docs/interfaces.md`` and the RAIL/qp definitions):

- residual Δ = (z_phot − z_spec)/(1 + z_spec);
- NMAD = 1.4826 · median|Δ − median Δ|; σ_IQR = (P75 − P25)/1.349 of Δ;
- outlier rates at |Δ| > 0.15, |Δ| ≥ 0.05 (the image-CNN convention) and RAIL's
  |Δ| > max(0.06, 3 σ_IQR);
- densities are per-bin probabilities on a `ZGrid`, read as piecewise-constant densities, so the
  CDF is linear inside each bin (qp's ``hist`` parameterisation); PIT = F(z_spec);
- CRPS = ∫ (F(z) − 1[z ≥ z_spec])² dz over the whole real line (F = 0 below the grid, 1 above),
  computed exactly for the piecewise-linear CDF;
- CDE loss = mean ∫ f² dz − 2 mean f(z_spec) as in RAIL: the integral by the trapezoid rule over
  the bin centres, f(z_spec) at the nearest bin centre;
- coverage of central intervals follows from the PIT; highest-density (HPD) coverage uses the
  probability mass of bins denser than the truth's bin, plus half the mass of equally dense bins.

Per-object quantities are computed in one chunked pass (`score_densities`) so that 10⁶ × 400
densities never need a float64 copy of the whole array.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import stats

from mantis import densities
from mantis.evaluate._validate import EvaluationError, check_probs, check_redshifts
from mantis.zgrid import ZGrid

__all__ = [
    "COVERAGE_LEVELS",
    "OUTLIER_THRESHOLD_CNN",
    "OUTLIER_THRESHOLD_FIXED",
    "POINT_ESTIMATORS",
    "cdf_quantiles",
    "coverage",
    "cvm_statistic",
    "density_metrics",
    "ks_statistic",
    "pit_statistics",
    "pit_values",
    "point_estimates",
    "point_metrics",
    "residuals",
    "score_densities",
]

OUTLIER_THRESHOLD_FIXED = 0.15
OUTLIER_THRESHOLD_CNN = 0.05
RAIL_OUTLIER_FLOOR = 0.06
COVERAGE_LEVELS = (0.68, 0.90, 0.95)
POINT_ESTIMATORS = ("mean", "median", "mode")
PIT_OUTLIER_LOW, PIT_OUTLIER_HIGH = 1e-4, 1 - 1e-4
NMAD_SCALE = 1.4826
IQR_SCALE = 1.349
_CHUNK_ROWS = 8192  # 8192 x 400 float64 = 26 MB working set per array


def residuals(z_phot: np.ndarray, z_spec: np.ndarray) -> np.ndarray:
    """Δ = (z_phot − z_spec)/(1 + z_spec)."""
    z_phot = np.asarray(z_phot, dtype=np.float64)
    z_spec = np.asarray(z_spec, dtype=np.float64)
    return (z_phot - z_spec) / (1.0 + z_spec)


def point_metrics(z_phot: np.ndarray, z_spec: np.ndarray) -> dict[str, float]:
    """Bias, scatter and outlier rates of point estimates.

    Parameters
    ----------
    z_phot, z_spec : ndarray, shape (n,)
        Photometric point estimates and spectroscopic redshifts.

    Returns
    -------
    dict
        ``n``, ``bias_mean``, ``bias_median``, ``nmad``, ``sigma_iqr``, ``outlier_rate_015``
        (|Δ| > 0.15), ``outlier_rate_005`` (|Δ| ≥ 0.05), ``outlier_rate_rail``
        (|Δ| > max(0.06, 3 σ_IQR)) and ``rail_threshold``.

    Raises
    ------
    EvaluationError
        If the arrays differ in length or hold non-finite values.
    """
    z_spec = check_redshifts(z_spec)
    z_phot = check_redshifts(z_phot, z_spec.shape[0], name="z_phot")
    if z_spec.size == 0:
        raise EvaluationError("point_metrics needs at least one object")
    return _point_summary(residuals(z_phot, z_spec))


def _point_summary(delta: np.ndarray) -> dict[str, float]:
    median = float(np.median(delta))
    p25, p75 = np.percentile(delta, [25.0, 75.0])
    sigma_iqr = float((p75 - p25) / IQR_SCALE)
    abs_delta = np.abs(delta)
    rail_threshold = max(RAIL_OUTLIER_FLOOR, 3.0 * sigma_iqr)
    return {
        "n": int(delta.size),
        "bias_mean": float(np.mean(delta)),
        "bias_median": median,
        "nmad": float(NMAD_SCALE * np.median(np.abs(delta - median))),
        "sigma_iqr": sigma_iqr,
        "outlier_rate_015": float(np.mean(abs_delta > OUTLIER_THRESHOLD_FIXED)),
        "outlier_rate_005": float(np.mean(abs_delta >= OUTLIER_THRESHOLD_CNN)),
        "outlier_rate_rail": float(np.mean(abs_delta > rail_threshold)),
        "rail_threshold": float(rail_threshold),
    }


def cdf_quantiles(probs: np.ndarray, zgrid: ZGrid, quantiles: np.ndarray) -> np.ndarray:
    """Redshifts at which each object's CDF reaches the given levels (`densities.quantiles`)."""
    return densities.quantiles(probs, zgrid, quantiles)


def _score_chunk(probs: np.ndarray, z: np.ndarray, zgrid: ZGrid) -> dict[str, np.ndarray]:
    """Every per-object score for one chunk of float64 densities."""
    n_rows, n_bins = probs.shape
    rows = np.arange(n_rows)
    width = zgrid.width
    z_min, z_max = zgrid.z_min, zgrid.z_max
    right = np.cumsum(probs, axis=1)
    left = right - probs

    # PIT: the CDF at the truth, linear inside the truth's bin; 0 below and 1 above the grid.
    pit = densities.pit_at(probs, zgrid, z)
    k = np.clip(np.floor((z - z_min) / width).astype(np.int64), 0, n_bins - 1)
    offset = np.clip(z - zgrid.edges[k], 0.0, width)
    p_k, left_k = probs[rows, k], left[rows, k]

    # CRPS, exact for the piecewise-linear CDF: ∫F² over the grid, plus ∫(1 − 2F) from the
    # truth to the top of the grid, plus the unit-height stretches outside the grid.
    integral_f2 = width / 3.0 * np.sum(left * left + left * right + right * right, axis=1)
    bin_f = 0.5 * width * (left + right)
    total_f = bin_f.sum(axis=1)
    # ∫F below the truth's bin by a masked sum: one pass, cheaper than a row-wise cumsum
    before_bin = np.where(np.arange(n_bins)[None, :] < k[:, None], bin_f, 0.0).sum(axis=1)
    below_truth_f = before_bin + left_k * offset + p_k * offset**2 / (2.0 * width)
    z_clip = np.clip(z, z_min, z_max)
    crps = (
        integral_f2
        + (z_max - z_clip)
        - 2.0 * (total_f - below_truth_f)
        + np.maximum(0.0, z_min - z)
        + np.maximum(0.0, z - z_max)
    )

    # CDE loss terms (RAIL): trapezoid over bin centres; density at the nearest centre (ties go
    # to the lower centre, as numpy's argmin does).
    density = probs / width
    dens2 = density * density
    cde_integral = width * (dens2.sum(axis=1) - 0.5 * (dens2[:, 0] + dens2[:, -1]))
    nearest = np.clip(np.ceil((z - zgrid.centres[0]) / width - 0.5), 0, n_bins - 1)
    cde_at_truth = density[rows, nearest.astype(np.int64)]

    return {
        "pit": pit,
        "crps": crps,
        "cde_integral": cde_integral,
        "cde_at_truth": cde_at_truth,
        # HPD: mass of bins denser than the truth's bin (+ half of equal ones)
        "hpd": densities.hpd_level(probs, zgrid, z),
        "z_mean": probs @ zgrid.centres,
        "z_median": densities.median(probs, zgrid),
        "z_mode": densities.mode(probs, zgrid),
    }


def score_densities(
    probs: np.ndarray, z_spec: np.ndarray, zgrid: ZGrid, *, progress: bool = False
) -> dict[str, np.ndarray]:
    """Per-object scores of densities against spectroscopic redshifts, in one chunked pass.

    Parameters
    ----------
    probs : ndarray, shape (n, n_z)
        Per-bin probabilities on ``zgrid`` (float32 or float64; rows sum to one).
    z_spec : ndarray, shape (n,)
        True redshifts (may lie outside the grid).
    zgrid : ZGrid
        The grid.
    progress : bool
        Show a progress bar.

    Returns
    -------
    dict of ndarray, each shape (n,)
        ``pit``, ``crps``, ``cde_integral`` (∫f² dz), ``cde_at_truth`` (f at the nearest centre),
        ``hpd`` (HPD level at which the truth enters), ``z_mean``, ``z_median``, ``z_mode``.
    """
    probs = check_probs(probs, zgrid)
    z_spec = check_redshifts(z_spec, probs.shape[0])
    n = probs.shape[0]
    names = ("pit", "crps", "cde_integral", "cde_at_truth", "hpd", "z_mean", "z_median", "z_mode")
    out = {name: np.empty(n) for name in names}
    starts = range(0, n, _CHUNK_ROWS)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="scoring densities", unit="chunk")
    for start in starts:
        stop = min(start + _CHUNK_ROWS, n)
        chunk = _score_chunk(probs[start:stop].astype(np.float64), z_spec[start:stop], zgrid)
        for name in names:
            out[name][start:stop] = chunk[name]
    return out


def pit_values(probs: np.ndarray, z_spec: np.ndarray, zgrid: ZGrid) -> np.ndarray:
    """PIT = F(z_spec) with the CDF interpolated linearly inside bins, shape ``(n,)``."""
    return score_densities(probs, z_spec, zgrid)["pit"]


def point_estimates(probs: np.ndarray, zgrid: ZGrid) -> dict[str, np.ndarray]:
    """Mean, median (interpolated within the bin) and mode (bin centre) of each density."""
    return {
        "mean": densities.mean(probs, zgrid),
        "median": densities.median(probs, zgrid),
        "mode": densities.mode(probs, zgrid),
    }


def ks_statistic(sorted_pit: np.ndarray) -> float:
    """Kolmogorov–Smirnov distance of sorted samples from U(0, 1)."""
    n = sorted_pit.size
    ranks = np.arange(1, n + 1) / n
    return float(max(np.max(ranks - sorted_pit), np.max(sorted_pit - (ranks - 1.0 / n))))


def cvm_statistic(sorted_pit: np.ndarray) -> float:
    """Cramér–von Mises W² of sorted samples against U(0, 1) (scipy's statistic)."""
    n = sorted_pit.size
    expected = (2.0 * np.arange(1, n + 1) - 1.0) / (2.0 * n)
    return float(1.0 / (12.0 * n) + np.sum((sorted_pit - expected) ** 2))


def _ad_one_sample(sorted_pit: np.ndarray) -> float:
    """Classical one-sample Anderson–Darling A² against U(0, 1)."""
    n = sorted_pit.size
    u = np.clip(sorted_pit, 1e-12, 1 - 1e-12)
    weights = 2.0 * np.arange(1, n + 1) - 1.0
    return float(-n - np.sum(weights * (np.log(u) + np.log1p(-u[::-1]))) / n)


def pit_statistics(pit: np.ndarray) -> dict[str, float]:
    """Uniformity tests of PIT values, RAIL/qp definitions.

    Returns
    -------
    dict
        ``ks``/``ks_pvalue`` (``scipy.stats.kstest`` against U(0,1)), ``cvm``/``cvm_pvalue``
        (``scipy.stats.cramervonmises``), ``ad``/``ad_pvalue`` (qp's k-sample Anderson–Darling
        against an evenly spaced grid on [0, 1]; the p-value is capped by scipy to [0.001, 0.25]),
        ``ad_one_sample`` (the classical A²), ``pit_outlier_rate`` (fraction of PIT below 1e-4
        or above 0.9999, counted directly; qp estimates it from a 100-quantile summary).
    """
    pit = np.asarray(pit, dtype=np.float64)
    if pit.size < 2:
        raise EvaluationError(f"PIT statistics need at least 2 objects, got {pit.size}")
    sorted_pit = np.sort(pit)
    ks = stats.kstest(sorted_pit, stats.uniform.cdf)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        # scipy's CvM p-value series breaks down (0/0) far in the tail; the p-value is 0 there
        cvm = stats.cramervonmises(sorted_pit, stats.uniform.cdf)
    cvm_pvalue = float(cvm.pvalue) if np.isfinite(cvm.pvalue) else 0.0
    with warnings.catch_warnings():
        # scipy warns whenever the tabulated p-value range is exceeded; the cap is documented.
        warnings.filterwarnings("ignore", message="p-value (capped|floored)", category=UserWarning)
        ad = stats.anderson_ksamp([sorted_pit, np.linspace(0.0, 1.0, pit.size)], variant="midrank")
    return {
        "ks": float(ks.statistic),
        "ks_pvalue": float(ks.pvalue),
        "cvm": float(cvm.statistic),
        "cvm_pvalue": cvm_pvalue,
        "ad": float(ad.statistic),
        "ad_pvalue": float(ad.pvalue),
        "ad_one_sample": _ad_one_sample(sorted_pit),
        "pit_outlier_rate": float(np.mean((pit < PIT_OUTLIER_LOW) | (pit > PIT_OUTLIER_HIGH))),
    }


def coverage(
    pit: np.ndarray, hpd: np.ndarray, levels: tuple[float, ...] = COVERAGE_LEVELS
) -> dict[str, float]:
    """Fraction of truths inside central and HPD credible intervals of each level.

    The central α-interval [F⁻¹((1−α)/2), F⁻¹((1+α)/2)] holds the truth exactly when the PIT lies
    in [(1−α)/2, (1+α)/2]; the HPD α-region holds it when ``hpd`` ≤ α.
    """
    out = {}
    for level in levels:
        lo, hi = 0.5 * (1.0 - level), 0.5 * (1.0 + level)
        tag = f"{round(100 * level):d}"
        out[f"coverage_central_{tag}"] = float(np.mean((pit >= lo) & (pit <= hi)))
        out[f"coverage_hpd_{tag}"] = float(np.mean(hpd <= level))
    return out


def _density_summary(scores: dict[str, np.ndarray]) -> dict[str, float]:
    out = pit_statistics(scores["pit"])
    out["crps"] = float(np.mean(scores["crps"]))
    out["cde_loss"] = float(np.mean(scores["cde_integral"]) - 2.0 * np.mean(scores["cde_at_truth"]))
    out.update(coverage(scores["pit"], scores["hpd"]))
    return out


def density_metrics(probs: np.ndarray, z_spec: np.ndarray, zgrid: ZGrid) -> dict[str, float]:
    """Scalar density metrics: PIT tests, PIT outlier rate, CRPS, CDE loss and coverage.

    Parameters
    ----------
    probs : ndarray, shape (n, n_z)
        Per-bin probabilities on ``zgrid``.
    z_spec : ndarray, shape (n,)
        True redshifts.
    zgrid : ZGrid
        The grid.

    Returns
    -------
    dict
        The keys of `pit_statistics`, ``crps`` (mean), ``cde_loss`` and
        ``coverage_{central,hpd}_{68,90,95}``.
    """
    return _density_summary(score_densities(probs, z_spec, zgrid))
