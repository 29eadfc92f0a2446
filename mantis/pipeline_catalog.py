"""A pipeline run on the user's own spectroscopic catalogue instead of the simulated sky.

The ``catalog`` section of a pipeline file names a table (any kind `mantis.catalog` reads) and
its columns; the run keeps its own copy, ``runs/<name>/catalog.parquet`` (``id ra dec z
split``), whose ``split`` column is the train / val / test assignment the dataset is built
with: HEALPix cells drawn by seed (`mantis.stack.assign_splits`, the build's own rule), so the
same file and settings always give the same split and sky neighbours never straddle two splits.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mantis.catalog import read_catalog
from mantis.config import cache_root, config_hash, load_settings
from mantis.exceptions import CatalogError, ConfigError

__all__ = [
    "MIN_SPLIT_OBJECTS",
    "build_settings",
    "catalog_cache_dir",
    "catalog_source",
    "fetch_endpoints",
    "read_run_catalog",
    "write_run_catalog",
]

MIN_SPLIT_OBJECTS = {"train": 2, "val": 2, "test": 2}
"""Fewest objects per split a run can train, calibrate and score with."""


def catalog_source(section: dict[str, Any], pipeline_file: Path) -> Path:
    """Return the catalogue file: the path as given, else beside the pipeline file.

    Raises
    ------
    ConfigError
        If neither exists.
    """
    given = Path(section["path"]).expanduser()
    for path in (given, pipeline_file.parent / given):
        if path.is_file():
            return path
    raise ConfigError(
        f"catalog.path {section['path']!r} does not exist (as a path or beside "
        f"{str(pipeline_file)!r}) [in {pipeline_file}]"
    )


def _assign(catalog: pd.DataFrame, split: dict[str, Any]) -> np.ndarray:
    from mantis.stack import assign_splits

    labels = assign_splits(
        catalog["ra"].to_numpy(),
        catalog["dec"].to_numpy(),
        nside=split["nside"],
        fractions=split["fractions"],
        seed=split["seed"],
    )
    return labels.astype(str)


def read_run_catalog(section: dict[str, Any], source: Path) -> pd.DataFrame:
    """Read the user's catalogue and split it.

    Parameters
    ----------
    section : dict
        The validated ``catalog`` section (``path``, ``columns``, ``split``).
    source : Path
        The catalogue file (`catalog_source`).

    Returns
    -------
    pandas.DataFrame
        Columns ``id``, ``ra``, ``dec``, ``z``, ``split``, in the file's order.

    Raises
    ------
    CatalogError
        One line: a column the file lacks, rows with bad positions, redshifts that are not
        finite and >= 0, duplicate ids, or a split left with too few objects.
    """
    columns = {key: section["columns"].get(key) for key in ("id", "ra", "dec", "z")}
    catalog = read_catalog(source, require_z=True, columns=columns)
    catalog = catalog[["id", "ra", "dec", "z"]].copy()
    catalog["z"] = pd.to_numeric(catalog["z"]).astype("float64")
    split = section["split"]
    catalog["split"] = _assign(catalog, split)
    counts = catalog["split"].value_counts()
    for name, least in MIN_SPLIT_OBJECTS.items():
        if counts.get(name, 0) < least:
            raise CatalogError(
                f"catalogue {str(source)!r}: the {name} split holds {counts.get(name, 0)} of "
                f"{len(catalog)} objects (at least {least} needed): add objects, or raise "
                f"catalog.split.nside (now {split['nside']}; finer cells) or the {name} fraction"
            )
    return catalog


def write_run_catalog(catalog: pd.DataFrame, out: Path) -> None:
    """Write the run's copy of the catalogue (`read_run_catalog`) atomically."""
    tmp = out.with_name(out.name + ".tmp")
    catalog.to_parquet(tmp, index=False)
    tmp.replace(out)


def build_settings(build: str, split: dict[str, Any]) -> dict[str, Any]:
    """Return the build configuration named ``build`` with the catalogue's split."""
    return {**load_settings("build", build), "split": dict(split)}


def fetch_endpoints(value: str | dict | None, pipeline_file: Path) -> tuple[str | None, dict]:
    """Resolve the ``endpoints`` entry of a pipeline file.

    Parameters
    ----------
    value : str, dict or None
        One base URL for every service (``http://127.0.0.1:8080``, ``local:DIR``), an
        endpoints file (a shipped name or a YAML path), a mapping laid over
        ``configs/endpoints.yaml``, or None (the real services).
    pipeline_file : Path
        Named in error messages.

    Returns
    -------
    endpoint : str or None
        The one base URL, if given.
    endpoints : dict
        The validated endpoint settings.

    Raises
    ------
    ConfigError
        For a key or value `load_settings` refuses (one line).
    """
    if isinstance(value, str) and value.startswith(("http://", "https://", "local:")):
        return value, load_settings("endpoints")
    if isinstance(value, dict):
        return None, load_settings("endpoints", value, origin=str(pipeline_file))
    return None, load_settings("endpoints", value)


def catalog_cache_dir(
    catalog: pd.DataFrame, endpoints: dict[str, Any], endpoint: str | None, root: str | None
) -> Path:
    """Cutout cache of one catalogue served by one set of endpoints.

    The cache names files by object id, so a cache is shared only by the same ids at the same
    positions fetched from the same services.
    """
    digest = hashlib.sha256()
    digest.update(config_hash({"endpoint": endpoint, "endpoints": endpoints}).encode())
    digest.update("\n".join(catalog["id"].astype(str)).encode())
    digest.update(np.ascontiguousarray(catalog[["ra", "dec"]].to_numpy(dtype="<f8")).tobytes())
    base = Path(root) if root is not None else cache_root() / "cutouts"
    return base / f"catalog-{digest.hexdigest()[:16]}"
