"""A tiny synthetic dataset with the exact layout of the HDF5 store, for tests and benchmarks.

Each object is a round Gaussian blob centred in every cutout. Its spectral energy distribution is
a smooth function of redshift, so the colours carry the redshift and a network can learn it. The
file follows the "Dataset" contract of ``docs/interfaces.md`` (groups, dtypes, attributes).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from mantis import __version__
from mantis.stack import DatasetWriter
from mantis.surveys import BANDS, SURVEY_NAMES, bands_of, survey

__all__ = ["DEFAULT_TEST_SIZES", "synthetic_dataset", "write_synthetic_dataset"]

DEFAULT_TEST_SIZES: dict[str, int] = {"galex": 12, "ps1": 32, "unwise": 8, "early": 16}
"""Cutout sizes (pixels) small enough for fast tests; the real defaults are much larger."""

_EARLY_PIXEL_SCALE = 1.0  # arcsec per pixel of the common early-fusion grid
_BAND_WAVELENGTH = np.log10([1530, 2310, 4810, 6170, 7520, 8660, 9620, 34000, 46000])  # angstrom


def _blob(size: int, sigma_px: float) -> np.ndarray:
    """Unit-flux circular Gaussian centred on the cutout (the object's position)."""
    axis = np.arange(size) - (size - 1) / 2.0
    r2 = axis[:, None] ** 2 + axis[None, :] ** 2
    profile = np.exp(-0.5 * r2 / sigma_px**2)
    return profile / profile.sum()


def _sed_flux(z: np.ndarray, ebv: np.ndarray, brightness: np.ndarray) -> np.ndarray:
    """Total flux (nanomaggies) per band: a smooth SED whose peak moves redward with z."""
    peak = np.log10(4000.0 * (1.0 + 2.0 * z))[:, None]
    shape = np.exp(-0.5 * ((_BAND_WAVELENGTH[None, :] - peak) / 0.35) ** 2)
    extinction = np.array([b.extinction_coeff for b in BANDS])[None, :] * ebv[:, None]
    return brightness[:, None] * (0.05 + shape) * 10.0 ** (-0.4 * extinction)


def synthetic_dataset(
    n_objects: int = 64,
    *,
    sizes: dict[str, int] | None = None,
    seed: int = 0,
    split_fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
    galex_coverage: float = 0.8,
    noise: float = 0.02,
) -> tuple[dict[str, np.ndarray], dict[str, object]]:
    """Arrays and attributes of a synthetic dataset.

    Parameters
    ----------
    n_objects : int
        Number of objects.
    sizes : dict, optional
        Cutout size in pixels per survey and ``'early'``; defaults to `DEFAULT_TEST_SIZES`.
    seed : int
        Seed of every random draw.
    split_fractions : tuple of float
        Fractions of train, val and test objects.
    galex_coverage : float
        Fraction of objects with GALEX data; the others have all-invalid GALEX pixels.
    noise : float
        Pixel noise, nanomaggies per pixel (the same in every band, for simplicity).

    Returns
    -------
    arrays : dict
        Keyed like ``build_objects`` output (``'ps1/image'``, ``'catalog/z'``...).
    attrs : dict
        File attributes (``bands``, ``surveys``, ``units``, ``grids``...).
    """
    sizes = {**DEFAULT_TEST_SIZES, **(sizes or {})}
    rng = np.random.default_rng(seed)
    z = rng.uniform(0.02, 1.2, n_objects)
    ebv = rng.uniform(0.0, 0.1, n_objects).astype(np.float32)
    brightness = 10.0 ** rng.uniform(0.5, 1.5, n_objects)
    flux = _sed_flux(z, ebv, brightness)
    has_galex = rng.uniform(size=n_objects) < galex_coverage
    n_train = round(split_fractions[0] * n_objects)
    n_val = round(split_fractions[1] * n_objects)
    split = np.array(
        [b"train"] * n_train + [b"val"] * n_val + [b"test"] * (n_objects - n_train - n_val)
    )
    arrays: dict[str, np.ndarray] = {
        "catalog/id": np.array([f"obj{i:05d}" for i in range(n_objects)], dtype=object),
        "catalog/ra": rng.uniform(150.0, 151.0, n_objects),
        "catalog/dec": rng.uniform(2.0, 3.0, n_objects),
        "catalog/z": z,
        "catalog/ebv": ebv,
        "catalog/split": rng.permutation(split),
        "catalog/has_galex": has_galex,
        "catalog/has_ps1": np.ones(n_objects, bool),
        "catalog/has_unwise": np.ones(n_objects, bool),
    }
    half_light_arcsec = 1.5
    grids = {"early": (_EARLY_PIXEL_SCALE, sizes["early"])}
    grids |= {name: (survey(name).pixel_scale, sizes[name]) for name in SURVEY_NAMES}
    for name, (scale, size) in grids.items():
        bands = BANDS if name == "early" else bands_of(name)
        columns = [b.name for b in BANDS]
        image = np.empty((n_objects, len(bands), size, size), np.float32)
        valid = np.ones(image.shape, bool)
        for j, band in enumerate(bands):
            sigma_px = np.hypot(half_light_arcsec, band.psf_fwhm / 2.355) / scale
            blob = _blob(size, sigma_px)
            total = flux[:, columns.index(band.name)]
            image[:, j] = total[:, None, None] * blob[None]
            if band.survey == "galex":
                valid[~has_galex, j] = False
        image += rng.normal(0.0, noise, image.shape).astype(np.float32)
        image[~valid] = 0.0
        arrays[f"{name}/image"] = image
        arrays[f"{name}/valid"] = valid
        if name != "early":
            arrays[f"{name}/ivar"] = np.where(valid, 1.0 / noise**2, 0.0).astype(np.float32)
    attrs = {
        "bands": [b.name for b in BANDS],
        "surveys": list(SURVEY_NAMES),
        "units": "nanomaggies per pixel (AB)",
        "grids": json.dumps(
            {name: {"pixel_scale": scale, "size": size} for name, (scale, size) in grids.items()}
        ),
        "mantis_version": __version__,
        "config_hash": f"synthetic-{seed}",
        "n_written": n_objects,
    }
    return arrays, attrs


def write_synthetic_dataset(
    path: str | os.PathLike,
    n_objects: int = 64,
    *,
    chunk_objects: int = 1,
    compression: str | None = None,
    **kwargs,
) -> Path:
    """Write `synthetic_dataset` to an HDF5 file at ``path`` (atomically) and return the path.

    ``chunk_objects`` and ``compression`` go to `DatasetWriter` (``64`` and ``'lzf'`` give the
    layout ``mantis build`` writes by default); other keyword arguments go to
    `synthetic_dataset`.
    """
    path = Path(path)
    arrays, attrs = synthetic_dataset(n_objects, **kwargs)
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    attrs = {**attrs, "catalog_hash": attrs["config_hash"]}
    with DatasetWriter(
        tmp, n_objects=n_objects, attrs=attrs, chunk_objects=chunk_objects, compression=compression
    ) as writer:
        writer.write(0, arrays)
    tmp.replace(path)
    return path
