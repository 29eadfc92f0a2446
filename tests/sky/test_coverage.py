"""Geometry of the imitated surveys: PS1 skycells, unWISE tiles, GALEX pointings."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.wcs import WCS

from mantis.sky import _coverage as coverage
from mantis.sky._coverage import (
    PS1_SKYCELL_MARGIN,
    PS1_SUBCELL_PIXELS,
    galex_coverage_mask,
    galex_pointings_near,
    ps1_skycell,
    ps1_skycell_at,
    unwise_tile,
    unwise_tiles_near,
)
from mantis.sky._formats import _tan_cd_header

RNG_POSITIONS = np.random.default_rng(7)
POSITIONS = [
    (float(ra), float(dec))
    for ra, dec in zip(
        RNG_POSITIONS.uniform(0, 360, 40), RNG_POSITIONS.uniform(-29.5, 80, 40), strict=True
    )
] + [(150.1, 2.2), (0.001, 0.0), (359.999, -29.9), (53.1, 45.0)]


@pytest.mark.parametrize(("ra", "dec"), POSITIONS)
def test_position_lies_inside_its_skycell_core(ra, dec):
    cell = ps1_skycell_at(ra, dec)
    x, y = cell.projcell_wcs().all_world2pix(ra, dec, 0)
    # inside the skycell, well away from its NaN edge (ring boundaries reach into the overlap)
    assert cell.x0 + 100 <= x <= cell.x1 - 100
    assert cell.y0 + 100 <= y <= cell.y1 - 100
    assert ps1_skycell(cell.projcell, cell.subcell) == cell
    assert cell.x1 - cell.x0 == PS1_SUBCELL_PIXELS + 2 * PS1_SKYCELL_MARGIN


def test_skycell_names_follow_the_rings_v3_pattern():
    cell = ps1_skycell_at(150.1, 2.2)
    name = cell.filename("i")
    p, s = f"{cell.projcell:04d}", f"{cell.subcell:03d}"
    assert name == f"/rings.v3.skycell/{p}/{s}/rings.v3.skycell.{p}.{s}.stk.i.unconv.fits"
    assert cell.name == f"skycell.{p}.{s}"
    # a skycell is about 0.43 degrees across (6240 pixels of 0.25 arcsec)
    assert (cell.x1 - cell.x0) * 0.25 / 3600 == pytest.approx(0.4333, abs=1e-3)


def test_neighbouring_skycells_overlap_by_two_margins():
    cell = ps1_skycell_at(150.1, 2.2)
    row, col = divmod(cell.subcell, 10)
    neighbour = ps1_skycell(cell.projcell, row * 10 + (col - 1 if col else col + 1))
    overlap = min(cell.x1, neighbour.x1) - max(cell.x0, neighbour.x0)
    assert overlap == 2 * PS1_SKYCELL_MARGIN


def test_no_skycell_south_of_the_3pi_footprint():
    assert ps1_skycell_at(10.0, -30.01) is None
    assert ps1_skycell_at(10.0, -29.99) is not None
    assert ps1_skycell(999999, 0) is None
    assert ps1_skycell(1384, 100) is None


@pytest.mark.parametrize(("ra", "dec"), POSITIONS)
def test_some_unwise_tile_holds_every_position(ra, dec):
    tiles = unwise_tiles_near(ra, dec, 0.0)
    holding = []
    for tile in tiles:
        x, y = tile.wcs().all_world2pix(ra, dec, 0)
        if -0.5 <= x < 2047.5 and -0.5 <= y < 2047.5:
            holding.append(tile)
    assert holding
    assert unwise_tile(holding[0].coadd_id) == holding[0]
    assert holding[0].ra0 == pytest.approx(int(holding[0].coadd_id[:4]) / 10, abs=0.05)


def test_unwise_tiles_overlap_their_neighbours():
    tiles = unwise_tiles_near(150.0, 2.25, 0.0)  # half-way between the rings at 1.5 and 3.0
    decs = sorted({t.dec0 for t in tiles})
    assert 1.5 in decs and 3.0 in decs
    half_height = 1024 * 2.75 / 3600
    assert 1.5 + half_height > 3.0 - half_height  # the two rings overlap


def test_unwise_tile_ids_are_validated():
    assert unwise_tile("1500p015").coadd_id == "1500p015"
    assert unwise_tile("1500p016") is None  # not a grid position
    assert unwise_tile("nonsense") is None


def test_galex_holes_cover_about_a_tenth_of_the_sky():
    rng = np.random.default_rng(3)
    ra = rng.uniform(0, 360, 600)
    dec = np.degrees(np.arcsin(rng.uniform(-1, 1, 600)))
    covered = []
    for a, d in zip(ra, dec, strict=True):
        near = galex_pointings_near(a, d, 0.0)
        centres = SkyCoord([p.ra0 for p in near], [p.dec0 for p in near], unit="deg")
        sep = SkyCoord(a, d, unit="deg").separation(centres).deg if near else [np.inf]
        covered.append(min(sep) <= coverage.GALEX_POINTING_RADIUS)
    assert 0.04 < 1 - np.mean(covered) < 0.2


def test_galex_coverage_mask_matches_pointing_separations():
    # centred on a gap between four pointings: partly covered, partly a hole
    header = _tan_cd_header(150.5, 3.0, 50.5, 50.5, 12.0 / 3600, 100, 100)
    wcs = WCS(header)
    mask = galex_coverage_mask(wcs, (100, 100))
    assert 0.2 < mask.mean() < 0.95
    assert not mask[50, 50]  # the gap itself
    ys, xs = np.mgrid[0:100, 0:100]
    pixels = wcs.pixel_to_world(xs.ravel(), ys.ravel())
    expected = np.zeros(xs.size, dtype=bool)
    for p in galex_pointings_near(150.5, 3.0, 0.5):
        expected |= pixels.separation(SkyCoord(p.ra0, p.dec0, unit="deg")).deg <= 0.6
    np.testing.assert_array_equal(mask.ravel(), expected)
