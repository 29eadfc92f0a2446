"""Gnomonic (TAN) projections and the object-centred grids that images are reprojected onto.

Every product mantis reads (PS1 fitscut, unWISE tiles, the viewer's GALEX cube) carries a plain
TAN WCS, so one small type, `TanProjection`, holds it; its vectorised pixel <-> sky transforms
work on many projections at once, which is what lets the fast reprojection path batch cutouts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from mantis.exceptions import ConfigError
from mantis.surveys import SURVEY_NAMES

__all__ = [
    "EARLY",
    "Grid",
    "TanProjection",
    "grids_from_config",
    "object_projection",
    "pixel_to_sky",
    "sky_to_pixel",
    "stack_projections",
]

EARLY = "early"  # key of the common early-fusion grid next to the survey names
_D2R = np.pi / 180.0


@dataclass(frozen=True)
class TanProjection:
    """A gnomonic projection: FITS ``RA---TAN``/``DEC--TAN`` with a CD matrix, LONPOLE 180.

    Attributes
    ----------
    crval : tuple of float
        (ra, dec) of the tangent point, degrees.
    crpix : tuple of float
        FITS (1-based) pixel coordinates of the tangent point.
    cd : tuple of tuple of float
        CD matrix, degrees per pixel.
    """

    crval: tuple[float, float]
    crpix: tuple[float, float]
    cd: tuple[tuple[float, float], tuple[float, float]]

    @classmethod
    def from_header(cls, header: fits.Header) -> TanProjection:
        """Read the celestial TAN WCS of a header, whatever form its matrix is written in.

        Handles ``CDi_j``, ``PCi_j`` with ``CDELTi``, the AIPS-era ``PC00i00j`` of PS1 cutouts
        (``CD = CDELTi * PC00i00j``, as imagine and legacypipe rebuild it) and bare ``CDELTi``.

        Raises
        ------
        ValueError
            If the axes are not ``RA---TAN``/``DEC--TAN`` or LONPOLE is not 180.
        """
        ctypes = (str(header.get("CTYPE1", "")).strip(), str(header.get("CTYPE2", "")).strip())
        if ctypes != ("RA---TAN", "DEC--TAN"):
            raise ValueError(f"expected a RA---TAN/DEC--TAN image, got CTYPE1/2 = {ctypes}")
        if float(header.get("LONPOLE", 180.0)) != 180.0:
            raise ValueError(f"only LONPOLE = 180 is supported, got {header['LONPOLE']!r}")
        if "CD1_1" in header or "CD2_2" in header:
            cd = [[float(header.get(f"CD{i}_{j}", 0.0)) for j in (1, 2)] for i in (1, 2)]
        else:
            cdelt = [float(header.get(f"CDELT{i}", 1.0)) for i in (1, 2)]
            default = {(1, 1): 1.0, (2, 2): 1.0}
            pc = [
                [
                    float(
                        header.get(
                            f"PC{i}_{j}", header.get(f"PC00{i}00{j}", default.get((i, j), 0.0))
                        )
                    )
                    for j in (1, 2)
                ]
                for i in (1, 2)
            ]
            cd = [[cdelt[i] * pc[i][j] for j in range(2)] for i in range(2)]
        return cls(
            (float(header["CRVAL1"]), float(header["CRVAL2"])),
            (float(header["CRPIX1"]), float(header["CRPIX2"])),
            ((cd[0][0], cd[0][1]), (cd[1][0], cd[1][1])),
        )

    def to_header(self) -> fits.Header:
        """Return a minimal clean FITS header of this projection (ICRS)."""
        header = fits.Header()
        header["NAXIS"] = 2
        header["CTYPE1"], header["CTYPE2"] = "RA---TAN", "DEC--TAN"
        header["CRVAL1"], header["CRVAL2"] = self.crval
        header["CRPIX1"], header["CRPIX2"] = self.crpix
        for i in range(2):
            for j in range(2):
                header[f"CD{i + 1}_{j + 1}"] = self.cd[i][j]
        return header

    def to_wcs(self) -> WCS:
        """Return the same projection as an astropy `WCS`."""
        return WCS(self.to_header())

    @property
    def pixel_area(self) -> float:
        """Area of one pixel in the projection plane, arcsec squared."""
        return abs(float(np.linalg.det(np.asarray(self.cd)))) * 3600.0**2


def stack_projections(
    projections: list[TanProjection],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Arrays ``crval (N, 2)``, ``crpix (N, 2)`` and ``cd (N, 2, 2)`` of many projections."""
    crval = np.array([p.crval for p in projections], dtype=float).reshape(-1, 2)
    crpix = np.array([p.crpix for p in projections], dtype=float).reshape(-1, 2)
    cd = np.array([p.cd for p in projections], dtype=float).reshape(-1, 2, 2)
    return crval, crpix, cd


def pixel_to_sky(
    stacked: tuple[np.ndarray, np.ndarray, np.ndarray], x: np.ndarray, y: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """0-based pixel coordinates ``(N, ...)`` to (ra, dec) radians, one projection per row."""
    crval, crpix, cd = stacked
    extra = (slice(None),) + (None,) * (np.ndim(x) - 1)
    dx = x + 1.0 - crpix[:, 0][extra]
    dy = y + 1.0 - crpix[:, 1][extra]
    xi = (cd[:, 0, 0][extra] * dx + cd[:, 0, 1][extra] * dy) * _D2R
    eta = (cd[:, 1, 0][extra] * dx + cd[:, 1, 1][extra] * dy) * _D2R
    ra0 = crval[:, 0][extra] * _D2R
    dec0 = crval[:, 1][extra] * _D2R
    denom = np.cos(dec0) - eta * np.sin(dec0)
    ra = ra0 + np.arctan2(xi, denom)
    dec = np.arctan2(np.sin(dec0) + eta * np.cos(dec0), np.hypot(xi, denom))
    return ra, dec


def sky_to_pixel(
    stacked: tuple[np.ndarray, np.ndarray, np.ndarray], ra: np.ndarray, dec: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(ra, dec) radians ``(N, ...)`` to 0-based pixel coordinates, one projection per row."""
    crval, crpix, cd = stacked
    extra = (slice(None),) + (None,) * (np.ndim(ra) - 1)
    ra0 = crval[:, 0][extra] * _D2R
    dec0 = crval[:, 1][extra] * _D2R
    cos_dra = np.cos(ra - ra0)
    cos_c = np.sin(dec0) * np.sin(dec) + np.cos(dec0) * np.cos(dec) * cos_dra
    xi = np.cos(dec) * np.sin(ra - ra0) / cos_c / _D2R
    eta = (np.cos(dec0) * np.sin(dec) - np.sin(dec0) * np.cos(dec) * cos_dra) / cos_c / _D2R
    inv = np.linalg.inv(cd)
    x = inv[:, 0, 0][extra] * xi + inv[:, 0, 1][extra] * eta + crpix[:, 0][extra] - 1.0
    y = inv[:, 1, 0][extra] * xi + inv[:, 1, 1][extra] * eta + crpix[:, 1][extra] - 1.0
    return x, y


@dataclass(frozen=True)
class Grid:
    """A square object-centred pixel grid.

    Attributes
    ----------
    pixel_scale : float
        Arcsec per pixel.
    size : int
        Pixels on a side.
    """

    pixel_scale: float
    size: int

    @property
    def shape(self) -> tuple[int, int]:
        """``(size, size)``."""
        return (self.size, self.size)

    def to_dict(self) -> dict[str, float | int]:
        """Plain form for HDF5 attributes."""
        return {"pixel_scale": float(self.pixel_scale), "size": int(self.size)}


def object_projection(ra: float, dec: float, grid: Grid) -> TanProjection:
    """Return the TAN projection of ``grid`` centred exactly on (ra, dec), north up, east left.

    The object lies at the geometric centre of the array: 0-based pixel
    ``((size - 1) / 2, (size - 1) / 2)``, a pixel centre for odd sizes and a pixel corner for
    even ones.
    """
    scale = grid.pixel_scale / 3600.0
    centre = (grid.size + 1) / 2.0
    return TanProjection((float(ra), float(dec)), (centre, centre), ((-scale, 0.0), (0.0, scale)))


def grids_from_config(config: Mapping[str, Any]) -> dict[str, Grid]:
    """Read the per-survey native grids and the early grid from a config's ``grids``.

    Raises
    ------
    ConfigError
        If a grid is missing or its pixel scale or size is not a positive number.
    """
    section = config.get("grids")
    if not isinstance(section, Mapping):
        raise ConfigError("build config needs a 'grids' mapping with galex, ps1, unwise, early")
    grids = {}
    for name in (*SURVEY_NAMES, EARLY):
        spec = section.get(name)
        if not isinstance(spec, Mapping):
            raise ConfigError(f"build config grids.{name} is missing; give pixel_scale and size")
        scale, size = spec.get("pixel_scale"), spec.get("size")
        if not isinstance(scale, int | float) or isinstance(scale, bool) or not scale > 0:
            raise ConfigError(
                f"grids.{name}.pixel_scale must be a positive number (arcsec), got {scale!r}"
            )
        if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= 4096:
            raise ConfigError(f"grids.{name}.size must be an integer in [1, 4096], got {size!r}")
        grids[name] = Grid(float(scale), size)
    return grids
