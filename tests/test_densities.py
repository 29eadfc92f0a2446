"""Property tests of mantis.densities, and agreement with qp's ``hist`` ensembles."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from mantis import densities
from mantis.zgrid import ZGrid

GRID = ZGrid(0.0, 1.6, 40)

weights = arrays(
    np.float64,
    (3, GRID.n_bins),
    elements=st.one_of(st.just(0.0), st.floats(1e-3, 1e3)),
).filter(lambda w: (w.sum(axis=1) > 0).all())
levels = st.floats(0.001, 0.999)


@settings(max_examples=60, deadline=None)
@given(weights)
def test_normalised_rows_sum_to_one_and_keep_their_shape(w):
    probs = densities.normalise(w)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-12)
    # proportional to the weights
    np.testing.assert_allclose(probs * w.sum(axis=1, keepdims=True), w, rtol=1e-9, atol=1e-12)


@settings(max_examples=60, deadline=None)
@given(weights)
def test_cdf_is_monotone_from_zero_to_one(w):
    probs = densities.normalise(w)
    cdf = densities.cdf_at_edges(probs)
    assert (np.diff(cdf, axis=1) >= 0).all()
    np.testing.assert_allclose(cdf[:, 0], 0.0)
    np.testing.assert_allclose(cdf[:, -1], 1.0)
    z = np.linspace(-0.1, 1.7, 50)
    at = np.stack([densities.pit_at(probs, GRID, np.full(3, v)) for v in z], axis=1)
    assert (np.diff(at, axis=1) >= -1e-15).all()
    assert (at[:, 0] == 0).all() and (at[:, -1] == 1).all()


@settings(max_examples=60, deadline=None)
@given(weights, levels)
def test_cdf_of_the_quantile_is_the_level(w, level):
    probs = densities.normalise(w)
    q = densities.quantiles(probs, GRID, [level])[:, 0]
    np.testing.assert_allclose(densities.pit_at(probs, GRID, q), level, atol=1e-9)


@settings(max_examples=60, deadline=None)
@given(weights, st.floats(0.0, 1.6, exclude_max=True))
def test_quantile_of_the_cdf_is_the_value_inside_the_support(w, z):
    probs = densities.normalise(w)
    k = GRID.bin_index(z)
    inside = probs[:, k] > 0  # z inside a bin with mass: F is strictly increasing there
    level = densities.pit_at(probs, GRID, np.full(3, z))
    ok = inside & (level > 0) & (level < 1)
    if ok.any():
        back = np.array([densities.quantiles(probs[i : i + 1], GRID, [level[i]])[0, 0]
                         for i in np.flatnonzero(ok)])  # fmt: skip
        np.testing.assert_allclose(back, z, atol=1e-9)


@settings(max_examples=40, deadline=None)
@given(weights, levels)
def test_intervals_hold_their_mass(w, level):
    probs = densities.normalise(w)
    lo, hi = densities.central_interval(probs, GRID, level).T
    mass = densities.pit_at(probs, GRID, hi) - densities.pit_at(probs, GRID, lo)
    np.testing.assert_allclose(mass, level, atol=1e-9)
    lo, hi = densities.hpd_interval(probs, GRID, level).T
    mass = densities.pit_at(probs, GRID, hi) - densities.pit_at(probs, GRID, lo)
    assert (mass >= level - 1e-9).all() and (lo < hi).all()


@settings(max_examples=40, deadline=None)
@given(weights)
def test_moments_and_rebinning(w):
    probs = densities.normalise(w)
    mean, std = densities.mean(probs, GRID), densities.std(probs, GRID)
    assert ((mean >= GRID.centres[0]) & (mean <= GRID.centres[-1])).all() and (std >= 0).all()
    fine = ZGrid(0.0, 1.6, 160)  # each bin split in four: no information lost
    back = densities.rebin(densities.rebin(probs, GRID, fine), fine, GRID)
    np.testing.assert_allclose(back, probs, atol=1e-12)
    np.testing.assert_allclose(densities.mean(densities.rebin(probs, GRID, fine), fine), mean,
                               atol=1e-12)  # fmt: skip


def test_odds_mode_and_errors():
    probs = np.zeros((1, GRID.n_bins))
    probs[0, 10] = 1.0
    assert densities.mode(probs, GRID)[0] == pytest.approx(GRID.centres[10])
    assert densities.odds(probs, GRID)[0] == pytest.approx(1.0)
    assert densities.odds(probs, GRID, centre=1.5)[0] == pytest.approx(0.0)
    with pytest.raises(densities.DensityError, match=r"levels must lie in \[0, 1\]"):
        densities.quantiles(probs, GRID, [1.5])
    with pytest.raises(densities.DensityError, match="credible level must lie"):
        densities.central_interval(probs, GRID, 1.0)
    with pytest.raises(densities.DensityError, match="zero everywhere"):
        densities.normalise(np.zeros((1, 4)))
    with pytest.raises(densities.DensityError, match=r"shape \(n_objects, 40\)"):
        densities.mean(np.ones((2, 3)) / 3, GRID)
    with pytest.raises(densities.DensityError, match="no mass inside the target grid"):
        densities.rebin(probs, GRID, ZGrid(1.0, 1.6, 10))


def random_densities(seed: int, n: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return densities.normalise(rng.gamma(0.4, size=(n, GRID.n_bins)))


def test_agrees_with_qp_on_random_densities():
    qp = pytest.importorskip("qp")
    probs = random_densities(3, 200)
    ensemble = densities.to_qp(probs, GRID)
    assert isinstance(ensemble, qp.Ensemble)
    z = np.random.default_rng(4).uniform(0.0, 1.6, 200)
    # each row's CDF at its own redshift
    np.testing.assert_allclose(densities.pit_at(probs, GRID, z), ensemble.cdf(z[:, None])[:, 0],
                               atol=1e-6)  # fmt: skip
    levels = np.array([0.05, 0.16, 0.5, 0.84, 0.95])
    np.testing.assert_allclose(densities.quantiles(probs, GRID, levels),
                               ensemble.ppf(levels), atol=1e-6)  # fmt: skip
    np.testing.assert_allclose(densities.median(probs, GRID), ensemble.median()[:, 0], atol=1e-6)
    np.testing.assert_allclose(densities.from_qp(ensemble, GRID), probs, atol=1e-9)
    # a smooth qp ensemble lands on the grid with its mean and spread
    gauss = qp.Ensemble(qp.stats.norm, data={"loc": np.array([[0.6]]), "scale": np.array([[0.1]])})
    binned = densities.from_qp(gauss, GRID)
    assert densities.mean(binned, GRID)[0] == pytest.approx(0.6, abs=1e-3)
    assert densities.std(binned, GRID)[0] == pytest.approx(0.1, abs=2e-3)
