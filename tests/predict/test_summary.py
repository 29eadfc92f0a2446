import numpy as np
import pytest
from scipy import stats

from mantis.densities import quantiles
from mantis.predict import summarise_densities
from mantis.zgrid import ZGrid

GRID = ZGrid(0.0, 1.6, 400)


def gaussian_probs(mu, sigma):
    cdf = stats.norm.cdf(GRID.edges, mu, sigma)
    return np.diff(cdf)[None, :] / (cdf[-1] - cdf[0])


@pytest.mark.parametrize(("mu", "sigma"), [(0.5, 0.05), (0.9, 0.1), (0.3, 0.02)])
def test_gaussian_summary_matches_its_parameters(mu, sigma):
    s = {k: v[0] for k, v in summarise_densities(gaussian_probs(mu, sigma), GRID).items()}
    assert s["z_mean"] == pytest.approx(mu, abs=1e-4)
    assert s["z_median"] == pytest.approx(mu, abs=1e-4)
    assert abs(s["z_mode"] - mu) <= GRID.width / 2 + 1e-12
    assert s["z_std"] == pytest.approx(sigma, rel=2e-3)
    assert s["z_lo68"] == pytest.approx(mu - sigma, abs=2e-4)
    assert s["z_hi68"] == pytest.approx(mu + sigma, abs=2e-4)
    assert s["z_lo95"] == pytest.approx(stats.norm.ppf(0.025, mu, sigma), abs=2e-4)
    assert s["z_hi95"] == pytest.approx(stats.norm.ppf(0.975, mu, sigma), abs=2e-4)
    half = 0.06 * (1 + s["z_mode"])
    expected = stats.norm.cdf(s["z_mode"] + half, mu, sigma) - stats.norm.cdf(
        s["z_mode"] - half, mu, sigma
    )
    assert s["odds"] == pytest.approx(expected, abs=1e-3)


def test_quantiles_of_a_uniform_density_are_linear():
    probs = np.full((1, GRID.n_bins), 1.0 / GRID.n_bins)
    levels = np.array([0.1, 0.25, 0.5, 0.9])
    np.testing.assert_allclose(quantiles(probs, GRID, levels)[0], 1.6 * levels, atol=1e-12)


def test_shape_mismatch_is_reported():
    with pytest.raises(ValueError, match=r"expected \(n_objects, 400\)"):
        summarise_densities(np.ones((2, 300)) / 300, GRID)
