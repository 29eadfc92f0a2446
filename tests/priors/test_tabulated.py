import numpy as np
import pytest
from scipy import stats

from mantis.priors import TabulatedRedshiftPrior, prospector_prior_class, soften_density
from mantis.zgrid import ZGrid

GRID = ZGrid(0.0, 1.6, 400)


def bimodal_probs(grid: ZGrid = GRID) -> np.ndarray:
    z = grid.centres
    dens = 0.7 * stats.norm.pdf(z, 0.35, 0.04) + 0.3 * stats.norm.pdf(z, 1.1, 0.08)
    return dens / dens.sum()


@pytest.fixture
def prior():
    return TabulatedRedshiftPrior(GRID.edges, bimodal_probs())


def exact_cdf(probs, z):
    """CDF of the piecewise-constant density, computed independently of the class."""
    z = np.atleast_1d(z)
    out = np.zeros_like(z, dtype=float)
    for p, lo, hi in zip(probs, GRID.edges[:-1], GRID.edges[1:], strict=True):
        out += p * np.clip((z - lo) / (hi - lo), 0.0, 1.0)
    return out


def test_unit_transform_maps_uniform_draws_to_the_density(prior):
    rng = np.random.default_rng(1)
    draws = prior.unit_transform(rng.random(20000))
    probs = bimodal_probs()
    result = stats.kstest(draws, lambda z: exact_cdf(probs, z))
    assert result.pvalue > 0.01
    # and the histogram of draws follows the per-bin probabilities (chi-square, coarse bins)
    counts, _ = np.histogram(draws, bins=GRID.edges[::20])
    expected = probs.reshape(-1, 20).sum(axis=1) * draws.size
    keep = expected > 5
    chi2 = (((counts - expected) ** 2)[keep] / expected[keep]).sum()
    assert stats.chi2.sf(chi2, keep.sum() - 1) > 0.001


def test_a_wrong_density_fails_the_same_ks_test(prior):
    rng = np.random.default_rng(1)
    draws = prior.unit_transform(rng.random(20000))
    shifted = np.roll(bimodal_probs(), 10)
    assert stats.kstest(draws, lambda z: exact_cdf(shifted, z)).pvalue < 1e-6


@pytest.mark.parametrize(("broaden", "floor"), [(1.0, 0.0), (2.0, 0.0), (1.0, 0.05), (0.5, 0.01)])
def test_probability_integrates_to_one_over_its_bounds(broaden, floor):
    prior = TabulatedRedshiftPrior(GRID.edges, bimodal_probs(), broaden=broaden, floor=floor)
    lo, hi = prior.bounds()
    z = np.linspace(lo, hi, 400 * 50 + 1)
    mid = 0.5 * (z[1:] + z[:-1])  # midpoint rule is exact on a piecewise-constant density
    total = np.sum(np.exp(prior(mid)) * np.diff(z))
    assert total == pytest.approx(1.0, abs=1e-9)
    assert np.all(np.exp(prior(np.array([lo - 0.01, hi + 0.01]))) == 0.0)


def test_inverse_unit_transform_undoes_unit_transform(prior):
    u = np.linspace(0.001, 0.999, 101)
    np.testing.assert_allclose(prior.inverse_unit_transform(prior.unit_transform(u)), u, atol=1e-12)


def test_bounds_follow_the_support_and_the_floor_opens_the_whole_grid():
    probs = np.zeros(GRID.n_bins)
    probs[100:120] = 1.0
    narrow = TabulatedRedshiftPrior(GRID.edges, probs)
    assert narrow.bounds() == pytest.approx((GRID.edges[100], GRID.edges[120]))
    assert narrow.range == narrow.bounds()
    assert np.isneginf(narrow(0.1))
    floored = TabulatedRedshiftPrior(GRID.edges, probs, floor=0.01)
    assert floored.bounds() == pytest.approx((0.0, 1.6))
    assert np.isfinite(floored(0.1))
    # every draw lies inside the bounds, also for u at the very ends
    assert np.all(
        (narrow.unit_transform([0.0, 1.0]) >= 0.4) & (narrow.unit_transform([0.0, 1.0]) <= 0.48)
    )


def test_broadening_widens_and_keeps_the_mode(prior):
    wide = TabulatedRedshiftPrior(GRID.edges, bimodal_probs(), broaden=3.0)
    z = GRID.centres
    sd = [np.sqrt(p.params["probs"] @ z**2 - (p.params["probs"] @ z) ** 2) for p in (prior, wide)]
    assert sd[1] > sd[0]
    assert np.argmax(wide.params["probs"]) == np.argmax(prior.params["probs"])


def test_update_replaces_rather_than_compounds(prior):
    prior.update(broaden=2.0)
    prior.update(broaden=2.0)
    once = TabulatedRedshiftPrior(GRID.edges, bimodal_probs(), broaden=2.0)
    np.testing.assert_allclose(prior.params["probs"], once.params["probs"])


def test_sample_shape_and_reproducibility(prior):
    assert prior.sample().shape == (1,)
    assert len(prior) == 1
    a = prior.sample(5, rng=np.random.default_rng(3))
    b = prior.sample(5, rng=np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"broaden": 0.0}, "broaden"), ({"floor": 1.0}, "floor"), ({"broaden": np.nan}, "broaden")],
)
def test_bad_softening_is_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        soften_density(bimodal_probs(), **kwargs)


def test_bad_shapes_and_densities_are_rejected():
    with pytest.raises(ValueError, match="edges"):
        TabulatedRedshiftPrior(GRID.edges[:-1], bimodal_probs())
    with pytest.raises(ValueError, match="zero everywhere"):
        TabulatedRedshiftPrior(GRID.edges, np.zeros(GRID.n_bins))
    with pytest.raises(ValueError, match="allowed: broaden, floor"):
        TabulatedRedshiftPrior(GRID.edges, bimodal_probs()).update(mean=1.0)


def test_works_inside_a_real_prospector_model():
    from prospect.models import priors as prospect_priors
    from prospect.models.parameters import ProspectorParams

    prior = prospector_prior_class()(GRID.edges, bimodal_probs())
    assert isinstance(prior, prospect_priors.Prior)
    model = ProspectorParams({"zred": {"N": 1, "isfree": True, "init": 0.35, "prior": prior}})
    assert tuple(model.theta_bounds()[0]) == pytest.approx(prior.bounds())
    theta = model.prior_transform(np.array([0.5]))
    assert theta[0] == pytest.approx(prior.unit_transform(0.5))
    lnp = model.prior_product(np.array([0.35]))
    assert lnp == pytest.approx(float(prior(0.35)))
