"""SEDs through the filters: cross-checked against SkyPy's own kcorrect photometry."""

from __future__ import annotations

import numpy as np
import pytest

from mantis.sky._seds import LF_FILTER, galaxy_magnitudes, star_colours
from mantis.surveys import BAND_INDEX, BANDS

pytestmark = pytest.mark.filterwarnings(
    "ignore:The TestRunner:astropy.utils.exceptions.AstropyDeprecationWarning"
)


def test_galaxy_magnitudes_agree_with_skypy_kcorrect():
    from astropy.cosmology import Planck18
    from skypy.galaxies.spectrum import kcorrect

    rng = np.random.default_rng(5)
    n = 12
    z = rng.uniform(0.05, 1.0, n)
    coeff = rng.dirichlet(np.ones(5), n) * np.array([3e9, 3e6, 2e9, 2e10, 1e9])
    coeff /= coeff.sum(axis=1, keepdims=True)
    abs_b = rng.uniform(-22.0, -18.0, n)
    ours = galaxy_magnitudes(coeff, z, abs_b, Planck18.distmod(z).value)
    mass = kcorrect.stellar_mass(coeff, abs_b, LF_FILTER)
    names = ["g", "r", "i", "z", "W1", "W2", "NUV"]
    filters = [BANDS[BAND_INDEX[b]].filter_name for b in names]
    theirs = kcorrect.apparent_magnitudes(coeff, z, filters, Planck18, stellar_mass=mass)
    cols = [BAND_INDEX[b] for b in names]
    np.testing.assert_allclose(ours[:, cols], theirs, atol=0.02)


def test_star_colours_follow_temperature():
    colours = star_colours(np.array([3500.0, 5800.0, 10000.0]))
    g_r = colours[:, BAND_INDEX["g"]] - colours[:, BAND_INDEX["r"]]
    nuv_r = colours[:, BAND_INDEX["NUV"]] - colours[:, BAND_INDEX["r"]]
    assert np.all(np.diff(g_r) < 0) and np.all(np.diff(nuv_r) < 0)  # hotter is bluer
    # the Sun-like black body: g - r about 0.4 (the Sun's own is 0.44 in PS1)
    assert 0.3 < g_r[1] < 0.6
    np.testing.assert_allclose(colours[:, BAND_INDEX["r"]], 0.0)
