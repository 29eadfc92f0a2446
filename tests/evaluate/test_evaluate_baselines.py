"""Baselines: template fitting recovers template redshifts, kNN learns, oracle photometry."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import nnls

from mantis.evaluate import EvaluationError, point_metrics
from mantis.evaluate._baselines import (
    TabularBaseline,
    _nnls_chi2,
    _prepare_photometry,
    oracle_photometry,
    template_chi2,
    template_fit,
    template_flux_grid,
)
from mantis.evaluate._metrics import point_estimates
from mantis.surveys import BANDS, nanomaggies_to_mag
from mantis.zgrid import ZGrid

GRID = ZGrid(0.0, 1.6, 80)  # coarse grid: fast, same code


def template_catalogue(n: int, seed: int, *, noise: float = 0.0):
    """Photometry of random non-negative template mixtures at grid redshifts."""
    rng = np.random.default_rng(seed)
    grid = template_flux_grid(GRID)
    z_index = rng.integers(2, GRID.n_bins - 2, n)
    coeff = rng.gamma(0.5, size=(n, grid.shape[1])) * (rng.uniform(size=(n, 5)) < 0.6)
    coeff[:, 0] += 0.05
    flux = 50.0 * np.einsum("nt,ntb->nb", coeff, grid[z_index])
    flux_err = 0.01 * np.abs(flux) + 1e-3
    flux = flux + noise * flux_err * rng.standard_normal(flux.shape)
    return flux, flux_err, z_index


def test_template_fit_recovers_noiseless_template_redshifts():
    flux, flux_err, z_index = template_catalogue(40, seed=1)
    chi2 = template_chi2(flux, flux_err, GRID, sys_err=0.0)
    assert np.all(np.argmin(chi2, axis=1) == z_index)
    assert np.all(chi2[np.arange(40), z_index] < 1e-3)  # the generating mixture fits exactly
    probs = template_fit(flux, flux_err, GRID, sys_err=0.0)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    assert np.all(point_estimates(probs, GRID)["mode"] == GRID.centres[z_index])


def test_template_fit_survives_missing_bands_and_noise():
    flux, flux_err, z_index = template_catalogue(60, seed=2, noise=1.0)
    flux[:, :2] = np.nan  # no GALEX
    probs = template_fit(flux, flux_err, GRID)
    z_true = GRID.centres[z_index]
    metrics = point_metrics(point_estimates(probs, GRID)["mode"], z_true)
    assert metrics["outlier_rate_015"] < 0.2


def test_nnls_chi2_matches_scipy_nnls():
    rng = np.random.default_rng(3)
    grid = template_flux_grid(GRID)
    flux = rng.normal(5, 5, size=(20, len(BANDS)))
    flux_err = rng.uniform(0.2, 2.0, size=flux.shape)
    values, weight = _prepare_photometry(flux, flux_err, 0.0)
    ours = _nnls_chi2(grid, values, weight)
    for i in range(20):
        for z in rng.integers(0, GRID.n_bins, 5):
            root_w = np.sqrt(weight[i])
            _, resid = nnls((grid[z] * root_w).T, values[i] * root_w)
            assert ours[i, z] == pytest.approx(resid**2, rel=1e-6, abs=1e-8)


def test_knn_baseline_learns_redshifts_from_photometry():
    flux, flux_err, z_index = template_catalogue(1500, seed=4, noise=1.0)
    z_true = GRID.centres[z_index]
    model = TabularBaseline(GRID, n_neighbors=15).fit(flux[:1200], flux_err[:1200], z_true[:1200])
    probs = model.predict(flux[1200:])
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    metrics = point_metrics(point_estimates(probs, GRID)["median"], z_true[1200:])
    assert metrics["nmad"] < 0.06
    assert metrics["outlier_rate_015"] < 0.15
    with pytest.raises(EvaluationError, match="before fit"):
        TabularBaseline(GRID).predict(flux)
    with pytest.raises(EvaluationError, match="at least 30 training objects"):
        TabularBaseline(GRID).fit(flux[:10], flux_err[:10], z_true[:10])


def test_oracle_photometry_adds_the_catalogue_noise():
    names = [b.name for b in BANDS]
    n = 4000
    truth = pd.DataFrame({"id": [f"g{i}" for i in range(n)]})
    for j, name in enumerate(names):
        truth[f"mag_{name}"] = 20.0 + 0.1 * j
        truth[f"magerr_{name}"] = 0.05
    flux, flux_err = oracle_photometry(truth, truth["id"][::-1].to_numpy(), seed=5)
    true_flux = 10 ** (-0.4 * (np.array([20.0 + 0.1 * j for j in range(9)]) - 22.5))
    np.testing.assert_allclose(flux_err[0], true_flux * 0.05 * np.log(10) / 2.5)
    pulls = (flux - true_flux) / flux_err
    assert abs(pulls.mean()) < 0.05 and pulls.std() == pytest.approx(1.0, abs=0.03)
    np.testing.assert_allclose(
        np.median(nanomaggies_to_mag(flux), axis=0), 20 + 0.1 * np.arange(9), atol=0.005
    )
    with pytest.raises(EvaluationError, match=r"not in the truth table, e.g. \['nope'\]"):
        oracle_photometry(truth, ["g1", "nope"])
    with pytest.raises(EvaluationError, match=r"lacks columns \['magerr_W2'\]"):
        oracle_photometry(truth.drop(columns="magerr_W2"), ["g1"])


def test_bad_photometry_shapes_are_named():
    with pytest.raises(EvaluationError, match=r"shape \(n, 9\).*\(3, 5\)"):
        template_chi2(np.ones((3, 5)), np.ones((3, 5)), GRID)
    with pytest.raises(EvaluationError, match="sys_err must lie in"):
        template_chi2(np.ones((3, 9)), np.ones((3, 9)), GRID, sys_err=2.0)


def test_knn_baseline_tolerates_a_band_without_any_measurement():
    flux, flux_err, z_index = template_catalogue(200, seed=6, noise=1.0)
    flux[:, 0] = np.nan  # FUV never measured
    flux_err[:, 0] = np.nan
    model = TabularBaseline(GRID, n_neighbors=10).fit(flux, flux_err, GRID.centres[z_index])
    probs = model.predict(flux[:20])
    assert np.all(np.isfinite(probs))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
