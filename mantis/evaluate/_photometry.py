"""Forced aperture photometry on the stored, object-centred cutouts.

The classical baselines need catalogue-like fluxes measured from the very pixels the networks
see. Each band gets a circular aperture on the object (the grid centre) of radius
max(``radius_arcsec``, the band's PSF FWHM), a local background from an annulus (median), and a
point-source aperture correction computed for that aperture on that pixel grid (the geometry of
`mantis.apertures`, which the networks' photometry input shares). Errors come from
the pixel noise: the annulus' robust scatter (or the stored inverse variance for native grids),
inflated for the pixel-to-pixel correlation that up-sampling a coarser survey introduces.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from mantis.apertures import (
    APERTURE_RADIUS_ARCSEC,
    MIN_ANNULUS_PIXELS,
    MIN_VALID_FRACTION,
    band_aperture,
)
from mantis.evaluate._validate import EvaluationError
from mantis.surveys import BANDS, SURVEY_NAMES, band, survey

__all__ = ["aperture_photometry", "dataset_photometry"]

_CHUNK = 256


def aperture_photometry(
    images: np.ndarray,
    valid: np.ndarray,
    pixel_scale: float,
    band_names: tuple[str, ...] | list[str],
    *,
    radius_arcsec: float = APERTURE_RADIUS_ARCSEC,
    ivar: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Measure forced circular-aperture fluxes at the centre of object-centred cutouts.

    Parameters
    ----------
    images : ndarray, shape (n, n_bands, H, W)
        AB nanomaggies per pixel, the object at pixel ``((W - 1)/2, (H - 1)/2)``; H = W.
    valid : ndarray of bool, same shape
        True where a pixel holds data.
    pixel_scale : float
        Arcsec per pixel.
    band_names : sequence of str
        The band of each image plane (names from `mantis.surveys`).
    radius_arcsec : float
        Smallest aperture radius; each band uses at least its PSF FWHM.
    ivar : ndarray, optional
        Inverse variance per pixel (0 where unknown); without it the noise comes from the
        background annulus.

    Returns
    -------
    flux, flux_err : ndarray, shape (n, n_bands)
        Total point-source-corrected flux in nanomaggies and its 1σ error; NaN where fewer
        than 80 % of the aperture pixels are valid.

    Raises
    ------
    EvaluationError
        For mismatched shapes, non-square cutouts, unknown bands or a non-positive radius.
    """
    images = np.asarray(images, dtype=np.float32)
    valid = np.asarray(valid, dtype=bool)
    if images.ndim != 4 or images.shape != valid.shape or images.shape[2] != images.shape[3]:
        raise EvaluationError(
            f"images and valid must be (n, n_bands, H, H) arrays of one shape, got "
            f"{images.shape} and {valid.shape}"
        )
    if len(band_names) != images.shape[1]:
        raise EvaluationError(
            f"{len(band_names)} band names for {images.shape[1]} image planes: {band_names}"
        )
    if not (pixel_scale > 0 and radius_arcsec > 0):
        raise EvaluationError(
            f"pixel_scale and radius_arcsec must be positive, got {pixel_scale}, {radius_arcsec}"
        )
    try:
        bands = [band(name) for name in band_names]
    except KeyError as err:
        raise EvaluationError(str(err.args[0])) from None
    size = images.shape[2]
    n, n_bands = images.shape[:2]
    flux = np.full((n, n_bands), np.nan)
    flux_err = np.full((n, n_bands), np.nan)
    for j, b in enumerate(bands):
        geometry = band_aperture(b.name, pixel_scale, size, radius_arcsec=radius_arcsec)
        aperture, annulus = geometry.aperture, geometry.annulus
        n_ap = int(aperture.sum())
        correction, correlation = geometry.correction, geometry.correlation
        img, ok = images[:, j], valid[:, j]
        ap_valid = ok[:, aperture]
        frac_valid = ap_valid.mean(axis=1)
        ap_pixels = np.where(ap_valid, img[:, aperture], np.nan)
        ann_pixels = np.where(ok[:, annulus], img[:, annulus], np.nan)
        n_ann = np.sum(ok[:, annulus], axis=1)
        with warnings.catch_warnings():
            # objects without valid annulus or aperture pixels are expected (no coverage)
            warnings.filterwarnings("ignore", "All-NaN slice|Mean of empty", RuntimeWarning)
            background = np.nanmedian(ann_pixels, axis=1)
            mad = np.nanmedian(np.abs(ann_pixels - background[:, None]), axis=1)
            mean_in_aperture = np.nanmean(ap_pixels, axis=1)
        background = np.where(n_ann >= MIN_ANNULUS_PIXELS, background, 0.0)
        sigma_pix = 1.4826 * mad
        total = (mean_in_aperture - background) * n_ap
        if ivar is not None:
            var = np.where(ap_valid, 1.0 / np.maximum(ivar[:, j][:, aperture], 1e-30), 0.0)
            noise = np.sqrt(var.sum(axis=1) / np.maximum(frac_valid, 1e-9))
            noise = np.where(np.isfinite(noise) & (noise > 0), noise, sigma_pix * np.sqrt(n_ap))
        else:
            noise = sigma_pix * np.sqrt(n_ap) * correlation
        noise = noise * np.sqrt(1.0 + n_ap / np.maximum(n_ann, 1))
        usable = frac_valid >= MIN_VALID_FRACTION
        flux[:, j] = np.where(usable, total / correction, np.nan)
        flux_err[:, j] = np.where(usable, noise / correction, np.nan)
    return flux, flux_err


def dataset_photometry(
    h5_path: str | os.PathLike,
    *,
    split: str | None = None,
    source: str = "early",
    radius_arcsec: float = APERTURE_RADIUS_ARCSEC,
    progress: bool = True,
) -> pd.DataFrame:
    """Measure forced aperture photometry of every object of a split of a mantis dataset.

    Parameters
    ----------
    h5_path : path
        The HDF5 dataset written by ``mantis build``.
    split : {'train', 'val', 'test'} or None
        Which objects (None: all), in file order.
    source : {'early', 'native'}
        Measure on ``/early/image`` (one grid for all nine bands) or on each survey's native
        grid (``/<survey>/image``, with ``/<survey>/ivar`` for the errors).
    radius_arcsec : float
        Smallest aperture radius.
    progress : bool
        Show a progress bar.

    Returns
    -------
    pandas.DataFrame
        ``row`` (index in the file), ``id``, ``z``, ``ebv``, ``flux_<band>`` and
        ``flux_err_<band>`` (nanomaggies) for the nine bands.
    """
    from mantis.stack import DatasetError, DatasetReader, check_split

    if source not in ("early", "native"):
        raise EvaluationError(f"source must be 'early' or 'native', got {source!r}")
    try:
        check_split(split, allow_all=True)
    except DatasetError as err:
        raise EvaluationError(str(err)) from None
    path = Path(h5_path)
    if not path.is_file():
        raise EvaluationError(f"dataset {str(path)!r} does not exist")
    names = [b.name for b in BANDS]
    with DatasetReader(path) as reader:
        rows = reader.rows(split)
        grids = reader.grids()
        groups = ["early"] if source == "early" else [s for s in SURVEY_NAMES if s in reader]
        missing = [g for g in groups if f"{g}/image" not in reader]
        if missing:
            raise EvaluationError(f"dataset {str(path)!r} has no {missing[0]}/image")
        flux = np.full((rows.size, len(names)), np.nan)
        flux_err = np.full_like(flux, np.nan)
        keys = [k for g in groups for k in ([g, f"{g}/ivar"] if source == "native" else [g])]
        chunks = reader.iter_arrays(keys, rows, _CHUNK)
        if progress:
            from tqdm.auto import tqdm

            chunks = tqdm(chunks, desc="aperture photometry", unit="chunk",
                          total=-(-rows.size // _CHUNK))  # fmt: skip
        for start, arrays in zip(range(0, rows.size, _CHUNK), chunks, strict=False):
            for group in groups:
                group_bands = names if group == "early" else list(survey(group).bands)
                f, e = aperture_photometry(
                    arrays[f"{group}/image"],
                    arrays[f"{group}/valid"],
                    float(grids[group]["pixel_scale"]),
                    group_bands,
                    radius_arcsec=radius_arcsec,
                    ivar=arrays.get(f"{group}/ivar"),
                )
                cols = [names.index(b) for b in group_bands]
                flux[start : start + len(f), cols] = f
                flux_err[start : start + len(f), cols] = e
        columns = reader.catalog(["id", "z", *(["ebv"] if "catalog/ebv" in reader else [])])
        table = {
            "row": rows,
            "id": columns["id"][rows],
            "z": columns["z"][rows],
            "ebv": columns["ebv"][rows] if "ebv" in columns else np.zeros(rows.size),
        }
    for j, name in enumerate(names):
        table[f"flux_{name}"] = flux[:, j]
        table[f"flux_err_{name}"] = flux_err[:, j]
    return pd.DataFrame(table)
