"""Spectral energy distributions through the survey filters.

Galaxy spectra are linear combinations of the five kcorrect NMF templates shipped with SkyPy
(Blanton & Roweis 2007), per unit stellar mass at 10 pc; stars are black bodies. Both are
integrated through the speclite filter curves named in `mantis.surveys` once, on a redshift
(or temperature) grid, and interpolated per source, which keeps a population of a million
galaxies to a few seconds.
"""

from __future__ import annotations

from functools import cache, lru_cache
from importlib import resources

import numpy as np

from mantis.surveys import BANDS

__all__ = [
    "LF_FILTER",
    "REDSHIFT_GRID",
    "galaxy_absolute_maggies",
    "galaxy_magnitudes",
    "star_colours",
    "template_maggies",
]

LF_FILTER = "bessell-B"  # band in which the Herbel et al. (2017) luminosity functions are defined
REDSHIFT_GRID = np.linspace(0.0, 2.6, 261)
_PAD_BELOW_A = 600.0  # the templates start at 600 Å; FUV at z > 1.2 needs bluer rest frame
_C_ANGSTROM_PER_S = 2.99792458e18
_AB_FNU = 3631e-23  # erg s-1 cm-2 Hz-1
_STAR_TEMPERATURES = np.geomspace(2500.0, 40000.0, 80)


@lru_cache(maxsize=1)
def _templates() -> tuple[np.ndarray, np.ndarray]:
    """Return (wavelength in Å, templates (5, n) in erg s-1 cm-2 Å-1), zero-padded in the UV."""
    from astropy.io import fits

    path = resources.files("skypy") / "data/kcorrect/k_nmf_derived.default.fits"
    with fits.open(path) as hdul:
        flux = np.asarray(hdul[1].data, dtype=float)
        wave = np.asarray(hdul[11].data, dtype=float)
    pad = np.array([10.0, _PAD_BELOW_A * 0.999])
    wave = np.concatenate([pad, wave])
    flux = np.concatenate([np.zeros((flux.shape[0], 2)), flux], axis=1)
    return wave, flux


@cache
def _filter_curve(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Return a finely resampled filter curve (wavelength Å, response) from speclite."""
    import speclite.filters

    filt = speclite.filters.load_filter(name)
    wave = np.linspace(filt.wavelength.min(), filt.wavelength.max(), 1500)
    return wave, np.interp(wave, filt.wavelength, filt.response)


def _ab_maggies(wave_obs: np.ndarray, response: np.ndarray, flambda: np.ndarray) -> np.ndarray:
    """AB maggies of spectra ``flambda[..., n]`` sampled on ``wave_obs`` through ``response``."""
    fnu = flambda * wave_obs**2 / _C_ANGSTROM_PER_S
    weight = response / wave_obs
    return np.trapezoid(fnu * weight, wave_obs, axis=-1) / (
        _AB_FNU * np.trapezoid(weight, wave_obs)
    )


@cache
def template_maggies(filter_name: str) -> np.ndarray:
    """Maggies of each template through a filter on `REDSHIFT_GRID`, shape ``(n_z, 5)``.

    Follows SkyPy's convention: the filter is blue-shifted into the rest frame and the
    ``-2.5 log10(1 + z)`` band-width term is added later, in `galaxy_magnitudes`.
    """
    wave, flux = _templates()
    fwave, resp = _filter_curve(filter_name)
    rest = fwave[None, :] / (1.0 + REDSHIFT_GRID[:, None])  # (n_z, n_lambda)
    sampled = np.stack([np.interp(rest, wave, f) for f in flux], axis=1)  # (n_z, 5, n_lambda)
    fnu = sampled * (rest**2 / _C_ANGSTROM_PER_S)[:, None, :]
    weight = resp[None, :] / rest  # (n_z, n_lambda)
    numerator = np.trapezoid(fnu * weight[:, None, :], rest[:, None, :], axis=-1)
    return numerator / (_AB_FNU * np.trapezoid(weight, rest, axis=-1))[:, None]


def galaxy_absolute_maggies(coefficients: np.ndarray, filter_name: str) -> np.ndarray:
    """Rest-frame maggies at 10 pc per unit template mass, shape ``(n,)``."""
    return np.asarray(coefficients) @ template_maggies(filter_name)[0]


def galaxy_magnitudes(
    coefficients: np.ndarray,
    redshift: np.ndarray,
    absolute_mag_b: np.ndarray,
    distmod: np.ndarray,
) -> np.ndarray:
    """Observed AB magnitudes in the nine mantis bands (no Milky-Way extinction).

    Parameters
    ----------
    coefficients : ndarray, shape (n, 5)
        kcorrect template coefficients.
    redshift : ndarray, shape (n,)
        Redshifts, within `REDSHIFT_GRID`.
    absolute_mag_b : ndarray, shape (n,)
        Rest-frame absolute magnitude in `LF_FILTER`; sets the stellar mass.
    distmod : ndarray, shape (n,)
        Distance modulus at each redshift.

    Returns
    -------
    ndarray, shape (n, 9)
        AB magnitudes in band order FUV ... W2; ``inf`` where the spectrum has no flux.
    """
    coefficients = np.asarray(coefficients, dtype=float)
    redshift = np.asarray(redshift, dtype=float)
    mass_modulus = np.asarray(absolute_mag_b) + 2.5 * np.log10(
        galaxy_absolute_maggies(coefficients, LF_FILTER)
    )
    position = np.interp(redshift, REDSHIFT_GRID, np.arange(REDSHIFT_GRID.size))
    lower = np.clip(np.floor(position).astype(int), 0, REDSHIFT_GRID.size - 2)
    frac = (position - lower)[:, None]
    mags = np.empty((redshift.size, len(BANDS)))
    for j, band in enumerate(BANDS):
        table = template_maggies(band.filter_name)
        per_template = table[lower] * (1.0 - frac) + table[lower + 1] * frac
        maggies = np.einsum("nk,nk->n", per_template, coefficients)
        with np.errstate(divide="ignore"):
            mags[:, j] = -2.5 * np.log10(maggies)
    mags += (-2.5 * np.log10(1.0 + redshift) + np.asarray(distmod) + mass_modulus)[:, None]
    return mags


@lru_cache(maxsize=1)
def _star_table() -> np.ndarray:
    """Black-body magnitudes minus r on the temperature grid, shape ``(n_T, 9)``."""
    out = np.empty((_STAR_TEMPERATURES.size, len(BANDS)))
    for j, band in enumerate(BANDS):
        fwave, resp = _filter_curve(band.filter_name)
        # Planck B_lambda up to constants; the constants cancel in colours
        x = 1.4387769e8 / (fwave[None, :] * _STAR_TEMPERATURES[:, None])
        with np.errstate(over="ignore"):
            flam = fwave[None, :] ** -5 / np.expm1(x)
        out[:, j] = -2.5 * np.log10(np.maximum(_ab_maggies(fwave, resp, flam), 1e-300))
    return out - out[:, [BANDS.index(next(b for b in BANDS if b.name == "r"))]]


def star_colours(temperature: np.ndarray) -> np.ndarray:
    """Black-body colours ``m_band - m_r`` for the nine bands, shape ``(n, 9)``."""
    logt = np.log(np.clip(temperature, _STAR_TEMPERATURES[0], _STAR_TEMPERATURES[-1]))
    table = _star_table()
    grid = np.log(_STAR_TEMPERATURES)
    return np.stack([np.interp(logt, grid, table[:, j]) for j in range(len(BANDS))], axis=1)
