"""Forced aperture photometry: total fluxes of point sources, honest errors, missing pixels."""

from __future__ import annotations

import numpy as np
import pytest

from mantis.evaluate import EvaluationError
from mantis.evaluate._photometry import aperture_photometry
from mantis.surveys import band, survey


def point_source(size: int, pixel_scale: float, fwhm: float, total: float) -> np.ndarray:
    """A centred Gaussian point source integrated over pixels (flux conserving)."""
    from scipy.special import erf

    sigma = fwhm / 2.3548 / pixel_scale
    edges = np.arange(size + 1) - size / 2.0
    per_pixel = 0.5 * np.diff(erf(edges / (np.sqrt(2) * sigma)))
    return total * np.outer(per_pixel, per_pixel)


def upsampled_noise(rng, n, size, factor, sigma_native):
    """White noise on a grid `factor` times coarser, block-replicated flux-conservingly."""
    coarse = rng.normal(0.0, sigma_native, size=(n, size // factor, size // factor))
    return np.kron(coarse, np.ones((factor, factor))) / factor**2


@pytest.mark.parametrize(
    ("name", "pixel_scale", "factor"),
    [("r", 0.25, 1), ("NUV", 0.75, 2)],  # PS1 at native scale; GALEX up-sampled 2x
)
def test_point_source_flux_and_errors(name, pixel_scale, factor):
    rng = np.random.default_rng(0)
    n, size, total = 600, 64, 40.0
    fwhm = band(name).psf_fwhm
    assert survey(band(name).survey).pixel_scale / pixel_scale == factor
    image = point_source(size, pixel_scale, fwhm, total)
    sigma_native = 0.02 if factor == 1 else 0.15
    images = image[None, None] + upsampled_noise(rng, n, size, factor, sigma_native)[:, None]
    valid = np.ones(images.shape, dtype=bool)
    flux, flux_err = aperture_photometry(images, valid, pixel_scale, [name])
    # the point-source aperture correction restores the total flux
    assert np.mean(flux) == pytest.approx(total, rel=0.01)
    # quoted errors describe the scatter, correlated noise included
    assert np.std(flux) == pytest.approx(np.median(flux_err), rel=0.15)


def test_missing_pixels_make_the_band_missing_and_shapes_are_checked():
    size = 32
    images = np.zeros((2, 2, size, size), dtype=np.float32)
    images[:, :] = point_source(size, 1.0, 1.3, 10.0)
    valid = np.ones(images.shape, dtype=bool)
    valid[0, 1] = False  # no coverage
    flux, flux_err = aperture_photometry(images, valid, 1.0, ["g", "r"])
    assert np.isnan(flux[0, 1]) and np.isnan(flux_err[0, 1])
    assert flux[1, 1] == pytest.approx(10.0, rel=0.01)
    with pytest.raises(EvaluationError, match="2 band names for 3 image planes"):
        aperture_photometry(np.zeros((1, 3, 8, 8)), np.ones((1, 3, 8, 8), bool), 1.0, ["g", "r"])
    with pytest.raises(EvaluationError, match="unknown band 'u'"):
        aperture_photometry(images, valid, 1.0, ["g", "u"])
    with pytest.raises(EvaluationError, match="of one shape"):
        aperture_photometry(images, valid[:, :1], 1.0, ["g", "r"])
