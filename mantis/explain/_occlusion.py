"""Occlusion: withhold each band, and each survey, as the network sees missing data.

A withheld band has its pixels and its valid mask zeroed, exactly what a band without
coverage looks like to the network; the change in NMAD, outlier rate and CRPS against the
intact inputs says how much the network leans on that band, overall and in slices of redshift
and magnitude.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mantis.surveys import SURVEY_NAMES, bands_of, nanomaggies_to_mag

__all__ = ["aperture_mag", "channel_bands", "occlusion_study", "slice_edges", "withhold_bands"]

APERTURE_RADIUS_PX = 3  # 3 arcsec on the 1 arcsec/px early grid: a seeing-matched aperture


def channel_bands(spec: dict[str, Any]) -> dict[str, list[str]]:
    """Band name of each image channel of every group the network reads."""
    if spec["fusion"] == "early":
        return {"early": list(spec["bands"])}
    return {g: [b.name for b in bands_of(g) if b.name in spec["bands"]] for g in spec["surveys"]}


def withhold_bands(
    arrays: dict[str, np.ndarray], spec: dict[str, Any], bands: list[str]
) -> dict[str, np.ndarray]:
    """Return a copy of ``arrays`` with the pixels and masks of ``bands`` zeroed in every group."""
    out = dict(arrays)
    for group, names in channel_bands(spec).items():
        channels = [i for i, name in enumerate(names) if name in bands]
        if not channels:
            continue
        for kind in ("image", "valid"):
            value = np.array(arrays[f"{group}/{kind}"], copy=True)
            value[:, channels] = 0
            out[f"{group}/{kind}"] = value
    return out


def aperture_mag(early_image: np.ndarray, bands: list[str], band: str = "r") -> np.ndarray:
    """AB magnitude in a 3 arcsec radius aperture on the early grid (NaN where flux <= 0)."""
    image = np.asarray(early_image[:, bands.index(band)], dtype=np.float64)
    size = image.shape[-1]
    y, x = np.mgrid[:size, :size] - (size - 1) / 2.0
    aperture = (x**2 + y**2) <= APERTURE_RADIUS_PX**2
    return nanomaggies_to_mag(np.nansum(image[:, aperture], axis=1))


def slice_edges(values: np.ndarray, n_slices: int) -> np.ndarray:
    """Quantile edges that cut ``values`` into ``n_slices`` slices of equal counts."""
    finite = values[np.isfinite(values)]
    return np.quantile(finite, np.linspace(0.0, 1.0, n_slices + 1))


def _scores(probs: np.ndarray, z: np.ndarray, zgrid: Any) -> dict[str, np.ndarray]:
    from mantis.evaluate import point_estimates, score_densities

    z_phot = point_estimates(probs, zgrid)["median"]
    delta = (z_phot - z) / (1.0 + z)
    return {"delta": delta, "crps": score_densities(probs, z, zgrid)["crps"]}


def _summary(delta: np.ndarray, crps: np.ndarray) -> dict[str, float]:
    if len(delta) == 0:
        return {"nmad": np.nan, "eta": np.nan, "crps": np.nan, "n": 0}
    nmad = 1.4826 * np.median(np.abs(delta - np.median(delta)))
    return {
        "nmad": float(nmad),
        "eta": float(np.mean(np.abs(delta) > 0.15)),
        "crps": float(np.mean(crps)),
        "n": len(delta),
    }


def occlusion_study(
    predictor: Any,
    arrays: dict[str, np.ndarray],
    z: np.ndarray,
    mag: np.ndarray,
    *,
    n_slices: int = 4,
) -> dict[str, Any]:
    """Metrics with every band, and every survey, withheld in turn.

    Parameters
    ----------
    predictor : Predictor
        The loaded network (``predict_arrays``, ``spec``, ``zgrid``).
    arrays : dict
        Build arrays of the objects.
    z, mag : ndarray, shape (n,)
        Spectroscopic redshifts and r magnitudes of the objects.
    n_slices : int
        Equal-count slices in redshift and in magnitude.

    Returns
    -------
    dict
        ``baseline`` (metrics of the intact inputs, overall and per slice), ``edges``
        (``z`` and ``mag`` slice edges) and ``withheld``: for each band and survey name, the
        metrics and their differences from the baseline (``d_nmad``, ``d_eta``, ``d_crps``),
        overall and in each slice.
    """
    spec = predictor.spec
    edges = {"z": slice_edges(z, n_slices), "mag": slice_edges(mag, n_slices)}
    values = {"z": z, "mag": mag}

    def measure(probs: np.ndarray) -> dict[str, Any]:
        s = _scores(probs, z, predictor.zgrid)
        result = {"all": _summary(s["delta"], s["crps"])}
        for axis, cut in edges.items():
            index = np.clip(np.searchsorted(cut, values[axis], side="right") - 1, 0, n_slices - 1)
            index = np.where(np.isfinite(values[axis]), index, -1)
            result[axis] = [
                _summary(s["delta"][index == i], s["crps"][index == i]) for i in range(n_slices)
            ]
        return result

    def difference(after: dict, before: dict) -> dict:
        return {f"d_{k}": after[k] - before[k] for k in ("nmad", "eta", "crps")} | after

    baseline = measure(predictor.predict_arrays(arrays))
    present = set(spec["bands"])
    variants = {b: [b] for b in spec["bands"]}
    variants |= {
        s: [b.name for b in bands_of(s) if b.name in present]
        for s in SURVEY_NAMES
        if any(b.name in present for b in bands_of(s))
    }
    withheld = {}
    for name, bands in variants.items():
        after = measure(predictor.predict_arrays(withhold_bands(arrays, spec, bands)))
        withheld[name] = {
            "bands": bands,
            "all": difference(after["all"], baseline["all"]),
            **{
                axis: [difference(a, b) for a, b in zip(after[axis], baseline[axis], strict=True)]
                for axis in edges
            },
        }
    return {
        "baseline": baseline,
        "edges": {k: v.tolist() for k, v in edges.items()},
        "withheld": withheld,
    }
