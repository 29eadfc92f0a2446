"""Bulge + disk galaxies with their own SEDs, drawn Sersic indices and evolving sizes.

The ``bulge_disk`` morphology model of the sky configuration. Each galaxy's rest-frame B light
is split between a bulge, whose kcorrect coefficients come from the red-sequence Dirichlet
distribution, and a disk, whose coefficients come from the blue-cloud one, so the bulge is
redder than the disk at every redshift and the fraction of light in the bulge differs between
bands (``bulge_frac_<band>``): rendered galaxies have colour gradients. The catalogue's
``coeff_*`` are the mass-weighted sum of both, so the total SED still gives the total
magnitudes.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from mantis.sky._seds import LF_FILTER, galaxy_absolute_maggies, galaxy_magnitudes
from mantis.surveys import BANDS

__all__ = ["BULGE_FRACTION_COLUMNS", "bulge_disk_components", "size_evolution"]

BULGE_FRACTION_COLUMNS = tuple(f"bulge_frac_{b.name}" for b in BANDS)
# half-light radii shrink as ((1 + z) / 1.1)^-eta (van der Wel et al. 2014 find ~0.75 for
# late types and ~1.2 for early types); 1.1: the Shen et al. (2003) sizes are for z ~ 0.1
_SIZE_EVOLUTION_ETA = {"blue": 0.75, "red": 1.2}
# Sersic indices, drawn continuously and stored on a 0.1 grid so that GalSim builds its
# per-index tables a few dozen times, not once per galaxy
_N_BULGE = {"blue": (3.0, 0.6), "red": (4.0, 0.6)}  # mean, spread; clipped to 2.5-5
_N_DISK_RANGE = (0.7, 1.5)
_N_STEP = 0.1


def size_evolution(sed_class: str, redshift: np.ndarray) -> np.ndarray:
    """Factor multiplying the local size-luminosity relation's radii at ``redshift``."""
    return ((1.0 + np.asarray(redshift, dtype=float)) / 1.1) ** -_SIZE_EVOLUTION_ETA[sed_class]


def _component_mass(coefficients: np.ndarray, abs_b: np.ndarray) -> np.ndarray:
    """Template mass (arbitrary units) of a component of rest-frame B magnitude ``abs_b``."""
    return 10.0 ** (-0.4 * abs_b) / galaxy_absolute_maggies(coefficients, LF_FILTER)


def bulge_disk_components(
    sed_class: str,
    redshift: np.ndarray,
    absolute_mag_b: np.ndarray,
    distmod: np.ndarray,
    coefficients: Mapping[str, np.ndarray],
    hlr_arcsec: np.ndarray,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """Magnitudes, band-wise bulge fractions and structure of bulge + disk galaxies.

    Parameters
    ----------
    sed_class : {'blue', 'red'}
        The galaxy population (late or early type): sets the bulge fraction, the bulge-to-disk
        size ratio and the bulge Sersic index.
    redshift, absolute_mag_b, distmod : ndarray, shape (n,)
        Redshift, rest-frame absolute magnitude in `LF_FILTER`, distance modulus.
    coefficients : mapping
        ``{'bulge': (n, 5), 'disk': (n, 5)}`` kcorrect coefficients of each component.
    hlr_arcsec : ndarray, shape (n,)
        Half-light radius from the size-luminosity relation of the type, arcsec: the disk's
        for blue galaxies, the bulge's for red ones.
    rng : numpy.random.Generator
        Source of every draw made here.

    Returns
    -------
    dict
        ``mags`` (n, 9) observed AB magnitudes without Milky-Way extinction, ``coeff`` (n, 5),
        ``bulge_frac`` (rest-frame B), ``bulge_frac_<band>`` for each band, ``hlr_disk``,
        ``hlr_bulge``, ``n_disk``, ``n_bulge``.
    """
    n = redshift.size
    # light fraction in the bulge: spiral-like blue galaxies have small bulges
    bulge_b = rng.beta(1.2, 6.0, n) if sed_class == "blue" else rng.beta(6.0, 2.0, n)
    bulge_b = np.clip(bulge_b, 1e-3, 1.0 - 1e-3)
    abs_bulge = absolute_mag_b - 2.5 * np.log10(bulge_b)
    abs_disk = absolute_mag_b - 2.5 * np.log10(1.0 - bulge_b)
    with np.errstate(divide="ignore", over="ignore"):
        flux_bulge = 10.0 ** (
            -0.4 * galaxy_magnitudes(coefficients["bulge"], redshift, abs_bulge, distmod)
        )
        flux_disk = 10.0 ** (
            -0.4 * galaxy_magnitudes(coefficients["disk"], redshift, abs_disk, distmod)
        )
        total = flux_bulge + flux_disk
        mags = -2.5 * np.log10(total)
    fraction = np.divide(flux_bulge, total, out=np.zeros_like(total), where=total > 0)
    mass_bulge = _component_mass(coefficients["bulge"], abs_bulge)[:, None]
    mass_disk = _component_mass(coefficients["disk"], abs_disk)[:, None]
    coeff = mass_bulge * coefficients["bulge"] + mass_disk * coefficients["disk"]
    coeff /= coeff.sum(axis=1, keepdims=True)
    if sed_class == "blue":  # a small bulge inside the disk
        hlr_disk = hlr_arcsec
        hlr_bulge = hlr_arcsec * rng.uniform(0.2, 0.5, n)
    else:  # a dominant bulge inside a fainter, larger disk
        hlr_bulge = hlr_arcsec
        hlr_disk = hlr_arcsec * rng.uniform(1.3, 2.0, n)
    mean, spread = _N_BULGE[sed_class]
    n_bulge = np.clip(rng.normal(mean, spread, n), 2.5, 5.0)
    n_disk = rng.uniform(*_N_DISK_RANGE, n)
    out = {
        "mags": mags,
        "coeff": coeff,
        "bulge_frac": bulge_b,
        "hlr_disk": hlr_disk,
        "hlr_bulge": np.maximum(hlr_bulge, 0.02),
        "n_bulge": np.round(n_bulge / _N_STEP) * _N_STEP,
        "n_disk": np.round(n_disk / _N_STEP) * _N_STEP,
    }
    for j, column in enumerate(BULGE_FRACTION_COLUMNS):
        out[column] = fraction[:, j]
    return out
