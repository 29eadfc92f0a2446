"""Galaxy groups: satellites placed around centrals at nearly the same redshift.

A uniform sky has no close pairs beyond chance; real galaxies sit in groups, so neighbours
and blends are common. Here a fraction of a field's galaxies become satellites: each is moved
next to a central (a galaxy that is not a satellite), the most luminous of those closest to it
in redshift, so groups gather around bright galaxies. The projected distance is drawn from an
exponential surface-density profile of scale ``scale_kpc``, converted to an angle at the
central's redshift. Satellites keep their own redshift, magnitudes and shape.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["place_satellites"]

# a satellite's central is the most luminous of the centrals this close to it in redshift
_NEAREST_IN_Z = 8


def place_satellites(
    galaxies: pd.DataFrame,
    satellite_fraction: float,
    scale_kpc: float,
    rng: np.random.Generator,
    cosmology,
) -> pd.DataFrame:
    """Move a fraction of ``galaxies`` next to centrals; return the frame with new positions.

    Parameters
    ----------
    galaxies : pandas.DataFrame
        One field's galaxies with columns ``ra, dec, z, abs_mag_b``.
    satellite_fraction : float
        Fraction of the galaxies made satellites, in [0, 0.8].
    scale_kpc : float
        Scale length of the exponential surface density of satellites, proper kpc.
    rng : numpy.random.Generator
        Source of every draw made here.
    cosmology : astropy.cosmology.Cosmology
        Converts proper kpc to arcsec at the central's redshift.

    Returns
    -------
    pandas.DataFrame
        A copy with the satellites' ``ra, dec`` changed and a boolean column ``satellite``.
    """
    out = galaxies.copy()
    n = len(out)
    n_satellites = round(satellite_fraction * n)
    out["satellite"] = False
    if n_satellites == 0 or n_satellites >= n:
        return out
    satellites = np.sort(rng.choice(n, n_satellites, replace=False))
    is_satellite = np.zeros(n, dtype=bool)
    is_satellite[satellites] = True
    centrals = np.flatnonzero(~is_satellite)
    z = out["z"].to_numpy(float)
    by_z = centrals[np.argsort(z[centrals], kind="stable")]
    slot = np.searchsorted(z[by_z], z[satellites])
    window = slot[:, None] + np.arange(-(_NEAREST_IN_Z // 2), _NEAREST_IN_Z // 2)[None, :]
    candidates = by_z[np.clip(window, 0, by_z.size - 1)]
    luminosity = -out["abs_mag_b"].to_numpy(float)[candidates]
    host = candidates[np.arange(n_satellites), np.argmax(luminosity, axis=1)]
    kpc_per_arcsec = cosmology.kpc_proper_per_arcmin(z[host]).value / 60.0
    # surface density exp(-r / scale): the projected radius is Gamma(2, scale) distributed
    radius_arcsec = rng.gamma(2.0, scale_kpc, n_satellites) / kpc_per_arcsec
    angle = rng.uniform(0.0, 2.0 * np.pi, n_satellites)
    ra = out["ra"].to_numpy(float).copy()
    dec = out["dec"].to_numpy(float).copy()
    d_north = radius_arcsec * np.cos(angle) / 3600.0
    d_east = radius_arcsec * np.sin(angle) / 3600.0
    dec[satellites] = np.clip(dec[host] + d_north, -90.0, 90.0)
    ra[satellites] = (ra[host] + d_east / np.maximum(np.cos(np.radians(dec[host])), 1e-3)) % 360.0
    out["ra"], out["dec"] = ra, dec
    out["satellite"] = is_satellite
    return out
