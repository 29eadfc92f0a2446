"""Survey-native products built from a noiseless point-source sky."""

from __future__ import annotations

import gzip
import io
import tarfile

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from mantis.exceptions import NoCoverageError
from mantis.sky._coverage import PS1_CDELT, ps1_skycell_at, unwise_tiles_near
from mantis.sky._formats import (
    PS1_FILENAMES_HEADER,
    UNWISE_FILE_TYPES,
    galex_cutout,
    ps1_cutout,
    ps1_exptime,
    ps1_filenames_table,
    ps1_header_wcs,
    unwise_tar,
)
from mantis.sky.testing import PointSourceUniverse
from mantis.surveys import BANDS, band

MAGS = {b.name: 17.0 + 0.1 * i for i, b in enumerate(BANDS)}


def sky_at(ra, dec):
    return PointSourceUniverse([(ra, dec, MAGS)])


def unpack_tar(body):
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}


# ------------------------------------------------------------------------------------- PS1


def test_filenames_table_has_one_row_per_filter_and_only_a_header_south_of_minus_30():
    text = ps1_filenames_table([(150.1, 2.2), (10.0, -31.0)], "gri", ["stack"])
    lines = text.splitlines()
    assert lines[0] == PS1_FILENAMES_HEADER
    rows = [dict(zip(lines[0].split(), line.split(), strict=True)) for line in lines[1:]]
    assert [r["filter"] for r in rows] == ["g", "r", "i"]
    assert all(r["mjd"] == "0.0" and r["type"] == "stack" for r in rows)
    assert rows[0]["filename"].endswith("stk.g.unconv.fits")
    assert rows[0]["shortname"] == rows[0]["filename"].rsplit("/", 1)[1]
    assert ps1_filenames_table([(10.0, -31.0)], "grizy", ["stack"]) == PS1_FILENAMES_HEADER + "\n"


def read_ps1(body):
    hdus = fits.open(io.BytesIO(body))
    assert len(hdus) == 1 and hdus[0].data.dtype == np.dtype(">f4")
    return hdus[0].header, hdus[0].data


@pytest.mark.parametrize("band_name", ["g", "r", "i", "z", "y"])
def test_ps1_cutout_counts_and_position(band_name):
    ra, dec = 150.1003, 2.2001
    cell = ps1_skycell_at(ra, dec)
    header, data = read_ps1(ps1_cutout(sky_at(ra, dec), cell, band_name, ra, dec, 120))
    assert header["CDELT1"] == PS1_CDELT and header["PC001001"] == -1.0
    assert header["RADESYS"] == "FK5" and header["HIERARCH FPA.ZP"] == 25.0
    assert header["HIERARCH FPA.FILTER"] == f"{band_name}.00000"
    assert (header["CRVAL1"], header["CRVAL2"]) == (cell.ra0, cell.dec0)
    assert "BSOFTEN" not in header and "BOFFSET" not in header
    # linear counts with ZP = 25 + 2.5 log10(EXPTIME)
    mag = 25.0 + 2.5 * np.log10(header["EXPTIME"]) - 2.5 * np.log10(data.sum())
    assert mag == pytest.approx(MAGS[band_name], abs=1e-3)
    # astropy reads the AIPS PC keywords; the CD matrix imagine rebuilds agrees
    x, y = ps1_header_wcs(header).all_world2pix(ra, dec, 0)
    ys, xs = np.mgrid[0 : data.shape[0], 0 : data.shape[1]]
    assert np.sum(xs * data) / data.sum() == pytest.approx(float(x), abs=0.01)
    assert np.sum(ys * data) / data.sum() == pytest.approx(float(y), abs=0.01)
    manual = WCS(naxis=2)
    manual.wcs.ctype = [header["CTYPE1"], header["CTYPE2"]]
    manual.wcs.crval = [header["CRVAL1"], header["CRVAL2"]]
    manual.wcs.crpix = [header["CRPIX1"], header["CRPIX2"]]
    manual.wcs.cd = [[header["PC001001"] * header["CDELT1"], 0], [0, header["CDELT2"]]]
    assert np.allclose(manual.all_world2pix(ra, dec, 0), (x, y), atol=1e-6)
    # the cutout is centred on the pixel holding the position
    assert abs(float(x) - 60) <= 0.5 and abs(float(y) - 60) <= 0.5


def test_ps1_exptime_varies_by_skycell_and_band():
    cells = [ps1_skycell_at(150.1 + 0.4 * k, 2.2) for k in range(6)]
    times = {(c.name, b): ps1_exptime(c, b) for c in cells for b in "grizy"}
    assert len(set(times.values())) > 10
    assert all(8 * 30 <= t <= 19 * 45 for t in times.values())


def test_ps1_cutout_is_nan_beyond_the_skycell_edge():
    cell = ps1_skycell_at(150.1, 2.2)
    wcs = cell.projcell_wcs()
    # a position 20 pixels inside the skycell's west (high-x) edge
    ra, dec = wcs.all_pix2world(cell.x1 - 20.0, (cell.y0 + cell.y1) / 2.0, 0)
    ra, dec = float(ra), float(dec)
    _, data = read_ps1(ps1_cutout(sky_at(ra, dec), cell, "r", ra, dec, 100))
    nan_columns = np.flatnonzero(np.isnan(data).all(axis=0))
    assert nan_columns.size == 100 // 2 - 20 and nan_columns[0] == 100 - nan_columns.size
    assert np.isfinite(data[:, : nan_columns[0]]).all()


def test_ps1_variance_image_and_all_nan_option():
    cell = ps1_skycell_at(150.1, 2.2)
    _, variance = read_ps1(ps1_cutout(sky_at(150.1, 2.2), cell, "g", 150.1, 2.2, 30,
                                      product="stack.wt"))  # fmt: skip
    assert np.all(variance > 0)
    _, data = read_ps1(ps1_cutout(sky_at(150.1, 2.2), cell, "g", 150.1, 2.2, 30, all_nan=True))
    assert np.isnan(data).all()


# ---------------------------------------------------------------------------------- unWISE


def test_unwise_tar_members_units_and_headers():
    ra, dec = 150.02, 1.51  # near a tile centre: one tile
    members = unpack_tar(unwise_tar(sky_at(ra, dec), ra, dec, 64, [1, 2], UNWISE_FILE_TYPES))
    tile = unwise_tiles_near(ra, dec, 0.0)[0].coadd_id
    suffixes = ("img-m.fits", "invvar-m.fits.gz", "n-m.fits.gz", "std-m.fits.gz")
    expected = [f"unwise-{tile}-w{b}-{s}" for b in (1, 2) for s in suffixes]
    assert list(members) == expected
    for number, offset in ((1, band("W1").vega_to_ab), (2, band("W2").vega_to_ab)):
        hdu = fits.open(io.BytesIO(members[f"unwise-{tile}-w{number}-img-m.fits"]))[0]
        assert hdu.header["MAGZP"] == 22.5 and hdu.header["BAND"] == number
        assert hdu.header["EPOCH"] == -1 and hdu.data.shape == (64, 64)
        assert hdu.header["CD1_1"] == pytest.approx(-2.75 / 3600)
        vega_mag = 22.5 - 2.5 * np.log10(hdu.data.sum())
        assert vega_mag + offset == pytest.approx(MAGS[f"W{number}"], abs=1e-3)
        invvar = fits.getdata(io.BytesIO(gzip.decompress(
            members[f"unwise-{tile}-w{number}-invvar-m.fits.gz"])))  # fmt: skip
        assert invvar.shape == (64, 64) and np.all(invvar > 0)
        n_exp = fits.getdata(io.BytesIO(gzip.decompress(
            members[f"unwise-{tile}-w{number}-n-m.fits.gz"])))  # fmt: skip
        assert n_exp.dtype.kind == "i" and np.all(n_exp > 0)


def test_unwise_in_a_tile_overlap_gives_two_clipped_tiles():
    south, north = (unwise_tiles_near(150.0, d, 0.0)[0] for d in (1.5, 3.0))
    assert (south.dec0, north.dec0) == (1.5, 3.0)
    _, dec_top = south.wcs().all_pix2world(1023.5, 2047.5, 0)
    _, dec_bottom = north.wcs().all_pix2world(1023.5, -0.5, 0)
    ra, dec = 150.0, (float(dec_top) + float(dec_bottom)) / 2.0  # middle of the overlap
    members = unpack_tar(unwise_tar(sky_at(ra, dec), ra, dec, 100, [1], ["img_m"]))
    assert sorted(members) == sorted(f"unwise-{t.coadd_id}-w1-img-m.fits" for t in (south, north))
    for tile in (south, north):
        hdu = fits.open(io.BytesIO(members[f"unwise-{tile.coadd_id}-w1-img-m.fits"]))[0]
        x, y = (float(v) for v in tile.wcs().all_world2pix(ra, dec, 0))
        x0, y0 = round(x) - 50, round(y) - 50
        clipped_y0, clipped_y1 = max(y0, 0), min(y0 + 100, 2048)
        # clipped to the tile, never padded
        assert hdu.data.shape == (clipped_y1 - clipped_y0, 100)
        assert hdu.data.shape[0] < 100
        # the sub-image WCS is the tile WCS shifted by the clipped origin
        x_sub, y_sub = WCS(hdu.header).all_world2pix(ra, dec, 0)
        assert x_sub == pytest.approx(x - x0, abs=1e-6)
        assert y_sub == pytest.approx(y - clipped_y0, abs=1e-6)


def test_unwise_drops_bands_without_data():
    members = unpack_tar(unwise_tar(sky_at(150.1, 2.2), 150.1, 2.2, 16, [3, 4], ["img_m"]))
    assert members == {}


# ----------------------------------------------------------------------------------- GALEX


def test_galex_cube_order_units_and_wcs():
    ra, dec = 150.1, 2.2
    body = galex_cutout(sky_at(ra, dec), ra, dec, 61, 41, 1.5, "nf", invvar=True)
    hdus = fits.open(io.BytesIO(body))
    header, cube = hdus[0].header, hdus[0].data
    assert cube.shape == (2, 41, 61) and hdus[1].data.shape == (2, 41, 61)
    assert header["SURVEY"] == "GALEX" and header["BANDS"] == "nf"
    assert (header["BAND0"], header["BAND1"]) == ("n", "f")
    assert (header["CRPIX1"], header["CRPIX2"]) == (31.0, 21.0)
    assert header["CD1_1"] == pytest.approx(-1.5 / 3600) and header["CD2_2"] > 0
    for plane, name in ((0, "NUV"), (1, "FUV")):
        mag = band(name).ab_zeropoint - 2.5 * np.log10(cube[plane].sum())
        assert mag == pytest.approx(MAGS[name], abs=0.01)
    assert np.all(hdus[1].data > 0)
    single = fits.getdata(io.BytesIO(galex_cutout(sky_at(ra, dec), ra, dec, 20, 20, 1.5, "f")))
    assert single.shape == (20, 20)
    assert 18.82 - 2.5 * np.log10(single.sum()) == pytest.approx(MAGS["FUV"], abs=0.01)


def test_galex_partial_coverage_is_zero_with_zero_invvar_and_no_overlap_raises():
    # a cutout on the gap between four pointings around (150.5, 3.0)
    body = galex_cutout(sky_at(150.5, 3.0), 150.5, 3.0, 600, 600, 1.5, "nf", invvar=True)
    hdus = fits.open(io.BytesIO(body))
    hole = hdus[1].data[0] == 0
    assert 0.05 < hole.mean() < 0.95
    assert np.all(hdus[0].data[:, hole] == 0)
    with pytest.raises(NoCoverageError, match="no GALEX pointing"):
        galex_cutout(sky_at(150.5, 3.0), 150.5, 3.0, 20, 20, 1.5, "nf")


# ----------------------------------------------------------------------------- determinism


def test_products_are_byte_for_byte_deterministic():
    sky = sky_at(150.1, 2.2)
    cell = ps1_skycell_at(150.1, 2.2)
    for build in (
        lambda: ps1_cutout(sky, cell, "i", 150.1, 2.2, 50, seed=3),
        lambda: unwise_tar(sky, 150.1, 2.2, 40, [1, 2], UNWISE_FILE_TYPES, seed=3),
        lambda: galex_cutout(sky, 150.1, 2.2, 30, 30, 1.5, "nf", invvar=True, seed=3),
    ):
        assert build() == build()
    assert ps1_cutout(sky, cell, "i", 150.1, 2.2, 50, seed=3) != ps1_cutout(
        sky, cell, "i", 150.1, 2.2, 50, seed=4
    )
