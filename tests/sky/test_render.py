"""Rendering: photometry, astrometry, PSF, noise, determinism and bad requests."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from astropy.wcs import WCS

from mantis.exceptions import MantisError
from mantis.sky import Universe
from mantis.surveys import BANDS, band, mag_to_nanomaggies, nanomaggies_to_mag, survey

pytestmark = pytest.mark.filterwarnings(
    "ignore:The TestRunner:astropy.utils.exceptions.AstropyDeprecationWarning"
)

STAR = (40.0, 10.0)
GALAXY = (41.0, 10.0)  # a degree away: isolated


def make_wcs(ra, dec, scale, n, *, rotation_deg=0.0, proj="TAN", crpix_shift=(0.0, 0.0)):
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = [f"RA---{proj}", f"DEC--{proj}"]
    wcs.wcs.crval = [ra, dec]
    wcs.wcs.crpix = [(n + 1) / 2 + crpix_shift[0], (n + 1) / 2 + crpix_shift[1]]
    c, s = np.cos(np.radians(rotation_deg)), np.sin(np.radians(rotation_deg))
    wcs.wcs.cd = (scale / 3600.0) * np.array([[-c, s], [s, c]])
    return wcs


@pytest.fixture(scope="module")
def bright_universe(tmp_path_factory) -> Universe:
    table = pd.DataFrame({"id": ["star", "gal"], "ra": [STAR[0], GALAXY[0]],
                          "dec": [STAR[1], GALAXY[1]], "z": [0.0, 0.2], "kind": ["star", "galaxy"],
                          "size_arcsec": [0.0, 1.0], "ellipticity": [0.0, 0.3],
                          "pa_deg": [0.0, 40.0], "sersic_n": [1.0, 1.0]})  # fmt: skip
    for i, b in enumerate(BANDS):
        table[f"mag_{b.name}"] = 17.0 + 0.1 * i
    path = tmp_path_factory.mktemp("cat") / "bright.parquet"
    table.to_parquet(path)
    return Universe.from_catalog(path, seed=1)


@pytest.fixture(scope="module")
def test_universe() -> Universe:
    return Universe.from_config("test", seed=0)


def native(band_name: str) -> tuple[float, int]:
    b = band(band_name)
    return survey(b.survey).pixel_scale, {"ps1": 170, "galex": 64, "unwise": 64}[b.survey]


@pytest.mark.parametrize("band_name", [b.name for b in BANDS])
@pytest.mark.parametrize("source", ["star", "gal"])
def test_flux_round_trip_in_every_band(bright_universe, band_name, source):
    ra, dec = STAR if source == "star" else GALAXY
    scale, n = native(band_name)
    pixels = bright_universe.render(band_name, make_wcs(ra, dec, scale, n), (n, n), noise=False)
    assert pixels.dtype == np.float32
    row = bright_universe.sources.set_index("id").loc[source]
    truth = row[f"mag_{band_name}"]
    total = float(pixels.sum(dtype=np.float64))
    assert total == pytest.approx(float(mag_to_nanomaggies(truth)), rel=0.01)
    assert abs(float(nanomaggies_to_mag(total)) - truth) < 0.05


@pytest.mark.parametrize(
    ("band_name", "rotation", "proj", "shift"),
    [("r", 0.0, "TAN", (3.37, -5.81)), ("g", 33.0, "SIN", (-7.2, 2.45)),
     ("NUV", 0.0, "TAN", (1.3, 0.71)), ("W1", -20.0, "TAN", (-0.4, 2.2))],
)  # fmt: skip
def test_point_source_lands_where_the_wcs_says(bright_universe, band_name, rotation, proj, shift):
    scale, n = native(band_name)
    n = min(n, 101)
    wcs = make_wcs(*STAR, scale, n, rotation_deg=rotation, proj=proj, crpix_shift=shift)
    img = bright_universe.render(band_name, wcs, (n, n), noise=False).astype(float)
    yy, xx = np.mgrid[:n, :n]
    x0, y0 = wcs.all_world2pix(STAR[0], STAR[1], 0)
    assert abs(x0 - (n - 1) / 2) > 0.3  # not trivially centred
    cx, cy = (img * xx).sum() / img.sum(), (img * yy).sum() / img.sum()
    assert abs(cx - x0) < 0.1 and abs(cy - y0) < 0.1, (cx - x0, cy - y0)


@pytest.mark.parametrize(("band_name", "rotation"), [("i", 0.0), ("z", 25.0), ("W1", 0.0)])
def test_analytic_psf_matches_galsim_drawing(bright_universe, band_name, rotation):
    import galsim

    from mantis.sky._render import local_jacobian, psf_profile

    scale, n = native(band_name)
    n = 41
    wcs = make_wcs(*STAR, scale, n, rotation_deg=rotation, crpix_shift=(0.31, -0.27))
    ours = bright_universe.render(band_name, wcs, (n, n), noise=False)
    jac, ra, dec = local_jacobian(wcs, (n, n))
    fwhm = bright_universe.psf_fwhm(band_name, ra, dec)
    flux = float(mag_to_nanomaggies(bright_universe.sources.loc[0, f"mag_{band_name}"]))
    x, y = wcs.all_world2pix(STAR[0], STAR[1], 0)
    reference = galsim.ImageD(n, n, wcs=galsim.JacobianWCS(*jac.ravel()))
    psf_profile(band_name, round(fwhm, 4)).withFlux(flux).drawImage(
        image=reference, method="no_pixel", offset=(x - (n - 1) / 2, y - (n - 1) / 2)
    )
    np.testing.assert_allclose(ours, reference.array, atol=2e-4 * reference.array.max())


def _fwhm_from_area(img: np.ndarray, scale: float) -> float:
    area = np.count_nonzero(img >= 0.5 * img.max())
    return 2.0 * np.sqrt(area / np.pi) * scale


@pytest.mark.parametrize(("band_name", "scale"), [("r", 0.04), ("y", 0.04), ("FUV", 0.15),
                                                  ("W2", 0.25)])  # fmt: skip
def test_psf_width_matches_psf_fwhm(bright_universe, band_name, scale):
    expected = bright_universe.psf_fwhm(band_name, *STAR)
    lo, hi = band(band_name).psf_fwhm_range
    assert lo <= expected <= hi
    n = int(4 * expected / scale) | 1
    img = bright_universe.render(band_name, make_wcs(*STAR, scale, n), (n, n), noise=False)
    assert _fwhm_from_area(img, scale) == pytest.approx(expected, rel=0.03)


def test_seeing_varies_smoothly_over_the_sky(bright_universe):
    ras = np.linspace(0, 360, 73)
    fwhm = np.array([bright_universe.psf_fwhm("r", ra, 20.0) for ra in ras])
    lo, hi = band("r").psf_fwhm_range
    assert fwhm.min() >= lo and fwhm.max() <= hi
    assert fwhm.max() - fwhm.min() > 0.3 * (hi - lo)
    near = bright_universe.psf_fwhm("r", 10.001, 20.0)
    assert near == pytest.approx(bright_universe.psf_fwhm("r", 10.0, 20.0), abs=1e-3)


@pytest.mark.parametrize("band_name", ["g", "NUV", "W1"])
def test_noise_gives_snr_5_at_the_depth(bright_universe, band_name):
    scale, n = native(band_name)
    # an empty patch: the pixel scatter is the advertised sigma
    empty = make_wcs(200.0, -20.0, scale, n)
    sky = bright_universe.render(band_name, empty, (n, n))
    sigma = bright_universe.noise_sigma(band_name, empty, (n, n))
    assert np.std(sky) == pytest.approx(sigma, rel=0.05)
    assert abs(np.mean(sky)) < 5 * sigma / n  # sky-subtracted
    # optimal (PSF-weighted) S/N of a point source: sqrt(sum(model^2)) / sigma
    star = make_wcs(*STAR, scale, n)
    model = bright_universe.render(band_name, star, (n, n), noise=False).astype(float)
    depth_flux = mag_to_nanomaggies(band(band_name).depth_5sigma)
    model *= depth_flux / model.sum()
    sigma_here = bright_universe.noise_sigma(band_name, star, (n, n))
    assert np.sqrt(np.sum(model**2)) / sigma_here == pytest.approx(5.0, rel=0.02)


def test_render_is_deterministic_per_request(test_universe):
    spec = test_universe.spec_catalog()
    ra, dec = spec.loc[0, ["ra", "dec"]]
    wcs = make_wcs(ra, dec, 0.25, 170)
    first = test_universe.render("r", wcs, (170, 170))
    again = test_universe.render("r", wcs, (170, 170))
    test_universe.render("W1", make_wcs(ra, dec, 2.75, 32), (32, 32))
    test_universe.render(
        "r", make_wcs(spec.loc[1, "ra"], spec.loc[1, "dec"], 0.25, 170), (170, 170)
    )
    later = test_universe.render("r", wcs, (170, 170))
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(first, later)
    fresh = Universe(test_universe.sources, seed=0).render("r", wcs, (170, 170))
    np.testing.assert_array_equal(first, fresh)
    other_band = test_universe.render("i", wcs, (170, 170))
    assert not np.array_equal(
        first - test_universe.render("r", wcs, (170, 170), noise=False),
        other_band - test_universe.render("i", wcs, (170, 170), noise=False),
    )


def test_spec_targets_are_visible_above_the_noise(test_universe):
    spec = test_universe.spec_catalog().head(5)
    for ra, dec in zip(spec["ra"], spec["dec"], strict=True):
        wcs = make_wcs(ra, dec, 0.25, 64)
        clean = test_universe.render("i", wcs, (64, 64), noise=False)
        sigma = test_universe.noise_sigma("i", wcs, (64, 64))
        yy, xx = np.mgrid[:64, :64]
        aperture = np.hypot(xx - 31.5, yy - 31.5) < 8  # 2 arcsec radius
        snr = clean[aperture].sum() / (sigma * np.sqrt(aperture.sum()))
        assert snr > 3, (ra, dec, snr)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("u", (10, 10)), r"unknown band 'u'; allowed: FUV, NUV, g, r, i, z, y, W1, W2"),
        (("r", (0, 10)), r"shape must be two sizes in 1\.\.8192, got \(0, 10\)"),
    ],
)
def test_bad_requests_are_named(bright_universe, args, message):
    band_name, shape = args
    with pytest.raises(MantisError, match=message):
        bright_universe.render(band_name, make_wcs(*STAR, 0.25, 10), shape)


def test_non_celestial_wcs_is_rejected(bright_universe):
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["LINEAR", "LINEAR"]
    with pytest.raises(MantisError, match="celestial"):
        bright_universe.render("r", wcs, (10, 10))
