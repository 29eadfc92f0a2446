"""How point-like and how wide each object is, measured at the native PS1 scale (0.25″/px).

The early-fusion grid (1″ pixels) blurs the difference between a point source and a compact
galaxy, and between two seeings; the native PS1 cutouts resolve both. The bands with data are
summed (they share one seeing pattern), the sky level (median beyond half the cutout's
half-width) subtracted, and three numbers measured:

* ``size``: the Gaussian-weighted second moment about the centre (weight ``sigma_w`` = 2″),
  turned into the standard deviation of the Gaussian that would give it,
  ``sigma = (2 / M - 1 / sigma_w²)^-1/2`` in arcsec (``M`` the weighted mean of ``r²``); a point
  source reads the PSF's sigma, a galaxy that convolved with its own light profile;
* ``concentration``: the flux inside 1″ over the flux inside 3″;
* ``snr``: the flux inside 3″ over its noise (pixel noise beyond half the half-width).

``size`` is stored as its logarithm (clipped to 0.05–10″) so that a factor in seeing is an
offset. Objects without PS1 data read ``log(10″)``, zero and zero.
"""

from __future__ import annotations

import numpy as np

__all__ = ["MORPHOLOGY_FEATURES", "native_morphology"]

MORPHOLOGY_FEATURES = ("log_size", "concentration", "snr")
WEIGHT_SIGMA_ARCSEC = 2.0
_INNER_ARCSEC, _OUTER_ARCSEC = 1.0, 3.0
_SIZE_RANGE = (0.05, 10.0)


def native_morphology(image: np.ndarray, valid: np.ndarray, pixel_scale: float) -> np.ndarray:
    """Measure ``log_size``, ``concentration`` and ``snr`` ``(n, 3)`` of centred cutouts.

    Parameters
    ----------
    image : ndarray, shape (n, bands, size, size)
        Native-scale cutouts (any linear flux unit), each centred on its object.
    valid : ndarray, shape (n, bands, size, size)
        Which pixels hold data.
    pixel_scale : float
        Arcsec per pixel.

    Returns
    -------
    ndarray, shape (n, 3)
        ``log(sigma / arcsec)``, flux ratio 1″ / 3″, and signal-to-noise inside 3″.
    """
    image = np.asarray(image, dtype=np.float64)
    valid = np.asarray(valid, dtype=bool) & np.isfinite(image)
    # a band counts when most of its pixels hold data; the bands share one seeing pattern
    use = valid.mean(axis=(-2, -1)) > 0.5
    summed = np.where(valid & use[..., None, None], image, 0.0).sum(axis=1)
    size = image.shape[-1]
    axis = (np.arange(size) - (size - 1) / 2.0) * pixel_scale
    r2 = axis[:, None] ** 2 + axis[None, :] ** 2
    sky_region = r2 > (size * pixel_scale / 4.0) ** 2
    sky = np.median(summed[:, sky_region], axis=1)
    quartiles = np.percentile(summed[:, sky_region], [25, 75], axis=1)
    noise = (quartiles[1] - quartiles[0]) / 1.349
    light = summed - sky[:, None, None]
    weight = np.exp(-r2 / (2.0 * WEIGHT_SIGMA_ARCSEC**2))
    weighted = (light * weight).sum(axis=(-2, -1))
    with np.errstate(all="ignore"):
        second = (light * weight * r2).sum(axis=(-2, -1)) / weighted
        inverse = 2.0 / second - 1.0 / WEIGHT_SIGMA_ARCSEC**2
        sigma = np.where((weighted > 0) & (inverse > 0), 1.0 / np.sqrt(inverse), _SIZE_RANGE[1])
    inner = (light * (r2 <= _INNER_ARCSEC**2)).sum(axis=(-2, -1))
    outer_aperture = r2 <= _OUTER_ARCSEC**2
    outer = (light * outer_aperture).sum(axis=(-2, -1))
    with np.errstate(all="ignore"):
        concentration = np.where(outer > 0, inner / outer, 0.0)
        snr = np.where(noise > 0, outer / (noise * np.sqrt(outer_aperture.sum())), 0.0)
    has_data = use.any(axis=1)
    log_size = np.log(np.clip(np.nan_to_num(sigma, nan=_SIZE_RANGE[1]), *_SIZE_RANGE))
    return np.stack(
        [
            np.where(has_data, log_size, np.log(_SIZE_RANGE[1])),
            np.where(has_data, np.clip(concentration, 0.0, 1.5), 0.0),
            np.where(has_data, snr, 0.0),
        ],
        axis=1,
    )
