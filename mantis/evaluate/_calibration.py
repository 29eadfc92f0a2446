"""Fitting the global recalibration of redshift densities on the validation split.

The fitted `Calibration` (applied by prediction and evaluation) lives in `mantis.calibration`.

Two candidates are fitted and compared with leaving the densities as they are:

- temperature scaling: p' ∝ p^(1/T), i.e. softmax(logits / T), with T minimising the negative
  log-likelihood of the validation truths (Guo et al. 2017; FlexZBoost's "sharpening" is the
  same with α = 1/T);
- PIT-CDF remapping: F' = G(F) where G is the empirical CDF of the validation PITs (Bordoloi,
  Lilly & Amara 2010), tabulated on a uniform grid of PIT values and mixed with a little of the
  identity so that G is strictly increasing and no bin loses all its mass.

The validation objects are split in two halves: each candidate is fitted on one and scored on
the other by CRPS and PIT KS distance (each relative to the uncalibrated densities, summed); the
best is refitted on all of them.
"""

from __future__ import annotations

import numpy as np
from scipy import optimize

from mantis.calibration import CALIBRATION_METHODS, Calibration
from mantis.evaluate._metrics import ks_statistic, score_densities
from mantis.evaluate._validate import EvaluationError, check_probs, check_redshifts
from mantis.zgrid import ZGrid

__all__ = ["CALIBRATION_METHODS", "Calibration", "fit_calibration"]  # the first two re-exported

_REMAP_KNOTS = 200  # G is tabulated at PIT = 0, 1/200, ..., 1 (int16 indices need < 32767)
_REMAP_IDENTITY_WEIGHT = 1e-3
_TEMPERATURE_RANGE = (1.0 / 20.0, 20.0)
_TEMPERATURE_FIT_OBJECTS = 20_000
_LOG_FLOOR = np.float32(1e-30)  # floor inside log() when fitting T: far tails must still count
_EXP_FLOOR = np.float32(-87.0)  # exp(-87) = 1.6e-38 is still a normal float32
_MIN_OBJECTS = 20


def _fit_temperature(probs: np.ndarray, z: np.ndarray, zgrid: ZGrid) -> float:
    """T minimising the mean negative log-likelihood of the truths (inside the grid)."""
    inside = np.flatnonzero(zgrid.contains(z))
    if inside.size < _MIN_OBJECTS:
        return 1.0
    # One scalar: a fixed-stride subset of 20k objects pins it down and keeps the fit fast.
    inside = inside[:: max(1, inside.size // _TEMPERATURE_FIT_OBJECTS)]
    log_p = np.log(np.maximum(probs[inside].astype(np.float32), _LOG_FLOOR))
    log_at_truth = log_p[np.arange(log_p.shape[0]), zgrid.bin_index(z[inside])].astype(np.float64)

    def nll(log_beta: float) -> float:
        beta = np.float32(np.exp(log_beta))
        scaled = log_p * beta
        peak = scaled.max(axis=1, keepdims=True)
        shifted = np.maximum(scaled - peak, _EXP_FLOOR)
        log_norm = peak[:, 0] + np.log(np.exp(shifted).sum(axis=1, dtype=np.float64))
        return float(np.mean(log_norm - float(beta) * log_at_truth))

    t_lo, t_hi = _TEMPERATURE_RANGE
    best = optimize.minimize_scalar(
        nll, bounds=(np.log(1 / t_hi), np.log(1 / t_lo)), method="bounded"
    )
    return float(1.0 / np.exp(best.x))


def _fit_remap(probs: np.ndarray, z: np.ndarray, zgrid: ZGrid) -> np.ndarray:
    """G tabulated on a uniform PIT grid: the validation PIT ECDF mixed with the identity."""
    pit = np.sort(score_densities(probs, z, zgrid)["pit"])
    knots = np.linspace(0.0, 1.0, _REMAP_KNOTS + 1)
    ecdf = np.searchsorted(pit, knots, side="right") / pit.size
    remap = (1.0 - _REMAP_IDENTITY_WEIGHT) * ecdf + _REMAP_IDENTITY_WEIGHT * knots
    remap[0], remap[-1] = 0.0, 1.0
    return np.maximum.accumulate(remap)


def _score(calibration: Calibration, probs: np.ndarray, z: np.ndarray) -> dict[str, float]:
    scores = score_densities(calibration.apply(probs), z, calibration.zgrid)
    return {
        "crps": float(np.mean(scores["crps"])),
        "ks": ks_statistic(np.sort(scores["pit"])),
    }


def fit_calibration(
    probs: np.ndarray,
    z: np.ndarray,
    zgrid: ZGrid,
    *,
    max_objects: int = 100_000,
    seed: int = 0,
    methods: tuple[str, ...] = CALIBRATION_METHODS,
) -> Calibration:
    """Fit temperature scaling and PIT remapping on validation densities and keep the better.

    Parameters
    ----------
    probs : ndarray, shape (n, n_z)
        Uncalibrated per-bin probabilities of the validation objects.
    z : ndarray, shape (n,)
        Their spectroscopic redshifts.
    zgrid : ZGrid
        The grid.
    max_objects : int
        At most this many objects (a seeded random subset) are used, for speed.
    seed : int
        Seed of the subset and of the half split.
    methods : tuple of str
        Candidates to consider, from ``('identity', 'temperature', 'pit_remap')``.

    Returns
    -------
    Calibration
        The candidate with the lowest CRPS/CRPS₀ + KS/max(KS₀, 1/√n) on the held-out half
        (index 0: the uncalibrated densities), refitted on every object.

    Raises
    ------
    EvaluationError
        For fewer than 40 objects, unknown methods or invalid densities.
    """
    unknown = [m for m in methods if m not in CALIBRATION_METHODS]
    if unknown or not methods:
        raise EvaluationError(
            f"calibration methods must be a non-empty subset of {CALIBRATION_METHODS}, "
            f"got {methods!r}"
        )
    probs = check_probs(probs, zgrid)
    z = check_redshifts(z, probs.shape[0])
    n = probs.shape[0]
    if n < 2 * _MIN_OBJECTS:
        raise EvaluationError(
            f"fitting a calibration needs at least {2 * _MIN_OBJECTS} validation objects, got {n}"
        )
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)[:max_objects]
    order.sort()  # keeps reads from memory-mapped or HDF5-backed arrays sequential
    probs, z = np.asarray(probs[order], dtype=np.float32), z[order]
    half = rng.permutation(probs.shape[0])
    fit_idx, test_idx = np.sort(half[::2]), np.sort(half[1::2])

    def build(method: str, idx: np.ndarray) -> Calibration:
        if method == "temperature":
            return Calibration(
                method, zgrid, temperature=_fit_temperature(probs[idx], z[idx], zgrid)
            )
        if method == "pit_remap":
            return Calibration(method, zgrid, remap=_fit_remap(probs[idx], z[idx], zgrid))
        return Calibration("identity", zgrid)

    held_out = {
        method: _score(build(method, fit_idx), probs[test_idx], z[test_idx])
        for method in dict.fromkeys(("identity", *methods))
    }
    base = held_out["identity"]
    ks_scale = max(base["ks"], 1.0 / np.sqrt(test_idx.size))
    for scores in held_out.values():
        scores["score"] = scores["crps"] / base["crps"] + scores["ks"] / ks_scale
    chosen = min(methods, key=lambda m: held_out[m]["score"])
    calibration = build(chosen, np.arange(probs.shape[0]))
    calibration.diagnostics = {
        "held_out": held_out,
        "n_fit": int(fit_idx.size),
        "n_held_out": int(test_idx.size),
        "n_used": int(probs.shape[0]),
    }
    return calibration
