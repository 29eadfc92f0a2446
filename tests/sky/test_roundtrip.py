"""Photometry and astrometry round trip through the served products, on the real renderer.

Isolated bright point sources of known magnitude are rendered by `Universe.from_catalog`,
served over HTTP, and measured the way a client would: each product is linearised with its own
header keywords and `mantis.surveys` conversions, summed in a large aperture, and centroided.
"""

from __future__ import annotations

import asyncio
import io
import tarfile

import aiohttp
import numpy as np
import pandas as pd
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from mantis.sky import Universe
from mantis.sky.testing import serving_in_process
from mantis.surveys import (
    BANDS,
    galex_cps_to_nanomaggies,
    nanomaggies_to_mag,
    ps1_counts_to_nanomaggies,
    unwise_vega_to_ab_nanomaggies,
)

# four sources two arcminutes apart: isolated in every band (the unWISE PSF is 6 arcsec)
SOURCES = pd.DataFrame(
    {
        "id": ["a", "b", "c", "d"],
        "ra": [150.05, 150.09, 150.13, 150.17],
        "dec": [2.15, 2.19, 2.23, 2.27],
        "kind": "star",
        "size_arcsec": 0.0,
        **{f"mag_{b.name}": [14.6, 15.0, 15.4, 15.8] for b in BANDS},
    }
)
PS1_SIZE, UNWISE_SIZE, GALEX_SIZE = 120, 40, 50
GALEX_NAMES = {"n": "NUV", "f": "FUV"}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """Every product for every source, as (band, header, image, ra, dec, truth mag) rows."""
    path = tmp_path_factory.mktemp("roundtrip") / "sources.parquet"
    SOURCES.to_parquet(path)
    universe = Universe.from_catalog(path, seed=1)
    truth = universe.sources.set_index("id")

    async def fetch_all():
        rows = []
        async with serving_in_process(universe) as url, aiohttp.ClientSession() as session:
            for source_id, src in truth.iterrows():
                pos = {"ra": src.ra, "dec": src.dec}
                async with session.get(f"{url}/cgi-bin/ps1filenames.py", params=pos) as r:
                    table = (await r.text()).splitlines()
                for line in table[1:]:
                    fields = dict(zip(table[0].split(), line.split(), strict=True))
                    params = {**pos, "red": fields["filename"], "size": PS1_SIZE, "format": "fits"}
                    async with session.get(f"{url}/cgi-bin/fitscut.cgi", params=params) as r:
                        hdu = fits.open(io.BytesIO(await r.read()))[0]
                    rows.append((fields["filter"], hdu.header, hdu.data, src, source_id))
                params = {**pos, "size": UNWISE_SIZE, "file_img_m": "1"}
                async with session.get(f"{url}/cutout_fits", params=params) as r:
                    body = await r.read()
                with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as tar:
                    for member in tar.getmembers():
                        hdu = fits.open(io.BytesIO(tar.extractfile(member).read()))[0]
                        if hdu.data.shape == (UNWISE_SIZE, UNWISE_SIZE):  # an unclipped tile
                            band = f"W{hdu.header['BAND']}"
                            rows.append((band, hdu.header, hdu.data, src, source_id))
                params = {**pos, "layer": "galex", "size": GALEX_SIZE, "bands": "nf"}
                async with session.get(f"{url}/viewer/fits-cutout", params=params) as r:
                    hdu = fits.open(io.BytesIO(await r.read()))[0]
                for plane, letter in enumerate(hdu.header["BANDS"]):
                    rows.append((GALEX_NAMES[letter], hdu.header, hdu.data[plane], src, source_id))
        return rows, universe

    return asyncio.run(fetch_all())


def to_nanomaggies(band_name, header, image):
    """Linearise one product with its own header keywords."""
    if band_name in "grizy":
        return ps1_counts_to_nanomaggies(image, header["EXPTIME"], header["FPA.ZP"])
    if band_name.startswith("W"):
        return unwise_vega_to_ab_nanomaggies(image, band_name, header["MAGZP"])
    return galex_cps_to_nanomaggies(image, band_name)


def product_wcs(header):
    # wcslib reads the AIPS PC00i00j keywords of PS1 cutouts and warns they are deprecated
    import warnings

    from astropy.wcs import FITSFixedWarning

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"PC00\d00\d=", category=FITSFixedWarning)
        return WCS(header, naxis=2)


def radius_map(shape, x, y):
    ys, xs = np.mgrid[0 : shape[0], 0 : shape[1]]
    return xs, ys, np.hypot(xs - x, ys - y)


def test_every_band_of_every_source_was_served(served):
    rows, _ = served
    bands = sorted({(row[0], row[4]) for row in rows})
    assert bands == sorted((b.name, i) for b in BANDS for i in SOURCES["id"])


def test_aperture_magnitudes_match_truth_within_0_05_mag(served):
    rows, universe = served
    for band_name, header, image, src, source_id in rows:
        wcs = product_wcs(header)
        x, y = (float(v) for v in wcs.all_world2pix(src.ra, src.dec, 0))
        fwhm_px = universe.psf_fwhm(band_name, src.ra, src.dec) / (
            3600.0 * np.sqrt(abs(np.linalg.det(wcs.pixel_scale_matrix)))
        )
        _, _, r = radius_map(image.shape, x, y)
        aperture = r <= 4.0 * fwhm_px
        assert aperture.sum() > 20 and np.isfinite(image[aperture]).all()
        flux = float(to_nanomaggies(band_name, header, image)[aperture].sum())
        measured = float(nanomaggies_to_mag(flux))
        truth = src[f"mag_{band_name}"]
        assert measured == pytest.approx(truth, abs=0.05), (band_name, source_id)


def test_target_lies_within_0_1_pixel_of_the_requested_position(served):
    rows, universe = served
    for band_name, header, image, src, source_id in rows:
        wcs = product_wcs(header)
        x, y = (float(v) for v in wcs.all_world2pix(src.ra, src.dec, 0))
        fwhm_px = universe.psf_fwhm(band_name, src.ra, src.dec) / (
            3600.0 * np.sqrt(abs(np.linalg.det(wcs.pixel_scale_matrix)))
        )
        cx, cy = x, y
        for _ in range(3):  # window centred on the current estimate, then refined
            xs, ys, r = radius_map(image.shape, cx, cy)
            window = r <= 1.5 * fwhm_px
            weights = np.clip(image[window], 0, None)
            cx = float(np.sum(xs[window] * weights) / weights.sum())
            cy = float(np.sum(ys[window] * weights) / weights.sum())
        assert np.hypot(cx - x, cy - y) < 0.1, (band_name, source_id, cx - x, cy - y)
