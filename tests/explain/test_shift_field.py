"""The shift score's native-scale morphology and its field-level test of seeing and zero points."""

from __future__ import annotations

import numpy as np
import pytest

from mantis.explain import FieldReference, native_morphology
from mantis.explain._field import locus_residuals
from mantis.stack import healpix_cells

PIXEL = 0.25  # arcsec, the PS1 native grid
SIZE = 128


def _gaussian_cutouts(sigmas_arcsec, flux=200.0, noise=0.02, seed=0):
    """Centred circular Gaussians (five identical bands) plus a sky level and noise."""
    axis = (np.arange(SIZE) - (SIZE - 1) / 2.0) * PIXEL
    r2 = axis[:, None] ** 2 + axis[None, :] ** 2
    rng = np.random.default_rng(seed)
    images = []
    for sigma in sigmas_arcsec:
        profile = flux * np.exp(-r2 / (2 * sigma**2)) / (2 * np.pi * sigma**2) * PIXEL**2
        images.append(np.repeat(profile[None], 5, axis=0))
    images = np.array(images) + 0.5 + rng.normal(0.0, noise, (len(sigmas_arcsec), 5, SIZE, SIZE))
    return images.astype(np.float32), np.ones(images.shape, dtype=bool)


def test_native_morphology_reads_a_point_source_at_the_psf_width_and_a_galaxy_wider():
    psf_sigma = 1.2 / 2.3548  # a 1.2 arcsec FWHM PSF
    galaxy_sigma = np.hypot(psf_sigma, 1.5)  # a 1.5 arcsec Gaussian galaxy seen through it
    image, valid = _gaussian_cutouts([psf_sigma, galaxy_sigma])
    log_size, concentration, snr = native_morphology(image, valid, PIXEL).T
    # a Gaussian's own sigma, whatever the weight: the de-weighted second moment
    np.testing.assert_allclose(np.exp(log_size), [psf_sigma, galaxy_sigma], rtol=0.03)
    # flux inside 1" over inside 3" of a Gaussian: (1 - e^{-1/2s²}) / (1 - e^{-9/2s²})
    expected = [(1 - np.exp(-1 / (2 * s**2))) / (1 - np.exp(-9 / (2 * s**2))) for s in
                (psf_sigma, galaxy_sigma)]  # fmt: skip
    np.testing.assert_allclose(concentration, expected, rtol=0.05)  # pixelised apertures
    assert snr[0] > 100 and snr[1] > 100
    # the same object under a PSF 1.5 times wider reads 1.5 times wider
    wider, _ = _gaussian_cutouts([1.5 * psf_sigma])
    assert np.exp(native_morphology(wider, valid[:1], PIXEL)[0, 0]) == pytest.approx(
        1.5 * psf_sigma, rel=0.03
    )
    # no PS1 data: the no-data values, not NaN
    empty = native_morphology(np.zeros((1, 5, 8, 8)), np.zeros((1, 5, 8, 8), bool), PIXEL)
    np.testing.assert_array_equal(empty, [[np.log(10.0), 0.0, 0.0]])


def _cell_centres(n):
    """Centres of ``n`` nested HEALPix nside-64 cells (about 0.9 deg), 3 deg apart in RA."""
    import astropy.units as u
    from astropy_healpix import HEALPix

    grid = HEALPix(nside=64, order="nested")
    cells = healpix_cells(15.0 + 3.0 * np.arange(n), np.zeros(n), 64)
    lon, lat = grid.healpix_to_lonlat(cells)
    return list(zip(lon.to_value(u.deg), lat.to_value(u.deg), strict=True))


# Twenty sky cells, each with its own seeing
_CENTRES = _cell_centres(20)
_SLOPES = np.array([0.6, 0.3, 0.0, -0.2, -0.35])  # a one-parameter colour locus over 5 bands


def _field_objects(rng, centre, n, seeing, offset=None):
    """Objects of one cell: positions, sizes (seeing plus intrinsic), S/N and locus magnitudes."""
    ra = centre[0] + rng.uniform(-0.05, 0.05, n)
    dec = centre[1] + rng.uniform(-0.05, 0.05, n)
    intrinsic = rng.exponential(0.4, n)  # arcsec; a share of compact objects follow the PSF
    log_size = np.log(np.hypot(seeing / 2.3548, intrinsic))
    snr = rng.uniform(5.0, 200.0, n)
    colour = rng.uniform(-1.0, 1.0, n)
    mags = 20.0 + rng.uniform(-2, 2, n)[:, None] + colour[:, None] * _SLOPES
    mags = mags + rng.normal(0.0, 0.03, mags.shape)
    if offset is not None:
        mags[:, offset[0]] += offset[1]
    return ra, dec, log_size, snr, mags


def _reference(rng, seeings):
    parts = [_field_objects(rng, c, 80, s) for c, s in zip(_CENTRES, seeings, strict=True)]
    ra, dec, log_size, snr, mags = (np.concatenate(x) for x in zip(*parts, strict=True))
    residuals = locus_residuals(mags, mags, leave_one_out=True)
    return FieldReference(ra, dec, log_size, snr, residuals, mags, nside=64, min_objects=10)


def test_field_cells_are_distinct_and_a_catalogue_drawn_like_training_is_rarely_flagged():
    cells = healpix_cells(*np.array(_CENTRES).T, 64)
    assert len(np.unique(cells)) == len(_CENTRES)  # the test's premise: one cell per field
    rng = np.random.default_rng(1)
    seeings = rng.uniform(0.9, 1.5, len(_CENTRES))
    reference = _reference(rng, seeings)
    pvalues = []
    for repeat in range(3):  # new objects in the same fields, 25 per cell
        parts = [_field_objects(rng, c, 25, s) for c, s in zip(_CENTRES, seeings, strict=True)]
        ra, dec, log_size, snr, mags = (np.concatenate(x) for x in zip(*parts, strict=True))
        p = reference.pvalues(ra, dec, log_size, snr, mags, seed=repeat)
        assert np.isfinite(p).all()
        pvalues += [p[25 * i] for i in range(len(_CENTRES))]  # one value per cell
    pvalues = np.array(pvalues)
    # Bonferroni over six statistics is conservative: few small p-values, none below 0.01
    assert np.mean(pvalues < 0.1) <= 0.2
    assert np.min(pvalues) > 0.01
    assert np.median(pvalues) > 0.3


def test_a_field_with_worse_seeing_or_a_zero_point_offset_gets_a_small_field_pvalue():
    rng = np.random.default_rng(2)
    seeings = rng.uniform(0.9, 1.5, len(_CENTRES))
    reference = _reference(rng, seeings)
    worst = int(np.argmax(seeings))
    cases = {
        "seeing 1.5x": _field_objects(rng, _CENTRES[worst], 25, 1.5 * seeings[worst]),
        "r 0.2 mag": _field_objects(rng, _CENTRES[3], 25, seeings[3], offset=(1, 0.2)),
        "same field": _field_objects(rng, _CENTRES[3], 25, seeings[3]),
    }
    p = {name: reference.pvalues(*objects) for name, objects in cases.items()}
    assert np.all(p["seeing 1.5x"] < 0.01)
    assert np.all(p["r 0.2 mag"] < 0.01)
    assert np.all(p["same field"] > 0.05)
    # fewer objects than min_objects in a cell: no field part
    few = [x[:5] for x in cases["r 0.2 mag"]]
    assert np.isnan(reference.pvalues(*few)).all()
    # objects without PS1 data (NaN magnitudes) are not tested
    ra, dec, log_size, snr, mags = cases["r 0.2 mag"]
    mags = mags.copy()
    mags[:3] = np.nan
    out = reference.pvalues(ra, dec, log_size, snr, mags)
    assert np.isnan(out[:3]).all() and np.all(out[3:] < 0.01)


def test_locus_residuals_recover_a_band_offset():
    rng = np.random.default_rng(3)
    _, _, _, _, mags = _field_objects(rng, _CENTRES[0], 2000, 1.0)
    _, _, _, _, shifted = _field_objects(rng, _CENTRES[0], 200, 1.0, offset=(1, 0.2))
    residuals = locus_residuals(shifted, mags)
    assert np.median(residuals[:, 1]) == pytest.approx(0.2, abs=0.03)
    assert abs(np.median(locus_residuals(mags[:200], mags, leave_one_out=True)[:, 1])) < 0.02


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [("field_nside", 48, "power of two"), ("field_min_objects", 0, "integer >= 1")],
)
def test_field_settings_out_of_range_are_refused(key, value, message):
    from mantis.exceptions import ConfigError
    from mantis.explain._shift import settings_of

    assert settings_of()["field_nside"] == 64  # the shipped default
    with pytest.raises(ConfigError, match=message):
        settings_of({key: value})
