"""The geometry of forced aperture photometry on object-centred cutouts.

One definition shared by the photometry of the classical baselines (`mantis.evaluate`, numpy)
and the photometry the networks' heads read (`mantis.models`, torch), so both measure the
same fluxes from the same pixels. Each band gets a circular aperture on the object (the grid
centre) of radius max(``radius_arcsec``, the band's PSF FWHM), a background annulus from
2 arcsec beyond the aperture to the cutout's edge, and a point-source aperture correction
computed for that aperture on that pixel grid.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from mantis.surveys import band, survey

__all__ = [
    "APERTURE_RADIUS_ARCSEC",
    "MIN_ANNULUS_PIXELS",
    "MIN_VALID_FRACTION",
    "BandAperture",
    "band_aperture",
    "radial_distance",
]

APERTURE_RADIUS_ARCSEC = 3.0
"""Smallest aperture radius; a band with a wider PSF uses its FWHM."""
MIN_VALID_FRACTION = 0.8
"""Below this share of valid aperture pixels a band counts as missing."""
MIN_ANNULUS_PIXELS = 12
"""With fewer valid annulus pixels the background is taken as zero."""
_ANNULUS_GAP_ARCSEC = 2.0
_FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))


@dataclass(frozen=True)
class BandAperture:
    """Aperture, annulus and corrections of one band on one square pixel grid.

    Attributes
    ----------
    aperture, annulus : ndarray of bool, shape (size, size)
        Pixels of the aperture and of the background annulus.
    correction : float
        Share of a point source's flux inside the aperture (divide the sum by it).
    correlation : float
        Noise inflation of an aperture sum on a grid finer than the survey's native pixels
        (up-sampling spreads each native pixel's noise over several output pixels).
    """

    aperture: np.ndarray
    annulus: np.ndarray
    correction: float
    correlation: float


def radial_distance(size: int) -> np.ndarray:
    """Distance in pixels of each pixel centre from the object at ``(size - 1)/2``."""
    centre = (size - 1) / 2.0
    yy, xx = np.mgrid[0:size, 0:size]
    return np.hypot(yy - centre, xx - centre)


def _point_source_fraction(mask: np.ndarray, sigma_pix: float) -> float:
    """Share of a centred Gaussian point source's flux that falls inside ``mask``."""
    size = mask.shape[0]
    # Sample the PSF 5x finer than the pixels and sum per pixel, over a box wide enough to
    # hold it all, so that the fraction is right for small apertures too.
    oversample = 5
    span = max(size, int(np.ceil(16 * sigma_pix)) | 1)
    fine = (np.arange(span * oversample) + 0.5) / oversample - span / 2.0
    profile = np.exp(-0.5 * (fine / sigma_pix) ** 2)
    per_pixel = profile.reshape(span, oversample).sum(axis=1)
    psf = np.outer(per_pixel, per_pixel)
    psf /= psf.sum()
    offset = (span - size) // 2
    return float(psf[offset : offset + size, offset : offset + size][mask].sum())


@functools.lru_cache(maxsize=64)
def band_aperture(
    band_name: str, pixel_scale: float, size: int, *, radius_arcsec: float = APERTURE_RADIUS_ARCSEC
) -> BandAperture:
    """Return the aperture geometry of band ``band_name`` on a ``size``² grid.

    Parameters
    ----------
    band_name : str
        A band of `mantis.surveys` (``'g'``, ``'W1'``, ...).
    pixel_scale : float
        Arcsec per pixel of the grid.
    size : int
        Pixels on a side; the object sits at ``(size - 1)/2``.
    radius_arcsec : float
        Smallest aperture radius.

    Returns
    -------
    BandAperture
        Shared between calls (cached); its arrays are read-only.

    Raises
    ------
    KeyError
        For an unknown band.
    """
    b = band(band_name)
    distance = radial_distance(size) * pixel_scale  # arcsec
    radius = max(radius_arcsec, b.psf_fwhm)
    aperture = distance <= radius
    annulus = (distance >= radius + _ANNULUS_GAP_ARCSEC) & (distance <= size / 2 * pixel_scale)
    correction = _point_source_fraction(aperture, b.psf_fwhm * _FWHM_TO_SIGMA / pixel_scale)
    correlation = max(1.0, survey(b.survey).pixel_scale / pixel_scale)
    aperture.setflags(write=False)
    annulus.setflags(write=False)
    return BandAperture(aperture, annulus, correction, correlation)
