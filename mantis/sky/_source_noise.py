"""Photon (Poisson) noise of the sources themselves.

The sky noise of `mantis.sky._render` is the same everywhere; a real image also fluctuates
with the light of each source: a pixel expecting ``lam`` detected photons (or electrons)
records a Poisson(``lam``) count. `ELECTRONS_PER_NANOMAGGY` converts a pixel's model flux into
``lam`` for a typical exposure of each survey; the recorded count is converted back, so the
noise has mean zero and variance ``flux / ELECTRONS_PER_NANOMAGGY`` (nanomaggies²).

The count is drawn by inverting the Poisson distribution at one uniform deviate per pixel, so
a caller that fixes the deviate per native pixel (a `NativeFrame`) gets the same noise for the
same pixel in every request.
"""

from __future__ import annotations

import numpy as np

from mantis.sky._formats import PS1_WARP_EXPTIME
from mantis.surveys import BANDS, NANOMAGGY_ZP

__all__ = ["ELECTRONS_PER_NANOMAGGY", "add_source_noise"]


def _electrons_per_nanomaggy() -> dict[str, float]:
    out = {}
    for band in BANDS:
        if band.survey == "ps1":
            # stack counts at zero point 25 + 2.5 log10(EXPTIME), gain ~1 e-/count, EXPTIME of
            # a typical 3pi stack: 12 warps of the band's exposure
            warp_s = PS1_WARP_EXPTIME[band.name]
            out[band.name] = 10.0 ** (0.4 * (25.0 - NANOMAGGY_ZP)) * 12 * warp_s
        elif band.survey == "galex":
            # photon counting at the band's AB zero point; an AIS-like 150 s exposure
            out[band.name] = 10.0 ** (0.4 * (band.ab_zeropoint - NANOMAGGY_ZP)) * 150.0
        else:
            # WISE frames: Vega zero point of 1 DN (20.752 W1, 19.596 W2), gain 3.20 / 3.83
            # e-/DN (Cutri et al. 2012), ~150 frames in an unWISE neo7 coadd
            zp_vega, gain = {"W1": (20.752, 3.20), "W2": (19.596, 3.83)}[band.name]
            zp_ab = zp_vega + band.vega_to_ab
            out[band.name] = 10.0 ** (0.4 * (zp_ab - NANOMAGGY_ZP)) * gain * 150.0
    return out


ELECTRONS_PER_NANOMAGGY: dict[str, float] = _electrons_per_nanomaggy()
_GAUSSIAN_ABOVE = 50.0  # photons: above this the Poisson quantile is the normal one to <1%
_NEGLIGIBLE_BELOW = 1e-4  # photons: P(count > 0) below 1e-4, the pixel is left as it is


def add_source_noise(
    pixels: np.ndarray, model: np.ndarray, band_name: str, uniform: np.ndarray
) -> None:
    """Add the sources' photon noise to ``pixels`` in place.

    Parameters
    ----------
    pixels : ndarray, shape (ny, nx)
        Image to add into (nanomaggies per pixel).
    model : ndarray, shape (ny, nx)
        Noise-free source flux per pixel, nanomaggies; negative values count as zero.
    band_name : str
        Band, for `ELECTRONS_PER_NANOMAGGY`.
    uniform : ndarray, shape (ny, nx)
        One uniform deviate in (0, 1) per pixel; fixes the draw.
    """
    from scipy.special import ndtri

    gain = ELECTRONS_PER_NANOMAGGY[band_name]
    lam = np.maximum(np.asarray(model, dtype=float), 0.0) * gain
    counts = np.zeros_like(lam)
    bright = lam > _GAUSSIAN_ABOVE
    counts[bright] = lam[bright] + np.sqrt(lam[bright]) * ndtri(uniform[bright])
    faint = (lam > _NEGLIGIBLE_BELOW) & ~bright
    counts[faint] = _poisson_quantile(uniform[faint], lam[faint])
    drawn = bright | faint
    pixels[drawn] += ((counts[drawn] - lam[drawn]) / gain).astype(pixels.dtype)


def _poisson_quantile(uniform: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """Smallest k with Poisson CDF(k; lam) >= uniform, by summing the terms (lam <= ~50).

    Each pass extends the sum by one term for the pixels still short of their deviate; the
    cap only matters for deviates within rounding of 1.
    """
    count = np.zeros_like(lam)
    term = np.exp(-lam)
    cdf = term.copy()
    active = np.flatnonzero(uniform > cdf)
    cap = float(lam.max(initial=0.0)) + 20.0 * np.sqrt(float(lam.max(initial=0.0))) + 40.0
    k = 0
    while active.size and k < cap:
        k += 1
        term[active] *= lam[active] / k
        cdf[active] += term[active]
        count[active] = k
        active = active[uniform[active] > cdf[active]]
    return count
