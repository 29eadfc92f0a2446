"""Synthetic raw products for tests/stack, with each service's own header conventions.

Sources are circular Gaussians with the band's PSF width, integrated exactly over every pixel
(error functions), placed with astropy's reading of the header, and scaled from an AB magnitude
with each survey's published zero point (reference/services.md), not with mantis' conversions.
"""

from __future__ import annotations

import gzip
import io
import math
import tarfile

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS
from scipy.special import erf

from mantis.surveys import band

PS1_CDELT = 6.94444461259988e-05


def gaussian_image(shape, x0, y0, sigma_pix, total):
    """Pixel-integrated circular Gaussian (0-based centre x0, y0) holding ``total``."""

    def edges(n, c):
        e = (np.arange(n + 1) - 0.5 - c) / (math.sqrt(2) * sigma_pix)
        return np.diff(0.5 * erf(e))

    return total * np.outer(edges(shape[0], y0), edges(shape[1], x0))


def sigma_arcsec(band_name):
    return band(band_name).psf_fwhm / (2 * math.sqrt(2 * math.log(2)))


def fits_bytes(hdus):
    buffer = io.BytesIO()
    fits.HDUList(hdus).writeto(buffer)
    return buffer.getvalue()


def ps1_header(ra, dec, size, *, band_name="r", exptime=400.0, cell_offset=(1.2, 0.8)):
    """fitscut header: CRVAL at a projection-cell centre, shifted CRPIX, AIPS PC keywords."""
    header = fits.Header()
    header["CTYPE1"], header["CTYPE2"] = "RA---TAN", "DEC--TAN"
    header["CRVAL1"] = ra + cell_offset[0]
    header["CRVAL2"] = dec + cell_offset[1]
    header["CRPIX1"], header["CRPIX2"] = 1.0, 1.0
    header["CDELT1"], header["CDELT2"] = PS1_CDELT, PS1_CDELT
    header["PC001001"], header["PC001002"] = -1.0, 0.0
    header["PC002001"], header["PC002002"] = 0.0, 1.0
    # put the object near the cutout centre, on the skycell's integer pixel grid
    x, y = _aips_wcs(header).all_world2pix(ra, dec, 0)
    header["CRPIX1"] = 1.0 - round(float(x)) + size // 2
    header["CRPIX2"] = 1.0 - round(float(y)) + size // 2
    header["RADESYS"] = "FK5"
    header["EXPTIME"] = exptime
    header["HIERARCH FPA.ZP"] = 25.0
    header["HIERARCH FPA.FILTER"] = f"{band_name}.00000"
    return header


def _aips_wcs(header):
    clean = fits.Header()
    for key in ("CTYPE1", "CTYPE2", "CRVAL1", "CRVAL2", "CRPIX1", "CRPIX2"):
        clean[key] = header[key]
    for i in (1, 2):
        for j in (1, 2):
            clean[f"CD{i}_{j}"] = header[f"CDELT{i}"] * header[f"PC00{i}00{j}"]
    return WCS(clean)


def ps1_fits(ra, dec, mag, *, band_name="r", size=170, exptime=400.0, nan_columns=0, **kw):
    """PS1 fitscut cutout in linear counts (ZP 25 + 2.5 log10 EXPTIME), NaN-padded columns."""
    header = ps1_header(ra, dec, size, band_name=band_name, exptime=exptime, **kw)
    x, y = _aips_wcs(header).all_world2pix(ra, dec, 0)
    counts_total = 10 ** (-0.4 * (mag - 25.0 - 2.5 * math.log10(exptime)))
    data = gaussian_image(
        (size, size), float(x), float(y), sigma_arcsec(band_name) / 0.25, counts_total
    )
    data = data.astype(np.float32)
    if nan_columns:
        data[:, -nan_columns:] = np.nan
    return fits_bytes([fits.PrimaryHDU(data, header)])


def tan_cd_header(crval, crpix, scale_arcsec, width, height):
    header = fits.Header()
    header["CTYPE1"], header["CTYPE2"] = "RA---TAN", "DEC--TAN"
    header["EQUINOX"] = 2000.0
    header["CRVAL1"], header["CRVAL2"] = crval
    header["CRPIX1"], header["CRPIX2"] = crpix
    header["CD1_1"], header["CD1_2"] = -scale_arcsec / 3600, 0.0
    header["CD2_1"], header["CD2_2"] = 0.0, scale_arcsec / 3600
    header["IMAGEW"], header["IMAGEH"] = width, height
    return header


VEGA_TO_AB = {"W1": 2.699, "W2": 3.339}


def unwise_tile_members(ra, dec, mags, *, tile_centre, box, tile_size=2048, coadd="1501p022"):
    """Members of one tile's cutout: box ``(x0, y0, x1, y1)`` of the tile, Vega nanomaggies."""
    x0, y0, x1, y1 = box
    tile_crpix = (tile_size + 1) / 2.0
    header = tan_cd_header(tile_centre, (tile_crpix - x0, tile_crpix - y0), 2.75, x1 - x0, y1 - y0)
    header["MAGZP"] = 22.5
    header["EPOCH"] = -1
    wcs = WCS(tan_cd_header(tile_centre, (tile_crpix - x0, tile_crpix - y0), 2.75, 1, 1))
    x, y = wcs.all_world2pix(ra, dec, 0)
    members = {}
    for band_name, mag in mags.items():
        number = band_name[1]
        vega_nmgy = 10 ** (-0.4 * (mag - VEGA_TO_AB[band_name] - 22.5))
        data = gaussian_image(
            (y1 - y0, x1 - x0), float(x), float(y), sigma_arcsec(band_name) / 2.75, vega_nmgy
        ).astype(np.float32)
        head = header.copy()
        head["BAND"] = int(number)
        members[f"unwise-{coadd}-w{number}-img-m.fits"] = fits_bytes([fits.PrimaryHDU(data, head)])
        ivar = np.full(data.shape, 400.0, dtype=np.float32)  # Vega nanomaggies^-2
        members[f"unwise-{coadd}-w{number}-invvar-m.fits.gz"] = gzip.compress(
            fits_bytes([fits.PrimaryHDU(ivar, head)])
        )
        n_exp = np.full(data.shape, 90, dtype=np.int32)
        members[f"unwise-{coadd}-w{number}-n-m.fits.gz"] = gzip.compress(
            fits_bytes([fits.PrimaryHDU(n_exp, head)])
        )
    return members


def tar_gz(members):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return buffer.getvalue()


def unwise_tar(ra, dec, mags, *, size=32):
    """A single-tile answer centred on the object (tile centre 0.3 deg away)."""
    tile_centre = (ra - 0.3, dec + 0.2)
    wcs = WCS(tan_cd_header(tile_centre, (1024.5, 1024.5), 2.75, 1, 1))
    x, y = wcs.all_world2pix(ra, dec, 0)
    x0, y0 = round(float(x)) - size // 2, round(float(y)) - size // 2
    box = (x0, y0, x0 + size, y0 + size)
    return tar_gz(unwise_tile_members(ra, dec, mags, tile_centre=tile_centre, box=box))


GALEX_ZP = {"FUV": 18.82, "NUV": 20.08}


def galex_fits(ra, dec, mags, *, size=32, gap_rows=0, invvar=True):
    """Viewer cube (NUV, FUV) in counts/s centred on the request; zeros in the gap rows."""
    header = tan_cd_header((ra, dec), ((size + 1) / 2, (size + 1) / 2), 1.5, size, size)
    header["SURVEY"], header["VERSION"], header["BANDS"] = "GALEX", "GR6/7", "nf"
    header["BAND0"], header["BAND1"] = "n", "f"
    planes, weights = [], []
    for band_name in ("NUV", "FUV"):
        cps = 10 ** (-0.4 * (mags[band_name] - GALEX_ZP[band_name]))
        centre = (size - 1) / 2
        image = gaussian_image((size, size), centre, centre, sigma_arcsec(band_name) / 1.5, cps)
        weight = np.full((size, size), 1e4)
        if gap_rows:
            image[:gap_rows] = 0.0
            weight[:gap_rows] = 0.0
        planes.append(image.astype(np.float32))
        weights.append(weight.astype(np.float32))
    hdus = [fits.PrimaryHDU(np.stack(planes), header)]
    if invvar:
        hdus.append(fits.ImageHDU(np.stack(weights), header))
    return fits_bytes(hdus)


MAGS = {
    "FUV": 19.5, "NUV": 19.0, "g": 18.0, "r": 17.5, "i": 17.2, "z": 17.0, "y": 16.9,
    "W1": 17.3, "W2": 17.6,
}  # fmt: skip


def fill_cache(root, catalog, *, skip=None, ps1_nan_columns=0):
    """A CutoutCache holding every product of every object (``skip``: {(id, survey): status})."""
    from mantis.fetch._cache import CutoutCache

    skip = skip or {}
    cache = CutoutCache(root)
    for row in catalog.itertuples():
        for survey_name in ("galex", "ps1", "unwise"):
            if (row.id, survey_name) in skip:
                cache.mark(row.id, survey_name, skip[(row.id, survey_name)], "test")
                continue
            if survey_name == "ps1":
                files = {
                    f".{b}.fits": ps1_fits(
                        row.ra, row.dec, MAGS[b], band_name=b, nan_columns=ps1_nan_columns
                    )
                    for b in "grizy"
                }
            elif survey_name == "unwise":
                files = {
                    ".tar.gz": unwise_tar(row.ra, row.dec, {"W1": MAGS["W1"], "W2": MAGS["W2"]})
                }
            else:
                files = {".fits": galex_fits(row.ra, row.dec, MAGS)}
            cache.store(row.id, survey_name, files)
    return cache


# positions of `isolated_point_sources`, at least 2 arcmin apart on the sky: two in COSMOS
# (the second one's unWISE cutout straddles the 1500p015 / 1500p030 tile boundary at dec 2.218)
# and two at dec -45, outside the PS1 footprint
ISOLATED_POSITIONS = {
    "centre": (150.10, 2.200),
    "tile_edge": (150.05, 2.2167),
    "south": (10.30, -45.00),
    "south_east": (10.36, -45.03),
}


def isolated_point_sources(seed=0):
    """Stand-in sky for ``mantis sky serve --config stack_products:isolated_point_sources``."""
    from mantis.sky.testing import PointSourceUniverse
    from mantis.surveys import BANDS

    rng = np.random.default_rng(seed)
    return PointSourceUniverse(
        (ra, dec, {b.name: float(rng.uniform(15.5, 17.5)) for b in BANDS})
        for ra, dec in ISOLATED_POSITIONS.values()
    )
