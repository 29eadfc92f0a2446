"""Vectorised drawing of elliptical Gaussian and Moffat profiles.

Stars, and galaxies that are compact next to the PSF or too faint for their shape to show,
are drawn as the band's PSF stretched to the second moments of galaxy + PSF. Those profiles
have closed forms, so all of them are evaluated at once in NumPy at the pixel centres (what
GalSim's ``method='no_pixel'`` does for one profile at a time), which is what makes a nine-band
set cost tens of milliseconds. Resolved, bright galaxies still go through GalSim's FFT
convolution in `mantis.sky._render`.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["FWHM_PER_SIGMA", "add_profiles", "moffat_alpha", "stamp_halves"]

FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


def moffat_alpha(fwhm: float, beta: float) -> float:
    """Moffat scale radius for a FWHM (same units)."""
    return fwhm / (2.0 * math.sqrt(2.0 ** (1.0 / beta) - 1.0))


def stamp_halves(
    cov: np.ndarray, jac: np.ndarray, radius_fwhm: float | np.ndarray, max_half: int = 256
) -> np.ndarray:
    """Stamp half-sizes in pixels that `add_profiles` gives profiles of covariance ``cov``."""
    inv_j = np.linalg.inv(jac)
    # stamp half size from the largest axis of the profile in pixel units
    cov_pix = np.einsum("ij,njk,lk->nil", inv_j, cov, inv_j)
    major = np.sqrt(np.linalg.eigvalsh(cov_pix)[:, -1])
    radius = np.asarray(radius_fwhm, dtype=float) * FWHM_PER_SIGMA * major
    # stamp sizes rounded up to a multiple of 4 pixels, so that few groups are evaluated
    return np.minimum(4 * np.ceil(radius / 4.0), max_half).astype(int)


def add_profiles(
    image: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    flux: np.ndarray,
    cov: np.ndarray,
    jac: np.ndarray,
    *,
    psf_fwhm: float,
    moffat_beta: float | None,
    radius_fwhm: float | np.ndarray,
    max_half: int = 256,
) -> None:
    """Add elliptical PSF-like profiles into ``image`` in place.

    Parameters
    ----------
    image : ndarray, shape (ny, nx)
        Pixels (float64) to add into; pixel centres at integer (x, y), 0-based.
    x, y : ndarray, shape (n,)
        Profile centres in pixels.
    flux : ndarray, shape (n,)
        Total flux of each profile.
    cov : ndarray, shape (n, 2, 2)
        Second-moment-equivalent covariance of each profile in (east, north) arcsec²; for the
        PSF alone it is ``(psf_fwhm / 2.3548)² I``.
    jac : ndarray, shape (2, 2)
        (east, north) arcsec per pixel Jacobian of the image.
    psf_fwhm : float
        FWHM of the unstretched PSF, arcsec.
    moffat_beta : float or None
        Moffat index of the PSF; None for a Gaussian.
    radius_fwhm : float or ndarray, shape (n,)
        Stamp radius in units of the (stretched) FWHM, per profile or for all.
    max_half : int
        Largest stamp half-size in pixels.
    """
    if len(flux) == 0:
        return
    ny, nx = image.shape
    det_j = abs(float(np.linalg.det(jac)))
    # pixel-space inverse covariance: d^T (J^T C^-1 J) d with w = J d
    inv_cov = np.linalg.inv(cov)
    m_pix = np.einsum("ji,njk,kl->nil", jac, inv_cov, jac)
    det_c = np.linalg.det(cov)
    sigma_psf = psf_fwhm / FWHM_PER_SIGMA
    half = stamp_halves(cov, jac, radius_fwhm, max_half)
    pad = int(half.max())
    width = nx + 4 * pad + 2
    padded_size = (ny + 4 * pad + 2) * width
    ix, iy = np.rint(x).astype(int), np.rint(y).astype(int)
    # profiles whose stamps cannot reach the image are dropped (also keeps indices >= 0)
    reach = (ix >= -pad) & (ix <= nx - 1 + pad) & (iy >= -pad) & (iy <= ny - 1 + pad)
    if not reach.all():
        x, y, flux, ix, iy, half = (
            x[reach],
            y[reach],
            flux[reach],
            ix[reach],
            iy[reach],
            half[reach],
        )
        m_pix, det_c = m_pix[reach], det_c[reach]
        if len(flux) == 0:
            return
    if moffat_beta is None:
        norm = flux * det_j / (2.0 * np.pi * np.sqrt(det_c))
    else:
        alpha = moffat_alpha(psf_fwhm, moffat_beta) / sigma_psf  # in units of sigma_psf
        norm = flux * det_j * (moffat_beta - 1.0) / (np.pi * alpha**2 * np.sqrt(det_c))
    all_flat, all_values = [], []
    for h in np.unique(half):
        sel = np.flatnonzero(half == h)
        grid = np.arange(-h, h + 1)
        dx = (ix[sel, None] + grid[None, :]) - x[sel, None]  # (k, S)
        dy = (iy[sel, None] + grid[None, :]) - y[sel, None]
        m = m_pix[sel]
        q = (
            m[:, 0, 0, None, None] * dx[:, None, :] ** 2
            + 2.0 * m[:, 0, 1, None, None] * dx[:, None, :] * dy[:, :, None]
            + m[:, 1, 1, None, None] * dy[:, :, None] ** 2
        )  # (k, S_y, S_x)
        if moffat_beta is None:
            values = np.exp(-0.5 * q)
        else:
            values = 1.0 / (1.0 + q / alpha**2)
            values = values**3 if moffat_beta == 3.0 else values**moffat_beta
        values *= norm[sel, None, None]
        cols = ix[sel, None] + grid[None, :] + 2 * pad + 1
        rows = iy[sel, None] + grid[None, :] + 2 * pad + 1
        flat = rows[:, :, None] * width + cols[:, None, :]
        all_flat.append(flat.ravel())
        all_values.append(values.ravel())
    accumulated = np.bincount(
        np.concatenate(all_flat), weights=np.concatenate(all_values), minlength=padded_size
    )
    start = 2 * pad + 1
    image += accumulated.reshape(-1, width)[start : start + ny, start : start + nx]
