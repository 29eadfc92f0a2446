"""Input-level features for the shift score: photometry and light profile of each cutout band.

The network's embedding is blind to some shifts that matter (a calibration offset in one band,
a wider PSF, objects fainter than any it trained on) because its input stretch and training
augmentations make it invariant to them. These features are measured on the very arrays the
network sees (``'<group>/image'`` and ``'<group>/valid'``), per band:

* ``mag``: ``asinh(F_big / s)``, the flux ``F_big`` in a central aperture of radius
  ``size / 6`` pixels, softened by ``s``, the typical aperture noise of that band in training
  (an asinh magnitude in units of ln 10 / 2.5 mag, linear near zero flux);
* ``core`` and ``concentration``: ``F / sqrt(F_big² + s²)`` for the flux ``F`` inside
  ``max(size / 40, 0.75)`` pixels (the central two by two pixels of an even-sized cutout,
  centred on the object) and inside ``size / 16`` pixels: both grow for point sources and
  shrink when the PSF widens;
* ``log_noise``: the log of the pixel noise (robust scatter beyond ``size / 3`` pixels) over
  the band's typical noise;
* ``valid``: the fraction of the band's pixels that hold data;

plus the ``colour`` of each pair of adjacent bands of a group (difference of ``mag``). Apertures
are partial-coverage corrected and a band with less than half of an aperture covered reads as
zero flux (its ``valid`` feature says why).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "INPUT_FEATURE_KINDS",
    "band_noise_levels",
    "colour_columns",
    "input_features",
    "magnitude_columns",
]

INPUT_FEATURE_KINDS = ("mag", "core", "concentration", "log_noise", "valid", "colour")
_PER_BAND = 5  # mag, core, concentration, log_noise, valid
_CORE, _SMALL, _BIG, _OUTER = 1 / 40, 1 / 16, 1 / 6, 1 / 3  # radii as fractions of the side


def _radius(size: int) -> np.ndarray:
    axis = np.arange(size) - (size - 1) / 2.0
    return np.hypot(axis[:, None], axis[None, :])


def _group_measurements(image: np.ndarray, valid: np.ndarray) -> dict[str, np.ndarray]:
    """Aperture fluxes, pixel noise and coverage ``(n, bands)`` of one image group."""
    valid = np.asarray(valid, dtype=bool) & np.isfinite(image)
    pixels = np.where(valid, image, 0.0).astype(np.float64)
    radius = _radius(image.shape[-1])
    size = image.shape[-1]
    out = {"valid": valid.mean(axis=(-2, -1))}
    apertures = {"core": _CORE, "small": _SMALL, "big": _BIG}
    for name, fraction in apertures.items():
        aperture = radius <= max(fraction * size, 0.75)  # at least the central pixel(s)
        covered = (valid & aperture).sum(axis=(-2, -1)) / aperture.sum()
        flux = (pixels * aperture).sum(axis=(-2, -1)) / np.maximum(covered, 1e-12)
        out[name] = np.where(covered >= 0.5, flux, 0.0)
        out[f"area_{name}"] = np.full(covered.shape, float(aperture.sum()))
    outer = np.where(valid & (radius > _OUTER * size), image, np.nan)
    outer = outer.reshape(*image.shape[:2], -1)
    with np.errstate(all="ignore"):
        enough = np.sum(np.isfinite(outer), axis=-1) >= 8
        quartiles = np.nanpercentile(np.where(enough[..., None], outer, 0.0), [25, 75], axis=-1)
    out["noise"] = np.where(enough, (quartiles[1] - quartiles[0]) / 1.349, np.nan)
    return out


def band_noise_levels(
    arrays: dict[str, np.ndarray], groups: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Typical pixel noise and aperture noise of every band (medians over the objects given).

    Returns
    -------
    pixel_noise, aperture_noise : ndarray, shape (n_bands,)
        The bands of ``groups`` in order; ``aperture_noise = pixel_noise * sqrt(area_big)``
        softens the ``mag`` feature of `input_features`.
    """
    pixel, aperture = [], []
    for group in groups:
        m = _group_measurements(arrays[f"{group}/image"], arrays[f"{group}/valid"])
        with np.errstate(all="ignore"):
            noise = np.nan_to_num(np.nanmedian(m["noise"], axis=0), nan=1.0)
        noise = np.where(noise > 0, noise, 1.0)
        pixel.append(noise)
        aperture.append(noise * np.sqrt(m["area_big"][0]))
    return np.concatenate(pixel), np.concatenate(aperture)


def input_features(
    arrays: dict[str, np.ndarray],
    groups: list[str],
    pixel_noise: np.ndarray,
    aperture_noise: np.ndarray,
) -> np.ndarray:
    """Per-object input features ``(n, n_features)`` float64 (see the module docstring).

    Parameters
    ----------
    arrays : dict
        Build arrays with ``'<group>/image'`` (nanomaggies) and ``'<group>/valid'``.
    groups : list of str
        Image groups the network reads (``['early']`` or the surveys).
    pixel_noise, aperture_noise : ndarray
        `band_noise_levels` of the training set.

    Returns
    -------
    ndarray
        Per band of each group ``mag, core, concentration, log_noise, valid``, then the group's
        adjacent-band colours.
    """
    columns, band = [], 0
    for group in groups:
        m = _group_measurements(arrays[f"{group}/image"], arrays[f"{group}/valid"])
        n_bands = m["big"].shape[1]
        soft = np.asarray(aperture_noise[band : band + n_bands], dtype=np.float64)
        typical = np.asarray(pixel_noise[band : band + n_bands], dtype=np.float64)
        mag = np.arcsinh(m["big"] / soft)
        core = m["core"] / np.hypot(m["big"], soft)
        concentration = m["small"] / np.hypot(m["big"], soft)
        with np.errstate(all="ignore"):
            log_noise = np.nan_to_num(np.log(m["noise"] / typical), nan=0.0)
        per_band = np.stack([mag, core, concentration, log_noise, m["valid"]], axis=-1)
        columns += [per_band.reshape(len(mag), -1), mag[:, :-1] - mag[:, 1:]]
        band += n_bands
    return np.concatenate(columns, axis=1)


def magnitude_columns(arrays: dict[str, np.ndarray], groups: list[str]) -> np.ndarray:
    """Return the indices of the ``mag`` features among the `input_features` columns."""
    columns, start = [], 0
    for group in groups:
        n_bands = arrays[f"{group}/image"].shape[1]
        columns += [start + _PER_BAND * band for band in range(n_bands)]
        start += _PER_BAND * n_bands + n_bands - 1
    return np.asarray(columns, dtype=np.int64)


def colour_columns(arrays: dict[str, np.ndarray], groups: list[str]) -> np.ndarray:
    """Return the indices of the ``colour`` features among the `input_features` columns."""
    columns, start = [], 0
    for group in groups:
        n_bands = arrays[f"{group}/image"].shape[1]
        start += _PER_BAND * n_bands
        columns += list(range(start, start + n_bands - 1))
        start += n_bands - 1
    return np.asarray(columns, dtype=np.int64)
