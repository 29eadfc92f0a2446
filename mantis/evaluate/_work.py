"""What `evaluate_run` and `calibrate_run` share: argument checks, the catalogue, densities.

Intermediate arrays (network densities, photometry, baseline densities) are kept under a work
folder keyed by the inputs, so a rerun after an interruption skips what is done.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mantis.evaluate._validate import EvaluationError
from mantis.stack import SPLITS, DatasetReader

__all__ = ["WorkCache", "check_run_arguments", "file_key", "read_catalog", "split_densities"]


def file_key(path: Path) -> str:
    """Path, size and modification time: changes whenever the file does."""
    stat = path.stat()
    return f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"


class WorkCache:
    """Arrays kept between runs, valid while the inputs they came from are unchanged."""

    def __init__(self, folder: Path, key: str):
        self.folder = folder
        self.key = hashlib.sha256(key.encode()).hexdigest()[:16]

    def get(self, name: str, compute: Callable[[], np.ndarray]) -> np.ndarray:
        """Return the stored array ``name``, computing and storing it (atomically) if absent."""
        path = self.folder / f"{name}.{self.key}.npy"
        if path.is_file():
            return np.load(path)
        value = np.asarray(compute())
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        with tmp.open("wb") as handle:
            np.save(handle, value)
        tmp.replace(path)
        return value


def check_run_arguments(
    ckpt: Path,
    dataset: Path,
    *,
    split: str,
    n_boot: Any = None,
    truth: str | os.PathLike | None = None,
    calibration: str | os.PathLike | None = None,
    out_dir: Path | None = None,
) -> None:
    """Check every argument of `evaluate_run` / `calibrate_run` before any work starts.

    Raises
    ------
    EvaluationError
        Naming the first value that is not allowed.
    """
    for label, path in (("checkpoint", ckpt), ("dataset", dataset)):
        if not path.is_file():
            raise EvaluationError(f"{label} {str(path)!r} does not exist")
    if split not in SPLITS:
        allowed = ", ".join(repr(s) for s in SPLITS[:-1]) + f" or {SPLITS[-1]!r}"
        raise EvaluationError(f"split must be {allowed}, got {split!r}")
    if n_boot is not None and (
        isinstance(n_boot, bool) or not isinstance(n_boot, int | np.integer) or n_boot < 0
    ):
        raise EvaluationError(f"n_boot must be a non-negative integer, got {n_boot!r}")
    if truth is not None and not Path(truth).is_file():
        raise EvaluationError(f"truth table {str(truth)!r} does not exist")
    if calibration is not None and not Path(calibration).is_file():
        raise EvaluationError(f"calibration file {str(calibration)!r} does not exist")
    if out_dir is not None and out_dir.exists() and not out_dir.is_dir():
        raise EvaluationError(f"output folder {str(out_dir)!r} exists and is not a folder")


def read_catalog(dataset: Path) -> dict[str, np.ndarray]:
    """``id``, ``z``, ``split`` and ``ebv`` (NaN if absent) of the dataset's finished objects."""
    with DatasetReader(dataset) as reader:
        missing = [k for k in ("catalog/z", "catalog/split", "catalog/id") if k not in reader]
        if missing:
            raise EvaluationError(f"dataset {str(dataset)!r} lacks {missing}")
        columns = ["id", "z", "split", *(["ebv"] if "catalog/ebv" in reader else [])]
        catalog = reader.catalog(columns)
    catalog["z"] = catalog["z"].astype(np.float64)
    if "ebv" in catalog:
        catalog["ebv"] = catalog["ebv"].astype(np.float64)
    else:
        catalog["ebv"] = np.full(catalog["z"].size, np.nan)
    return catalog


def split_densities(
    predictor: Any, dataset: Path, split: str, n_expected: int, cache: WorkCache | None
) -> np.ndarray:
    """Return the network's raw densities of one split (from ``cache`` when it holds them)."""

    def compute() -> np.ndarray:
        return predictor.predict_dataset(dataset, split=split)

    probs = compute() if cache is None else cache.get(f"probs_{split}", compute)
    if probs.shape != (n_expected, predictor.zgrid.n_bins):
        raise EvaluationError(
            f"predictor returned {probs.shape} densities for split {split!r}, expected "
            f"({n_expected}, {predictor.zgrid.n_bins})"
        )
    return probs
