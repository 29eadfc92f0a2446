"""Metric properties, exact values from first principles, and input errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import stats

from mantis.evaluate import (
    EvaluationError,
    cdf_quantiles,
    density_metrics,
    evaluate_densities,
    pit_statistics,
    point_estimates,
    point_metrics,
    score_densities,
)
from mantis.evaluate.testing import draw_from_probs, gaussian_probs, synthetic_model
from mantis.zgrid import ZGrid

GRID = ZGrid()
SMALL_GRID = ZGrid(0.0, 1.6, 40)

residual_arrays = arrays(
    np.float64, st.integers(3, 60), elements=st.floats(-0.4, 0.4, allow_nan=False)
)


@given(residual_arrays, st.floats(-0.4, 0.4))
@example(np.array([0.0, 0.0, 0.1]), 0.3)
@settings(max_examples=60, deadline=None)
def test_nmad_is_invariant_to_a_shift_of_the_residuals(delta, shift):
    zeros = np.zeros_like(delta)
    base = point_metrics(delta, zeros)["nmad"]
    shifted = point_metrics(delta + shift, zeros)["nmad"]
    assert shifted == pytest.approx(base, rel=1e-9, abs=1e-12)


@given(residual_arrays, st.floats(-2.0, 2.0).filter(lambda k: abs(k) > 1e-3))
@example(np.array([-0.1, 0.0, 0.2, 0.2]), -1.5)
@settings(max_examples=60, deadline=None)
def test_nmad_scales_with_the_absolute_factor(delta, factor):
    zeros = np.zeros_like(delta)
    base = point_metrics(delta, zeros)["nmad"]
    scaled = point_metrics(delta * factor, zeros)["nmad"]
    assert scaled == pytest.approx(abs(factor) * base, rel=1e-9, abs=1e-12)


def test_point_metrics_of_known_residuals():
    z_spec = np.array([0.0, 0.5, 0.0, 0.2, 0.3])  # -0.05 exact at z_spec = 0
    delta = np.array([0.0, 0.04, -0.05, 0.2, 0.01])
    got = point_metrics(z_spec + delta * (1 + z_spec), z_spec)
    assert got["bias_mean"] == pytest.approx(0.04)
    assert got["bias_median"] == pytest.approx(0.01)
    # |delta - 0.01| = 0.01 0.03 0.06 0.19 0.00 -> median 0.03
    assert got["nmad"] == pytest.approx(1.4826 * 0.03)
    assert got["outlier_rate_015"] == pytest.approx(1 / 5)
    assert got["outlier_rate_005"] == pytest.approx(2 / 5)  # 0.05 counts (>=), 0.2 counts
    p25, p75 = 0.0, 0.04
    assert got["sigma_iqr"] == pytest.approx((p75 - p25) / 1.349)
    assert got["rail_threshold"] == pytest.approx(3 * 0.04 / 1.349)  # above the 0.06 floor
    assert got["outlier_rate_rail"] == pytest.approx(1 / 5)


weights = arrays(np.float64, (5, SMALL_GRID.n_bins), elements=st.floats(0.0, 1.0))


@given(weights, arrays(np.float64, 5, elements=st.floats(-0.5, 2.5)))
@example(np.eye(5, SMALL_GRID.n_bins), np.array([0.0, 1.6, -0.5, 2.5, 0.02]))
@settings(max_examples=60, deadline=None)
def test_pit_and_rates_lie_in_the_unit_interval(raw, z):
    raw = raw + 1e-6  # a density that is zero everywhere is not a density
    probs = raw / raw.sum(axis=1, keepdims=True)
    scores = score_densities(probs, z, SMALL_GRID)
    assert np.all((scores["pit"] >= 0) & (scores["pit"] <= 1))
    assert np.all((scores["hpd"] >= 0) & (scores["hpd"] <= 1))
    assert np.all(scores["crps"] >= -1e-12)
    metrics = density_metrics(probs, z, SMALL_GRID)
    point = point_metrics(scores["z_mean"], z)
    rates = [v for k, v in {**metrics, **point}.items() if "rate" in k or "coverage" in k]
    assert rates and all(0.0 <= r <= 1.0 for r in rates)


@given(st.integers(0, 2**32 - 1))
@settings(max_examples=15, deadline=None, derandomize=True)
def test_truths_drawn_from_the_densities_give_uniform_pit(seed):
    rng = np.random.default_rng(seed)
    n = 1500
    mu = rng.uniform(0.1, 1.5, n)
    sigma = rng.uniform(0.01, 0.2, n)
    probs = gaussian_probs(GRID, mu, sigma)
    z = draw_from_probs(rng, probs, GRID)
    metrics = density_metrics(probs, z, GRID)
    assert metrics["ks_pvalue"] > 1e-4
    assert metrics["cvm_pvalue"] > 1e-4
    for level in (68, 90, 95):
        expected = level / 100
        tolerance = 4 * np.sqrt(expected * (1 - expected) / n)
        assert abs(metrics[f"coverage_central_{level}"] - expected) < tolerance
        assert abs(metrics[f"coverage_hpd_{level}"] - expected) < tolerance


@given(st.floats(0.0, 1.6, exclude_max=True))
@example(0.0)
@example(0.8)
@settings(max_examples=60, deadline=None)
def test_density_concentrated_at_the_truth_has_crps_near_zero(z_true):
    k = int(GRID.bin_index(z_true))
    probs = np.zeros((1, GRID.n_bins))
    probs[0, k] = 1.0
    crps = score_densities(probs, [z_true], GRID)["crps"][0]
    # the CDF rises linearly across the bin: ∫ (F − H)² = w (t³ + (1 − t)³) / 3
    t = (z_true - GRID.edges[k]) / GRID.width
    assert crps == pytest.approx(GRID.width * (t**3 + (1 - t) ** 3) / 3, abs=1e-12)
    assert crps <= GRID.width / 3 + 1e-12


def test_crps_of_a_gaussian_matches_the_closed_form():
    mu, sigma = np.array([0.6, 0.9]), np.array([0.05, 0.12])
    z_true = np.array([0.63, 0.7])
    probs = gaussian_probs(GRID, mu, sigma)
    crps = score_densities(probs, z_true, GRID)["crps"]
    x = (z_true - mu) / sigma
    exact = sigma * (x * (2 * stats.norm.cdf(x) - 1) + 2 * stats.norm.pdf(x) - 1 / np.sqrt(np.pi))
    np.testing.assert_allclose(crps, exact, rtol=2e-3)


def test_crps_counts_the_distance_to_a_truth_outside_the_grid():
    probs = np.zeros((2, GRID.n_bins))
    probs[:, 0] = 1.0  # all mass in [0, 0.004)
    crps = score_densities(probs, [2.0, -0.5], GRID)["crps"]
    # above: F = 1 from 0.004 to 2.0 (plus the ramp, w/3); below: 0.5 of F = 0 plus the ramp
    assert crps[0] == pytest.approx(GRID.width / 3 + (2.0 - GRID.width))
    assert crps[1] == pytest.approx(0.5 + GRID.width / 3)


def test_point_estimates_of_a_symmetric_density():
    mu = np.array([0.502, 1.002])  # bin centres
    probs = gaussian_probs(GRID, mu, np.array([0.05, 0.1]))
    est = point_estimates(probs, GRID)
    np.testing.assert_allclose(est["mean"], mu, atol=1e-6)
    np.testing.assert_allclose(est["median"], mu, atol=1e-6)
    np.testing.assert_allclose(est["mode"], mu, atol=1e-9)
    lo, hi = cdf_quantiles(probs, GRID, [0.16, 0.84]).T
    np.testing.assert_allclose(hi - lo, 2 * 0.9945 * np.array([0.05, 0.1]), rtol=2e-3)


def test_calibrated_model_scores_as_calibrated():
    zgrid = GRID
    probs, z = synthetic_model(zgrid, 4000, seed=3)
    result = evaluate_densities(probs, z, zgrid, n_boot=40, mag=np.linspace(18, 22, z.size))
    dens = result["density"]
    assert dens["ks_pvalue"] > 1e-3
    assert abs(dens["coverage_central_68"] - 0.68) < 0.03
    nmad = result["point"]["mean"]["nmad"]
    assert nmad == pytest.approx(0.03, rel=0.1)  # sigma/(1+z) = 0.03 by construction
    # bootstrap error of the mean bias against its analytic standard error
    sem = np.std((point_estimates(probs, zgrid)["mean"] - z) / (1 + z)) / np.sqrt(z.size)
    assert result["errors"]["bias_mean"] == pytest.approx(sem, rel=0.35)
    for name in ("z", "mag"):
        sliced = result["slices"][name]["metrics"]
        assert sum(s["n"] for s in sliced) == z.size


def test_bad_inputs_raise_clear_errors():
    zgrid = GRID
    probs, z = synthetic_model(zgrid, 10)
    with pytest.raises(EvaluationError, match=r"shape \(n_objects, 400\).*\(10, 399\)"):
        score_densities(probs[:, :-1], z, zgrid)
    with pytest.raises(EvaluationError, match="summing to one"):
        score_densities(probs * 2, z, zgrid)
    with pytest.raises(EvaluationError, match="negative or non-finite"):
        score_densities(np.where(probs > 0.01, np.nan, probs), z, zgrid)
    bad_z = z.copy()
    bad_z[3] = np.nan
    with pytest.raises(EvaluationError, match=r"rows \[3\]"):
        score_densities(probs, bad_z, zgrid)
    with pytest.raises(EvaluationError, match="has 9 values but there are 10"):
        score_densities(probs, z[:-1], zgrid)
    with pytest.raises(EvaluationError, match="point must be one of"):
        evaluate_densities(probs, z, zgrid, point="peak")
    with pytest.raises(EvaluationError, match="'mag' has 3 values"):
        evaluate_densities(probs, z, zgrid, n_boot=0, mag=np.ones(3))


def test_pit_tests_of_a_grossly_miscalibrated_sample_give_zero_pvalues():
    # scipy's CvM p-value series divides 0/0 this far in the tail; we must not warn
    pit = np.random.default_rng(0).uniform(size=200_000) ** 3
    result = pit_statistics(pit)
    assert result["ks"] > 0.3
    assert result["ks_pvalue"] == 0.0 and result["cvm_pvalue"] == 0.0
    # P(u³ < 1e-4) + P(u³ > 1 - 1e-4) for u ~ U(0, 1)
    expected = 1e-4 ** (1 / 3) + 1 - (1 - 1e-4) ** (1 / 3)
    assert result["pit_outlier_rate"] == pytest.approx(expected, abs=2e-3)
