"""The one table of surveys and bands.

Every other module takes pixel scales, PSF widths, zero points, depths, filter names and the
band order from here. Pixel values everywhere in mantis are AB nanomaggies per pixel
(m_AB = 22.5 - 2.5 log10 f); the functions below convert each survey's native product to them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "BANDS",
    "BAND_INDEX",
    "SURVEYS",
    "SURVEY_NAMES",
    "Band",
    "Survey",
    "band",
    "bands_of",
    "galex_cps_to_nanomaggies",
    "mag_to_nanomaggies",
    "nanomaggies_to_mag",
    "ps1_counts_to_nanomaggies",
    "survey",
    "unwise_vega_to_ab_nanomaggies",
]

NANOMAGGY_ZP = 22.5  # AB magnitude of one nanomaggy


@dataclass(frozen=True)
class Band:
    """One photometric band.

    Attributes
    ----------
    name : str
        Band name used throughout mantis (``'FUV'``, ``'g'``, ``'W1'``...).
    survey : str
        Key of the survey that observes it (``'galex'``, ``'ps1'``, ``'unwise'``).
    filter_name : str
        speclite filter name (``speclite.filters.load_filter``).
    psf_fwhm : float
        Typical PSF full width at half maximum, arcsec.
    psf_fwhm_range : tuple of float
        Range over which the simulated PSF FWHM varies across the sky, arcsec.
    depth_5sigma : float
        Typical 5-sigma point-source depth, AB magnitudes.
    vega_to_ab : float
        m_AB - m_Vega; zero for bands calibrated in AB.
    ab_zeropoint : float or None
        AB zero point of the native unit when it is fixed (GALEX counts/s); None otherwise.
    extinction_coeff : float
        A_band / E(B-V)_SFD: Schlafly & Finkbeiner (2011) Table 6 for PS1 and WISE, Yuan, Liu &
        Xiang (2013) for GALEX.
    """

    name: str
    survey: str
    filter_name: str
    psf_fwhm: float
    psf_fwhm_range: tuple[float, float]
    depth_5sigma: float
    vega_to_ab: float
    ab_zeropoint: float | None
    extinction_coeff: float


@dataclass(frozen=True)
class Survey:
    """One survey and the way its cutout service delivers pixels.

    Attributes
    ----------
    name : str
        Key used in configs, caches and HDF5 groups.
    title : str
        Human-readable name.
    pixel_scale : float
        Native pixel scale, arcsec per pixel.
    bands : tuple of str
        Band names in mantis order.
    native_unit : str
        Unit of the pixels the service returns.
    min_dec : float
        Southern limit of coverage, degrees.
    """

    name: str
    title: str
    pixel_scale: float
    bands: tuple[str, ...]
    native_unit: str
    min_dec: float


SURVEYS: dict[str, Survey] = {
    "galex": Survey(
        "galex",
        "GALEX GR6/7 (Legacy Survey viewer)",
        1.5,
        ("FUV", "NUV"),
        "counts/s per pixel (background subtracted)",
        -90.0,
    ),
    "ps1": Survey(
        "ps1",
        "Pan-STARRS1 3pi stacks (fitscut)",
        0.25,
        ("g", "r", "i", "z", "y"),
        "linear counts, ZP = 25 + 2.5 log10(EXPTIME)",
        -30.0,
    ),
    "unwise": Survey(
        "unwise",
        "unWISE neo7 coadds (unwise.me)",
        2.75,
        ("W1", "W2"),
        "Vega nanomaggies per pixel (MAGZP 22.5)",
        -90.0,
    ),
}
SURVEY_NAMES: tuple[str, ...] = tuple(SURVEYS)

BANDS: tuple[Band, ...] = (
    Band("FUV", "galex", "galex-fuv", 4.2, (4.0, 4.6), 20.8, 0.0, 18.82, 4.89),
    Band("NUV", "galex", "galex-nuv", 5.3, (5.0, 5.6), 21.3, 0.0, 20.08, 7.24),
    Band("g", "ps1", "panstarrs-g", 1.31, (1.0, 1.6), 23.3, 0.0, None, 3.172),
    Band("r", "ps1", "panstarrs-r", 1.19, (0.9, 1.5), 23.2, 0.0, None, 2.271),
    Band("i", "ps1", "panstarrs-i", 1.11, (0.85, 1.4), 23.1, 0.0, None, 1.682),
    Band("z", "ps1", "panstarrs-z", 1.07, (0.8, 1.35), 22.3, 0.0, None, 1.322),
    Band("y", "ps1", "panstarrs-y", 1.02, (0.8, 1.3), 21.4, 0.0, None, 1.087),
    Band("W1", "unwise", "wise2010-W1", 6.1, (6.0, 6.3), 20.3, 2.699, None, 0.189),
    Band("W2", "unwise", "wise2010-W2", 6.8, (6.6, 7.0), 19.9, 3.339, None, 0.146),
)
BAND_INDEX: dict[str, int] = {b.name: i for i, b in enumerate(BANDS)}
_BY_NAME: dict[str, Band] = {b.name: b for b in BANDS}


def band(name: str) -> Band:
    """Return the `Band` called ``name``.

    Raises
    ------
    KeyError
        If ``name`` is not one of FUV, NUV, g, r, i, z, y, W1, W2.
    """
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown band {name!r}; allowed: {', '.join(_BY_NAME)}") from None


def survey(name: str) -> Survey:
    """Return the `Survey` called ``name``.

    Raises
    ------
    KeyError
        If ``name`` is not one of galex, ps1, unwise.
    """
    try:
        return SURVEYS[name]
    except KeyError:
        raise KeyError(f"unknown survey {name!r}; allowed: {', '.join(SURVEYS)}") from None


def bands_of(survey_name: str) -> tuple[Band, ...]:
    """Return the bands of one survey, in mantis order."""
    return tuple(_BY_NAME[b] for b in survey(survey_name).bands)


def mag_to_nanomaggies(mag: np.ndarray | float) -> np.ndarray:
    """AB magnitude to flux in nanomaggies."""
    return np.power(10.0, -0.4 * (np.asarray(mag, dtype=float) - NANOMAGGY_ZP))


def nanomaggies_to_mag(flux: np.ndarray | float) -> np.ndarray:
    """Flux in nanomaggies to AB magnitude (NaN for non-positive flux)."""
    flux = np.asarray(flux, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(flux > 0, NANOMAGGY_ZP - 2.5 * np.log10(flux), np.nan)


def ps1_counts_to_nanomaggies(
    counts: np.ndarray, exptime: float, fpa_zp: float = 25.0
) -> np.ndarray:
    """Linear PS1 stack counts to AB nanomaggies.

    The stack zero point is ``FPA.ZP + 2.5 log10(EXPTIME)``, so one count is
    ``10**(-0.4 (ZP - 22.5))`` nanomaggies (0.1 / EXPTIME for FPA.ZP = 25).
    """
    if not exptime > 0:
        raise ValueError(f"PS1 EXPTIME must be positive, got {exptime!r}")
    zp = fpa_zp + 2.5 * np.log10(exptime)
    return np.asarray(counts, dtype=np.float32) * np.float32(10.0 ** (-0.4 * (zp - NANOMAGGY_ZP)))


def unwise_vega_to_ab_nanomaggies(
    flux_vega: np.ndarray, band_name: str, magzp: float = 22.5
) -> np.ndarray:
    """unWISE Vega nanomaggies (MAGZP in Vega magnitudes) to AB nanomaggies."""
    offset = band(band_name).vega_to_ab
    zp_ab = magzp + offset
    return np.asarray(flux_vega, dtype=np.float32) * np.float32(
        10.0 ** (-0.4 * (zp_ab - NANOMAGGY_ZP))
    )


def galex_cps_to_nanomaggies(cps: np.ndarray, band_name: str) -> np.ndarray:
    """GALEX counts per second to AB nanomaggies with the fixed AB zero points."""
    zp = band(band_name).ab_zeropoint
    if zp is None:
        raise ValueError(f"band {band_name!r} is not a GALEX band")
    return np.asarray(cps, dtype=np.float32) * np.float32(10.0 ** (-0.4 * (zp - NANOMAGGY_ZP)))
