"""Skies that nobody trained on, for `scripts/bench_shift.py`.

Each factory takes ``seed`` and returns an object the imitation server renders
(``render``, ``psf_fwhm``, ``noise_sigma``); `bench_shift.py` serves them with
``mantis sky serve --config shift_skies:<factory>`` (this folder on ``PYTHONPATH``).

* `seeing`: the default sky with the Pan-STARRS1 PSF 1.5 times wider (noise drawn anew);
* `offset_r`: the default sky with PS1 r 0.2 mag too faint (a calibration error);
* `with_quasars`: the default sky (seed 1) plus quasar-like point sources.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pandas as pd

from mantis.sky import Universe
from mantis.surveys import bands_of

PS1_BANDS = tuple(b.name for b in bands_of("ps1"))
SEEING_FACTOR = 1.5
OFFSET_BAND, OFFSET_MAG = "r", 0.2
N_QUASARS = 400
QSO_SLOPE = -0.5  # f_nu ∝ nu^alpha, a typical quasar continuum
BAND_WAVELENGTH_A = {
    "FUV": 1530,
    "NUV": 2310,
    "g": 4810,
    "r": 6170,
    "i": 7520,
    "z": 8660,
    "y": 9620,
    "W1": 33500,
    "W2": 46000,
}


def _pixel_scale_arcsec(wcs) -> float:
    return float(np.sqrt(abs(np.linalg.det(wcs.celestial.pixel_scale_matrix)))) * 3600.0


def _noise(band: str, wcs, shape, sigma: float) -> np.ndarray:
    ra, dec = (float(v) for v in wcs.celestial.wcs.crval)
    key = f"{band}|{ra:.6f}|{dec:.6f}|{shape}".encode()
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(key).digest()[:8], "little"))
    return rng.normal(0.0, sigma, shape).astype(np.float32)


class _Modified:
    """The default universe with one band's image changed before the noise is added."""

    def __init__(self, base: Universe) -> None:
        self.base = base

    def psf_fwhm(self, band: str, ra: float, dec: float) -> float:
        return self.base.psf_fwhm(band, ra, dec)

    def noise_sigma(self, band: str, wcs, shape) -> float:
        return self.base.noise_sigma(band, wcs, shape)

    def changes(self, band: str) -> bool:
        raise NotImplementedError

    def modify(self, band: str, clean: np.ndarray, wcs) -> np.ndarray:
        raise NotImplementedError

    def render(self, band: str, wcs, shape, *, noise: bool = True) -> np.ndarray:
        if not self.changes(band):
            return self.base.render(band, wcs, shape, noise=noise)
        image = self.modify(band, self.base.render(band, wcs, shape, noise=False), wcs)
        if noise:
            image = image + _noise(band, wcs, shape, self.noise_sigma(band, wcs, shape))
        return image.astype(np.float32)


class _Seeing(_Modified):
    def changes(self, band: str) -> bool:
        return band in PS1_BANDS

    def psf_fwhm(self, band: str, ra: float, dec: float) -> float:
        factor = SEEING_FACTOR if band in PS1_BANDS else 1.0
        return factor * self.base.psf_fwhm(band, ra, dec)

    def modify(self, band: str, clean: np.ndarray, wcs) -> np.ndarray:
        from scipy.ndimage import gaussian_filter

        ra, dec = (float(v) for v in wcs.celestial.wcs.crval)
        fwhm = self.base.psf_fwhm(band, ra, dec)
        extra_fwhm = fwhm * math.sqrt(SEEING_FACTOR**2 - 1.0)
        sigma_px = extra_fwhm / (2.0 * math.sqrt(2.0 * math.log(2.0))) / _pixel_scale_arcsec(wcs)
        return gaussian_filter(clean, sigma_px, mode="constant")


class _Offset(_Modified):
    def changes(self, band: str) -> bool:
        return band == OFFSET_BAND

    def modify(self, band: str, clean: np.ndarray, wcs) -> np.ndarray:
        return clean * 10.0 ** (-0.4 * OFFSET_MAG)


def seeing(seed: int = 0) -> _Seeing:
    """The default sky with PS1 seeing 1.5 times worse."""
    return _Seeing(Universe.from_config("default", seed=seed))


def offset_r(seed: int = 0) -> _Offset:
    """The default sky with a 0.2 mag calibration offset in PS1 r."""
    return _Offset(Universe.from_config("default", seed=seed))


def quasar_sources(base: pd.DataFrame, n: int = N_QUASARS, seed: int = 1) -> pd.DataFrame:
    """Point sources with a power-law continuum, Lyman-break FUV/NUV, at 0.3 < z < 2.5."""
    rng = np.random.default_rng(seed)
    stars = base[base["kind"] == "star"]
    rows = stars.sample(n, replace=True, random_state=seed).reset_index(drop=True).copy()
    # placed near the galaxies' fields, 20-60 arcsec from a random galaxy
    anchors = base[base["kind"] == "galaxy"].sample(n, random_state=seed + 1)
    offset = rng.uniform(20, 60, n) / 3600.0
    angle = rng.uniform(0, 2 * np.pi, n)
    rows["dec"] = anchors["dec"].to_numpy() + offset * np.sin(angle)
    rows["ra"] = anchors["ra"].to_numpy() + offset * np.cos(angle) / np.cos(np.radians(rows["dec"]))
    rows["z"] = rng.uniform(0.3, 2.5, n)
    r_mag = rng.uniform(18.0, 21.5, n)
    for band, wavelength in BAND_WAVELENGTH_A.items():
        mag = r_mag + 2.5 * QSO_SLOPE * np.log10(wavelength / BAND_WAVELENGTH_A["r"])
        if band in ("FUV", "NUV"):  # Lyman limit redshifted past the band: flux absorbed
            mag = np.where(912.0 * (1.0 + rows["z"]) > wavelength, mag + 3.0, mag)
        rows[f"mag_{band}"] = mag
    rows["W1_W2_dust"] = 0.0
    rows["mag_W1"] -= 0.6  # hot-dust excess of quasars in the mid-infrared
    rows["mag_W2"] -= 1.0
    rows = rows.drop(columns=["W1_W2_dust"])
    rows["id"] = [f"qso{seed}-{i:05d}" for i in range(n)]
    rows["sed_class"] = "qso"
    rows["spec_sample"] = "qso"
    return rows


def with_quasars(seed: int = 1) -> Universe:
    """The default sky (seed 1) with `N_QUASARS` quasar-like point sources added."""
    base = Universe.from_config("default", seed=seed)
    sources = pd.concat([base.sources, quasar_sources(base.sources, seed=seed)], ignore_index=True)
    return Universe(sources, seed=seed, config=base.config)
