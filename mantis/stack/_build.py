"""From cached raw cutouts to the arrays of the HDF5 dataset.

`build_objects` turns one chunk of the catalogue into every array of docs/interfaces.md
("Dataset") in memory (``mantis predict`` feeds them straight to a network); `build_dataset`
runs it chunk by chunk into one resumable HDF5 file (``mantis build``).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mantis import __version__
from mantis.config import config_hash, load_settings
from mantis.stack._dataset import DatasetError, DatasetWriter, assign_splits, catalog_hash
from mantis.stack._ebv import sfd_ebv
from mantis.stack._grids import EARLY, Grid, grids_from_config, object_projection
from mantis.stack._missing import check_something_fetched, failure_reason
from mantis.stack._reproject_fast import Reprojected, reproject_planes_to_grids
from mantis.stack._stitch import stitch_tiles
from mantis.stack._units import Plane, ProductError, read_product
from mantis.surveys import BAND_INDEX, BANDS, SURVEY_NAMES, survey

__all__ = [
    "BuildSummary",
    "build_dataset",
    "build_objects",
    "build_objects_with_report",
    "resolve_build_config",
]

REPROJECTIONS = ("fast", "reference")
_CORE_COLUMNS = ("id", "ra", "dec", "z")
_BUILT_COLUMNS = ("missing", "missing_reason")  # written by the build, never passed through


def resolve_build_config(config: Mapping[str, Any] | str | None = None) -> dict[str, Any]:
    """Load and check the build configuration (a mapping, a name, or None for ``build``).

    A mapping or a file changes only the keys it names; the rest come from the shipped
    ``build.yaml``.

    Raises
    ------
    ConfigError
        If a key is unknown or a value is missing or not allowed (one line naming it).
    """
    return load_settings("build", config)


@dataclass
class BuildSummary:
    """What a build wrote and what it had to mask.

    Attributes
    ----------
    n_objects, n_built, n_skipped : int
        Catalogue length, objects built in this run, objects already in the file (resume).
    missing : dict
        Per survey, a Counter of why objects have no data: ``no_coverage``, ``failed``,
        ``not_fetched``, ``unreadable`` (file damaged) or ``all_masked`` (every pixel NaN).
    partly_masked : Counter
        Per survey, objects with some but not all native-grid pixels masked (edges, gaps).
    """

    n_objects: int = 0
    n_built: int = 0
    n_skipped: int = 0
    missing: dict[str, Counter] = field(
        default_factory=lambda: {name: Counter() for name in SURVEY_NAMES}
    )
    partly_masked: Counter = field(default_factory=Counter)

    def add(self, other: BuildSummary) -> None:
        """Accumulate another chunk's report."""
        self.n_built += other.n_built
        for name in SURVEY_NAMES:
            self.missing[name].update(other.missing[name])
        self.partly_masked.update(other.partly_masked)

    def lines(self) -> list[str]:
        """Human-readable summary, one line per survey."""
        out = [
            f"built {self.n_built} of {self.n_objects} objects"
            + (f" (resumed after {self.n_skipped})" if self.n_skipped else "")
        ]
        for name in SURVEY_NAMES:
            reasons = ", ".join(f"{why}: {k}" for why, k in sorted(self.missing[name].items()) if k)
            out.append(
                f"  {name:7s} no data for {sum(self.missing[name].values())} "
                f"({reasons or 'none'}); partly masked {self.partly_masked[name]}"
            )
        return out


def _open_cache(cache):
    if isinstance(cache, str | os.PathLike):
        from mantis.fetch import CutoutCache

        return CutoutCache(cache)
    return cache


def _reproject(
    planes: list[Plane], target_sets: list[tuple[list, Grid]], cfg: Mapping
) -> list[Reprojected]:
    """Reproject the planes onto each (targets, grid) set; the fast path shares its tables."""
    fraction = float(cfg.get("min_valid_fraction", 0.999))
    if cfg.get("reprojection", "fast") == "reference":
        from mantis.stack._reproject_ref import reproject_planes_reference

        return [
            reproject_planes_reference(planes, targets, grid.shape, min_valid_fraction=fraction)
            for targets, grid in target_sets
        ]
    return reproject_planes_to_grids(
        planes,
        [(targets, grid.shape) for targets, grid in target_sets],
        min_valid_fraction=fraction,
    )


def _place(
    result: Reprojected,
    keys: list[tuple[int, int]],
    image: np.ndarray,
    valid: np.ndarray,
    ivar: np.ndarray | None,
) -> None:
    """Stitch tiles sharing an (object, band) key and put them into the output arrays."""
    groups: dict[tuple[int, int], list[int]] = {}
    for k, key in enumerate(keys):
        groups.setdefault(key, []).append(k)
    for (n, b), members in groups.items():
        merged = stitch_tiles(result.image[members], result.valid[members], result.ivar[members])
        image[n, b], valid[n, b] = merged[0], merged[1]
        if ivar is not None:
            ivar[n, b] = merged[2]


def _catalog_arrays(chunk: pd.DataFrame, cfg: Mapping) -> dict[str, np.ndarray]:
    ra = chunk["ra"].to_numpy(dtype=float)
    dec = chunk["dec"].to_numpy(dtype=float)
    z = chunk["z"].to_numpy(dtype=float) if "z" in chunk else np.full(len(chunk), np.nan)
    split = cfg["split"]
    arrays = {
        "catalog/id": chunk["id"].astype(str).to_numpy(dtype=object),
        "catalog/ra": ra,
        "catalog/dec": dec,
        "catalog/z": z,
        "catalog/ebv": sfd_ebv(ra, dec, source=cfg.get("ebv", "auto")),
        "catalog/split": assign_splits(
            ra,
            dec,
            nside=split["nside"],
            fractions=split["fractions"],
            seed=int(split.get("seed", 0)),
        ),
    }
    for column in chunk.columns:
        name = str(column).replace("/", "_")
        if (
            name in _CORE_COLUMNS
            or f"catalog/{name}" in arrays
            or name.startswith("has_")
            or name in _BUILT_COLUMNS
        ):
            continue
        values = chunk[column]
        if pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(values):
            arrays[f"catalog/{name}"] = values.to_numpy()
        elif pd.api.types.is_string_dtype(values) or values.dtype == object:
            arrays[f"catalog/{name}"] = values.astype(str).to_numpy(dtype=object)
    return arrays


def build_objects_with_report(
    catalog_chunk: pd.DataFrame, cache, config: Mapping[str, Any] | str | None = None
) -> tuple[dict[str, np.ndarray], BuildSummary]:
    """`build_objects` plus a `BuildSummary` of what was masked and why."""
    cfg = resolve_build_config(config)
    grids = grids_from_config(cfg)
    cache = _open_cache(cache)
    chunk = catalog_chunk.reset_index(drop=True)
    n = len(chunk)
    report = BuildSummary(n_objects=n, n_built=n)
    arrays = _catalog_arrays(chunk, cfg)
    why_missing: list[dict[str, str]] = [{} for _ in range(n)]
    early = grids[EARLY]
    early_image = np.zeros((n, len(BANDS), *early.shape), dtype=np.float32)
    early_valid = np.zeros(early_image.shape, dtype=bool)
    for name in SURVEY_NAMES:
        grid = grids[name]
        band_names = survey(name).bands
        shape = (n, len(band_names), *grid.shape)
        image, valid = np.zeros(shape, np.float32), np.zeros(shape, bool)
        ivar = np.zeros(shape, np.float32)
        planes: list[Plane] = []
        owners: list[int] = []
        for row, object_id in enumerate(arrays["catalog/id"]):
            status = cache.status(object_id, name)
            paths = cache.product_paths(object_id, name) if status == "done" else []
            if not paths:
                why = status if status in ("no_coverage", "failed") else "not_fetched"
                report.missing[name][why] += 1
                why_missing[row][name] = failure_reason(cache, object_id, name, why)
                continue
            try:
                found = read_product(name, paths)
            except ProductError:
                report.missing[name]["unreadable"] += 1
                why_missing[row][name] = "unreadable"
                continue
            planes += found
            owners += [row] * len(found)
        ra_of = arrays["catalog/ra"]
        dec_of = arrays["catalog/dec"]
        native_targets = [object_projection(ra_of[r], dec_of[r], grid) for r in owners]
        early_targets = [object_projection(ra_of[r], dec_of[r], early) for r in owners]
        native_result, early_result = _reproject(
            planes, [(native_targets, grid), (early_targets, early)], cfg
        )
        keys = [(r, band_names.index(p.band)) for r, p in zip(owners, planes, strict=True)]
        _place(native_result, keys, image, valid, ivar)
        keys = [(r, BAND_INDEX[p.band]) for r, p in zip(owners, planes, strict=True)]
        _place(early_result, keys, early_image, early_valid, None)
        has = valid.any(axis=(1, 2, 3))
        fetched = np.zeros(n, dtype=bool)
        fetched[owners] = True
        report.missing[name]["all_masked"] += int((fetched & ~has).sum())
        for row in np.flatnonzero(fetched & ~has):
            why_missing[row][name] = "all_masked"
        report.partly_masked[name] += int((has & ~valid.all(axis=(1, 2, 3))).sum())
        arrays[f"catalog/has_{name}"] = has
        arrays[f"{name}/image"], arrays[f"{name}/valid"], arrays[f"{name}/ivar"] = (
            image,
            valid,
            ivar,
        )
    arrays["early/image"], arrays["early/valid"] = early_image, early_valid
    arrays["catalog/missing"] = np.array([",".join(w) for w in why_missing], dtype=object)
    arrays["catalog/missing_reason"] = np.array(
        ["; ".join(f"{s}: {r}" for s, r in w.items()) for w in why_missing], dtype=object
    )
    return arrays, report


def build_objects(
    catalog_chunk: pd.DataFrame, cache, config: Mapping[str, Any] | str | None = None
) -> dict[str, np.ndarray]:
    """Every dataset array for one chunk of the catalogue, in memory.

    Parameters
    ----------
    catalog_chunk : DataFrame
        Columns ``id``, ``ra``, ``dec`` (degrees), optionally ``z`` and others (passed through).
    cache : CutoutCache or path-like
        The raw cutout cache written by ``mantis fetch``.
    config : mapping, str or None
        Build configuration (see ``configs/build.yaml``) or its name.

    Returns
    -------
    dict of str to ndarray
        Keyed by dataset path without the leading slash (``'ps1/image'``, ``'early/valid'``,
        ``'catalog/ebv'``, ...), first dimension ``len(catalog_chunk)``.
    """
    return build_objects_with_report(catalog_chunk, cache, config)[0]


def _file_attrs(cfg: Mapping, catalog: pd.DataFrame) -> dict[str, Any]:
    import json

    grids = grids_from_config(cfg)
    return {
        "bands": [b.name for b in BANDS],
        "surveys": list(SURVEY_NAMES),
        "units": "AB nanomaggies per pixel (m_AB = 22.5 - 2.5 log10 f)",
        "grids": json.dumps({name: g.to_dict() for name, g in grids.items()}),
        "split": json.dumps(dict(cfg["split"]), default=str),
        "mantis_version": __version__,
        "config_hash": config_hash(cfg),
        "catalog_hash": catalog_hash(
            catalog["id"].astype(str).tolist(),
            catalog["ra"].to_numpy(dtype=float),
            catalog["dec"].to_numpy(dtype=float),
        ),
    }


def build_dataset(
    catalog: pd.DataFrame | str | os.PathLike,
    cache,
    out: str | os.PathLike,
    config: Mapping[str, Any] | str | None = None,
    *,
    progress: bool = True,
) -> BuildSummary:
    """Build (or resume building) the HDF5 dataset of a catalogue.

    Parameters
    ----------
    catalog : DataFrame or path-like
        The catalogue (read with `mantis.catalog.read_catalog` when a path).
    cache : CutoutCache or path-like
        The raw cutout cache.
    out : path-like
        Output ``.h5``. If it exists and was started from the same catalogue and configuration,
        the build continues from its ``n_written``.
    config : mapping, str or None
        Build configuration or its name (default ``build``).
    progress : bool
        Show a progress bar.

    Raises
    ------
    DatasetError
        If ``out`` exists but belongs to another catalogue or configuration.
    """
    from tqdm.auto import tqdm

    if not isinstance(catalog, pd.DataFrame):
        from mantis.catalog import read_catalog

        catalog = read_catalog(catalog)
    catalog = catalog.reset_index(drop=True)
    cfg = resolve_build_config(config)
    cache = _open_cache(cache)
    check_something_fetched(catalog, cache)
    chunk_size = int(cfg.get("chunk_objects", 64))
    summary = BuildSummary(n_objects=len(catalog))
    fresh = not Path(out).exists()
    any_data = False
    with DatasetWriter(
        out,
        n_objects=len(catalog),
        attrs=_file_attrs(cfg, catalog),
        chunk_objects=chunk_size,
        compression=cfg.get("compression", "lzf"),
    ) as writer:
        start = summary.n_skipped = writer.n_written
        with tqdm(
            total=len(catalog), initial=start, unit="obj", desc="build", disable=not progress
        ) as bar:
            while start < len(catalog):
                chunk = catalog.iloc[start : start + chunk_size]
                arrays, report = build_objects_with_report(chunk, cache, cfg)
                any_data = any_data or any(
                    bool(np.any(arrays[f"catalog/has_{name}"])) for name in SURVEY_NAMES
                )
                writer.write(start, arrays)
                summary.add(report)
                start += len(chunk)
                bar.update(len(chunk))
    if fresh and not any_data and len(catalog):
        Path(out).unlink(missing_ok=True)
        raise DatasetError(
            f"nothing could be built: no object of the catalogue has usable pixels in any "
            f"survey ({'; '.join(summary.lines()[1:]).strip()}); {out} was not written"
        )
    return summary
