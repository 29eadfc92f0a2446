"""Where each imitated survey has data: PS1 skycells, unWISE tiles and GALEX pointings.

The geometry imitates the real surveys closely enough that clients meet the same edge cases:

* **PS1** (RINGS.V3-like): projection cells on rings of declination 4 degrees apart, each a TAN
  plane split into 10 x 10 skycells of 0.4 degrees (5760 pixels at 0.25 arcsec) with a
  240-pixel overlap on every side, so a skycell is 6240 pixels wide. Nothing south of
  dec -30. A cutout that crosses a skycell's edge is NaN beyond it.
* **unWISE**: 2048-pixel tiles at 2.75 arcsec (1.56 degrees) on rings 1.5 degrees apart, so
  neighbours overlap; a cutout near a tile edge comes back as two (or more) clipped tiles.
* **GALEX**: circular pointings of radius 0.6 degrees on a 1 degree grid, with a fixed tenth
  of the pointings missing; between them and where pointings are missing there is no data
  (about a tenth of the sky).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from astropy.wcs import WCS

from mantis.surveys import survey

__all__ = [
    "GALEX_POINTING_RADIUS",
    "PS1_MIN_DEC",
    "PS1_SKYCELL_MARGIN",
    "PS1_SUBCELL_PIXELS",
    "UNWISE_TILE_PIXELS",
    "GalexPointing",
    "Skycell",
    "UnwiseTile",
    "galex_coverage_mask",
    "galex_pointings_near",
    "ps1_skycell",
    "ps1_skycell_at",
    "stable_uniform",
    "unwise_tile",
    "unwise_tiles_near",
]

PS1_MIN_DEC = survey("ps1").min_dec
PS1_RING_STEP = 4.0  # degrees between projection-cell rings
PS1_SUBCELLS = 10  # skycells per projection-cell side
PS1_SUBCELL_PIXELS = 5760  # 0.4 degrees at 0.25 arcsec
PS1_SKYCELL_MARGIN = 240  # overlap added on every side, pixels
PS1_CDELT = 6.94444461259988e-05  # degrees per pixel, exactly as in the real headers

UNWISE_TILE_PIXELS = 2048
UNWISE_RING_STEP = 1.5  # degrees between tile rings
UNWISE_PIXEL_SCALE = survey("unwise").pixel_scale

GALEX_GRID_STEP = 1.0  # degrees between pointing centres
GALEX_POINTING_RADIUS = 0.6  # degrees
GALEX_MISSING_FRACTION = 0.1  # fraction of pointings never observed
GALEX_HOLE_SALT = "galex-missing-pointing-2"  # picks which; this one leaves the test fields seen


def stable_uniform(*parts: object) -> float:
    """Return a number in [0, 1) that depends only on ``parts`` (stable across runs)."""
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") / 2.0**64


def _ring_counts(step: float) -> list[int]:
    """Cells per ring, rings centred at dec = -90 + k * step (wide enough at the equator side)."""
    n_rings = round(180.0 / step) + 1
    counts = []
    for k in range(n_rings):
        dec = -90.0 + k * step
        widest = max(abs(dec) - step / 2.0, 0.0)  # the equatorward edge is the widest
        counts.append(max(1, math.ceil(360.0 * math.cos(math.radians(widest)) / step)))
    return counts


@lru_cache(maxsize=4)
def _ring_offsets(step: float) -> tuple[tuple[int, ...], tuple[int, ...]]:
    counts = _ring_counts(step)
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(int)
    return tuple(counts), tuple(int(o) for o in offsets)


def _ring_cell(ra: float, dec: float, step: float) -> tuple[int, int, float, float]:
    """Ring index, cell index within it, and the cell centre nearest to (ra, dec)."""
    counts, _ = _ring_offsets(step)
    ring = min(max(round((dec + 90.0) / step), 0), len(counts) - 1)
    n = counts[ring]
    cell = round((ra % 360.0) / (360.0 / n)) % n
    return ring, cell, (cell * 360.0 / n) % 360.0, -90.0 + ring * step


def _tan_wcs(
    ra0: float, dec0: float, crpix: float, scale_deg: float, shape: tuple[int, int]
) -> WCS:
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [ra0, dec0]
    wcs.wcs.crpix = [crpix, crpix]
    wcs.wcs.cd = [[-scale_deg, 0.0], [0.0, scale_deg]]
    wcs.pixel_shape = (shape[1], shape[0])
    return wcs


# ------------------------------------------------------------------------------------- PS1


@dataclass(frozen=True)
class Skycell:
    """One PS1 skycell: a square region of its projection cell's TAN plane.

    Attributes
    ----------
    projcell : int
        Projection-cell number (the ``PPPP`` of the file name).
    subcell : int
        Skycell number inside the projection cell, 0-99 (the ``SSS``).
    ra0, dec0 : float
        Projection-cell centre (the ``CRVAL`` of every cutout), degrees.
    x0, x1, y0, y1 : int
        Skycell bounds in 0-based projection-cell pixels, half open.
    """

    projcell: int
    subcell: int
    ra0: float
    dec0: float
    x0: int
    x1: int
    y0: int
    y1: int

    @property
    def crpix(self) -> float:
        """1-based reference pixel of the projection cell (its centre)."""
        return PS1_SUBCELLS * PS1_SUBCELL_PIXELS / 2.0 + 0.5

    @property
    def name(self) -> str:
        """``'skycell.PPPP.SSS'`` as in the SKYCELL keyword."""
        return f"skycell.{self.projcell:04d}.{self.subcell:03d}"

    def projcell_wcs(self) -> WCS:
        """TAN WCS of the whole projection cell (0.25 arcsec pixels, north up, east left)."""
        n = PS1_SUBCELLS * PS1_SUBCELL_PIXELS
        return _tan_wcs(self.ra0, self.dec0, self.crpix, PS1_CDELT, (n, n))

    def centre(self) -> tuple[float, float]:
        """Sky position of the skycell centre, degrees."""
        x = (self.x0 + self.x1 - 1) / 2.0
        y = (self.y0 + self.y1 - 1) / 2.0
        ra, dec = self.projcell_wcs().all_pix2world(x, y, 0)
        return float(ra) % 360.0, float(dec)

    def filename(self, band_name: str) -> str:
        """Full stack path as listed by ps1filenames.py."""
        cell = f"{self.projcell:04d}.{self.subcell:03d}"
        stem = f"rings.v3.skycell.{cell}.stk.{band_name}.unconv.fits"
        return f"/rings.v3.skycell/{self.projcell:04d}/{self.subcell:03d}/{stem}"


def _skycell_from(projcell: int, subcell: int, ra0: float, dec0: float) -> Skycell:
    row, col = divmod(subcell, PS1_SUBCELLS)
    return Skycell(
        projcell,
        subcell,
        ra0,
        dec0,
        col * PS1_SUBCELL_PIXELS - PS1_SKYCELL_MARGIN,
        (col + 1) * PS1_SUBCELL_PIXELS + PS1_SKYCELL_MARGIN,
        row * PS1_SUBCELL_PIXELS - PS1_SKYCELL_MARGIN,
        (row + 1) * PS1_SUBCELL_PIXELS + PS1_SKYCELL_MARGIN,
    )


def ps1_skycell_at(ra: float, dec: float) -> Skycell | None:
    """Return the skycell that holds (ra, dec), or None south of the 3pi footprint (dec < -30)."""
    if dec < PS1_MIN_DEC:
        return None
    ring, cell, ra0, dec0 = _ring_cell(ra, dec, PS1_RING_STEP)
    _, offsets = _ring_offsets(PS1_RING_STEP)
    projcell = offsets[ring] + cell
    probe = _skycell_from(projcell, 0, ra0, dec0)
    x, y = probe.projcell_wcs().all_world2pix(ra, dec, 0)
    col = min(max(int(np.floor(x / PS1_SUBCELL_PIXELS)), 0), PS1_SUBCELLS - 1)
    row = min(max(int(np.floor(y / PS1_SUBCELL_PIXELS)), 0), PS1_SUBCELLS - 1)
    return _skycell_from(projcell, row * PS1_SUBCELLS + col, ra0, dec0)


def ps1_skycell(projcell: int, subcell: int) -> Skycell | None:
    """Return the skycell with these numbers, or None if no such skycell exists."""
    counts, offsets = _ring_offsets(PS1_RING_STEP)
    if not 0 <= subcell < PS1_SUBCELLS**2 or not 0 <= projcell < offsets[-1] + counts[-1]:
        return None
    ring = int(np.searchsorted(offsets, projcell, side="right")) - 1
    dec0 = -90.0 + ring * PS1_RING_STEP
    if dec0 + PS1_RING_STEP / 2.0 < PS1_MIN_DEC:
        return None
    ra0 = ((projcell - offsets[ring]) * 360.0 / counts[ring]) % 360.0
    return _skycell_from(projcell, subcell, ra0, dec0)


# ---------------------------------------------------------------------------------- unWISE


@dataclass(frozen=True)
class UnwiseTile:
    """One unWISE coadd tile (2048 x 2048 pixels at 2.75 arcsec)."""

    ra0: float
    dec0: float

    @property
    def coadd_id(self) -> str:
        """Tile name such as ``'1497p015'`` (RA x 10, p/m, |Dec| x 10)."""
        sign = "p" if self.dec0 >= 0 else "m"
        return f"{round(self.ra0 * 10) % 3600:04d}{sign}{round(abs(self.dec0) * 10):03d}"

    def wcs(self) -> WCS:
        """TAN WCS of the full tile, CRPIX at its centre."""
        scale = UNWISE_PIXEL_SCALE / 3600.0
        n = UNWISE_TILE_PIXELS
        return _tan_wcs(self.ra0, self.dec0, (n + 1) / 2.0, scale, (n, n))


def unwise_tile(coadd_id: str) -> UnwiseTile | None:
    """Return the tile called ``coadd_id`` on the grid, or None."""
    if len(coadd_id) != 8 or coadd_id[4] not in "pm":
        return None
    try:
        ra = int(coadd_id[:4]) / 10.0
        dec = int(coadd_id[5:]) / 10.0 * (1 if coadd_id[4] == "p" else -1)
    except ValueError:
        return None
    _, _, ra0, dec0 = _ring_cell(ra, dec, UNWISE_RING_STEP)
    tile = UnwiseTile(ra0, dec0)
    return tile if tile.coadd_id == coadd_id else None


def unwise_tiles_near(ra: float, dec: float, radius: float) -> list[UnwiseTile]:
    """Every tile whose centre lies within ``radius`` + a tile half-diagonal of (ra, dec).

    This is the search of the real unwise.me server (``unwise_tiles_near_radec``), nearest first.
    """
    half_diag = math.sqrt(2.0) / 2.0 * UNWISE_TILE_PIXELS * UNWISE_PIXEL_SCALE / 3600.0 * 1.01
    limit = radius + half_diag
    counts, _ = _ring_offsets(UNWISE_RING_STEP)
    tiles = []
    for ring, n in enumerate(counts):
        dec0 = -90.0 + ring * UNWISE_RING_STEP
        if abs(dec0 - dec) > limit + UNWISE_RING_STEP:
            continue
        ra0s = np.arange(n) * 360.0 / n
        dists = _angular_distance(ra, dec, ra0s, dec0)
        for dist, ra0 in zip(dists, ra0s, strict=True):
            if dist <= limit:
                tiles.append((dist, UnwiseTile(float(ra0), dec0)))
    return [tile for _, tile in sorted(tiles, key=lambda item: item[0])]


# ----------------------------------------------------------------------------------- GALEX


@dataclass(frozen=True)
class GalexPointing:
    """One GALEX pointing: a disc of radius `GALEX_POINTING_RADIUS` degrees."""

    ra0: float
    dec0: float


def _angular_distance(ra1, dec1, ra2, dec2) -> np.ndarray:
    """Great-circle distance in degrees (haversine; stable at small separations)."""
    ra1, dec1, ra2, dec2 = (np.radians(np.asarray(v, dtype=float)) for v in (ra1, dec1, ra2, dec2))
    hav = (
        np.sin((dec2 - dec1) / 2.0) ** 2
        + np.cos(dec1) * np.cos(dec2) * np.sin((ra2 - ra1) / 2.0) ** 2
    )
    return np.degrees(2.0 * np.arcsin(np.sqrt(np.clip(hav, 0.0, 1.0))))


def galex_pointings_near(ra: float, dec: float, radius: float) -> list[GalexPointing]:
    """Observed pointings whose disc comes within ``radius`` degrees of (ra, dec).

    Pointing centres lie on rings at half-integer declinations, one degree apart along each
    ring; a fixed `GALEX_MISSING_FRACTION` of them were never observed. Coverage is a property
    of the survey, so it does not change with the sky seed.
    """
    limit = radius + GALEX_POINTING_RADIUS
    found = []
    first = max(int(np.floor(dec - limit + 89.5)), 0)
    last = min(int(np.ceil(dec + limit + 89.5)), 179)
    for ring in range(first, last + 1):
        dec0 = -89.5 + ring * GALEX_GRID_STEP
        widest = max(abs(dec0) - GALEX_GRID_STEP / 2.0, 0.0)
        n = math.ceil(360.0 * math.cos(math.radians(widest)) / GALEX_GRID_STEP)
        ra0s = np.arange(n) * 360.0 / n
        for cell in np.flatnonzero(_angular_distance(ra, dec, ra0s, dec0) <= limit):
            if stable_uniform(GALEX_HOLE_SALT, ring, int(cell)) < GALEX_MISSING_FRACTION:
                continue
            found.append(GalexPointing(float(ra0s[cell]), dec0))
    return found


def galex_coverage_mask(wcs: WCS, shape: tuple[int, int]) -> np.ndarray:
    """Boolean image, True where a pixel centre lies inside an observed pointing.

    Parameters
    ----------
    wcs : astropy.wcs.WCS
        Celestial WCS of the cutout.
    shape : tuple of int
        ``(height, width)`` of the cutout.
    """
    height, width = shape
    ys, xs = np.mgrid[0:height, 0:width]
    ra, dec = wcs.all_pix2world(xs.ravel(), ys.ravel(), 0)
    ra_c, dec_c = wcs.all_pix2world((width - 1) / 2.0, (height - 1) / 2.0, 0)
    half_diag = float(np.max(_angular_distance(ra_c, dec_c, ra, dec))) if ra.size else 0.0
    covered = np.zeros(ra.shape, dtype=bool)
    for pointing in galex_pointings_near(float(ra_c), float(dec_c), half_diag):
        covered |= _angular_distance(ra, dec, pointing.ra0, pointing.dec0) <= GALEX_POINTING_RADIUS
    return covered.reshape(shape)
