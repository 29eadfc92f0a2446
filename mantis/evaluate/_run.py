"""``mantis evaluate`` as a library call: densities, recalibration, baselines, figures, report.

Intermediate arrays (network densities, photometry, baseline densities) are kept under
``<out_dir>/work/`` keyed by the inputs, so a rerun after an interruption skips what is done.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mantis.evaluate._calibration import Calibration, fit_calibration
from mantis.evaluate._metrics import score_densities
from mantis.evaluate._summary import evaluate_densities
from mantis.evaluate._validate import EvaluationError
from mantis.exceptions import MantisWarning
from mantis.surveys import BANDS, nanomaggies_to_mag

__all__ = ["MIN_VALIDATION_OBJECTS", "evaluate_run"]

MIN_VALIDATION_OBJECTS = 40

_MAG_BAND = "r"  # the magnitude the report slices by


def _file_key(path: Path) -> str:
    stat = path.stat()
    return f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"


class _WorkCache:
    """Arrays kept between runs, valid while the inputs they came from are unchanged."""

    def __init__(self, folder: Path, key: str):
        self.folder = folder
        self.key = hashlib.sha256(key.encode()).hexdigest()[:16]

    def get(self, name: str, compute: Callable[[], np.ndarray]) -> np.ndarray:
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


def _read_catalog(dataset: Path) -> dict[str, np.ndarray]:
    import h5py

    with h5py.File(dataset, "r") as h5:
        missing = [k for k in ("catalog/z", "catalog/split", "catalog/id") if k not in h5]
        if missing:
            raise EvaluationError(f"dataset {str(dataset)!r} lacks {missing}")
        return {
            "id": np.asarray(h5["catalog/id"][:]).astype(str),
            "z": np.asarray(h5["catalog/z"][:], dtype=np.float64),
            "split": np.asarray(h5["catalog/split"][:]).astype("S").astype(str),
            "ebv": np.asarray(h5["catalog/ebv"][:], dtype=np.float64)
            if "catalog/ebv" in h5
            else np.full(len(h5["catalog/z"]), np.nan),
        }


def _flat(result: dict[str, Any]) -> dict[str, Any]:
    """One level: the headline point metrics, the density metrics and ``n``."""
    return {**result["point"][result["point_estimator"]], **result["density"]}


def _attach(ckpt: Path, calibration: dict[str, Any]) -> None:
    from mantis.models import attach_calibration

    attach_calibration(ckpt, calibration)


def evaluate_run(
    ckpt: str | os.PathLike,
    dataset: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    split: str = "test",
    truth: str | os.PathLike | None = None,
    predictor: Any = None,
    attach: Callable[[Path, dict[str, Any]], None] | None = None,
    n_boot: int = 100,
    baselines: bool = True,
    plots: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate a checkpoint on a dataset split, with recalibration and baselines.

    Parameters
    ----------
    ckpt : path
        The trained checkpoint; the fitted recalibration is stored in it.
    dataset : path
        The HDF5 dataset (``mantis build``) with ``/catalog/split`` and ``/catalog/z``.
    out_dir : path
        Where ``metrics.json``, ``report.md``, ``report.html`` and the PNG figures go.
    split : {'test', 'val', 'train'}
        Split to score; the recalibration is always fitted on ``'val'``.
    truth : path, optional
        The simulated sky's ``<stem>.truth.parquet``; enables the oracle baseline.
    predictor : object, optional
        Anything with ``.zgrid`` and ``.predict_dataset(h5, split=...)``; default
        ``mantis.models.load_predictor(ckpt)``.
    attach : callable, optional
        ``attach(ckpt, calibration_dict)``; default ``mantis.models.attach_calibration``.
    n_boot : int
        Bootstrap resamples for the errors.
    baselines, plots : bool
        Run the baselines; draw the figures.
    progress : bool
        Show progress bars.

    Returns
    -------
    dict
        The content of ``metrics.json``.
    """
    ckpt, dataset, out_dir = Path(ckpt), Path(dataset), Path(out_dir)
    for label, path in (("checkpoint", ckpt), ("dataset", dataset)):
        if not path.is_file():
            raise EvaluationError(f"{label} {str(path)!r} does not exist")
    if split not in ("train", "val", "test"):
        raise EvaluationError(f"split must be 'train', 'val' or 'test', got {split!r}")
    if truth is not None and not Path(truth).is_file():
        raise EvaluationError(f"truth table {str(truth)!r} does not exist")
    if predictor is None:
        from mantis.models import load_predictor

        predictor = load_predictor(ckpt)
    zgrid = predictor.zgrid
    catalog = _read_catalog(dataset)
    cache = _WorkCache(out_dir / "work", f"{_file_key(ckpt)}|{_file_key(dataset)}")

    def split_mask(name: str) -> np.ndarray:
        return catalog["split"] == name

    def predict(name: str) -> np.ndarray:
        probs = cache.get(f"probs_{name}", lambda: predictor.predict_dataset(dataset, split=name))
        if probs.shape != (int(split_mask(name).sum()), zgrid.n_bins):
            raise EvaluationError(
                f"predictor returned {probs.shape} densities for split {name!r}, expected "
                f"({int(split_mask(name).sum())}, {zgrid.n_bins})"
            )
        return probs

    val_z = catalog["z"][split_mask("val")]
    val_ok = np.isfinite(val_z)
    if val_ok.sum() >= MIN_VALIDATION_OBJECTS:
        calibration = fit_calibration(predict("val")[val_ok], val_z[val_ok], zgrid)
    else:
        # A tiny validation split (smoke runs) cannot pin a recalibration down: keep the
        # densities as they are, say so, and record it in the checkpoint and metrics.
        warnings.warn(
            f"the val split has {int(val_ok.sum())} objects with a redshift, fewer than the "
            f"{MIN_VALIDATION_OBJECTS} a recalibration needs; densities are left uncalibrated",
            MantisWarning,
            stacklevel=2,
        )
        calibration = Calibration(
            "identity", zgrid, diagnostics={"skipped": f"{int(val_ok.sum())} val objects"}
        )
    (attach or _attach)(ckpt, calibration.to_dict())

    eval_mask = split_mask(split)
    z_all = catalog["z"][eval_mask]
    has_z = np.isfinite(z_all)
    if has_z.sum() < 2:
        raise EvaluationError(f"the {split} split has fewer than 2 objects with a redshift")
    z_spec = z_all[has_z]
    raw = predict(split)[has_z]
    densities = {"network": raw, "network recalibrated": calibration.apply(raw)}

    mag = np.full(z_spec.size, np.nan)
    if baselines:
        extra, mag = _baselines(dataset, catalog, split, has_z, zgrid, cache, truth, progress)
        densities.update(extra)
    ebv = catalog["ebv"][eval_mask][has_z]

    # about 100 objects per slice or more, between 2 and 8 slices
    n_slices = int(np.clip(z_spec.size // 100, 2, 8))
    results = {
        name: evaluate_densities(
            probs, z_spec, zgrid, n_boot=n_boot, n_slices=n_slices, mag=mag, ebv=ebv
        )
        for name, probs in densities.items()
    }
    metrics = {
        "checkpoint": str(ckpt),
        "dataset": str(dataset),
        "split": split,
        "n_objects": int(z_spec.size),
        "n_without_redshift": int((~has_z).sum()),
        "zgrid": zgrid.to_dict(),
        "calibration": calibration.to_dict(),
        # flat summaries (headline point estimate + density metrics) for pipeline tables
        "raw": _flat(results["network"]),
        "calibrated": _flat(results["network recalibrated"]),
        "baselines": {k: _flat(v) for k, v in results.items() if not k.startswith("network")},
        "results": results,
    }
    if getattr(predictor, "module", None) is not None:  # a network, not a stand-in
        from mantis.explain import shift_calibration

        metrics["shift"] = shift_calibration(ckpt, dataset, split)
    from mantis.evaluate._report import write_json, write_report

    figures = _figures(out_dir, densities, z_spec, mag, zgrid, results) if plots else {}
    write_json(metrics, out_dir / "metrics.json")
    write_report(
        out_dir,
        results,
        title=f"mantis evaluation: {ckpt.name} on {dataset.name} ({split})",
        notes=[
            f"{z_spec.size} objects with a spectroscopic redshift in the {split} split; "
            f"recalibration fitted on {int(val_ok.sum())} validation objects.",
            "Errors are bootstrap standard deviations. Outlier rates: |Δ| > 0.15, |Δ| ≥ 0.05 "
            "and RAIL's |Δ| > max(0.06, 3σ_IQR). Definitions follow RAIL/qp (docs).",
            *_shift_notes(metrics),
        ],
        calibration=calibration.to_dict(),
        figures=figures,
        sliced="network recalibrated",
    )
    return json.loads((out_dir / "metrics.json").read_text())


def _shift_notes(metrics: dict[str, Any]) -> list[str]:
    from mantis.explain import shift_note

    return [shift_note(metrics["shift"])] if "shift" in metrics else []


def _baselines(
    dataset: Path,
    catalog: dict[str, np.ndarray],
    split: str,
    has_z: np.ndarray,
    zgrid: Any,
    cache: _WorkCache,
    truth: str | os.PathLike | None,
    progress: bool,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Baseline densities of the scored objects, and their r aperture magnitudes."""
    import pandas as pd

    from mantis.evaluate._baselines import (
        TabularBaseline,
        oracle_photometry,
        template_fit,
    )
    from mantis.evaluate._photometry import dataset_photometry

    names = [b.name for b in BANDS]
    table: dict[str, Any] = {}

    def photometry() -> np.ndarray:
        if "phot" not in table:
            table["phot"] = dataset_photometry(dataset, progress=progress)
        phot = table["phot"]
        flux = phot[[f"flux_{n}" for n in names]].to_numpy()
        err = phot[[f"flux_err_{n}" for n in names]].to_numpy()
        return np.stack([flux, err])

    flux, flux_err = cache.get("photometry", photometry)
    eval_rows = catalog["split"] == split
    mag = nanomaggies_to_mag(flux[eval_rows, names.index(_MAG_BAND)])[has_z]
    test_flux, test_err = flux[eval_rows][has_z], flux_err[eval_rows][has_z]
    out = {
        "template fit": cache.get(
            f"template_{split}", lambda: template_fit(test_flux, test_err, zgrid, progress=progress)
        )
    }
    train = (catalog["split"] == "train") & np.isfinite(catalog["z"])

    def knn() -> np.ndarray:
        model = TabularBaseline(zgrid).fit(flux[train], flux_err[train], catalog["z"][train])
        return model.predict(test_flux)

    if train.sum() >= 30:
        out["kNN"] = cache.get(f"knn_{split}", knn)
    if truth is not None:
        ids = catalog["id"][eval_rows][has_z]

        def oracle() -> np.ndarray:
            oracle_flux, oracle_err = oracle_photometry(pd.read_parquet(truth), ids)
            return template_fit(oracle_flux, oracle_err, zgrid, progress=progress)

        truth_key = hashlib.sha256(_file_key(Path(truth)).encode()).hexdigest()[:8]
        out["oracle template fit"] = cache.get(f"oracle_{split}_{truth_key}", oracle)
    return out, mag


def _figures(
    out_dir: Path,
    densities: dict[str, np.ndarray],
    z_spec: np.ndarray,
    mag: np.ndarray,
    zgrid: Any,
    results: dict[str, dict[str, Any]],
) -> dict[str, str]:
    from mantis.evaluate import _plots as plots

    raw, calibrated = densities["network"], densities["network recalibrated"]
    scores = {
        "before": score_densities(raw, z_spec, zgrid),
        "after": score_densities(calibrated, z_spec, zgrid),
    }
    z_phot = scores["after"]["z_mean"]
    files = {
        "z_phot (density mean, recalibrated) against z_spec": plots.plot_zphot_zspec(
            z_phot, z_spec, zgrid, out_dir / "zphot_zspec.png", title="network"
        ),
        "Δ against z_spec and r magnitude": plots.plot_residuals(
            z_phot, z_spec, mag, out_dir / "residuals.png"
        ),
        "PIT before and after recalibration": plots.plot_pit(
            {k: v["pit"] for k, v in scores.items()}, out_dir / "pit.png"
        ),
        "Coverage of credible intervals": plots.plot_coverage(scores, out_dir / "coverage.png"),
        "NMAD and outlier rates against z_spec": plots.plot_metrics_vs_z(
            results, out_dir / "metrics_vs_z.png"
        ),
        "Example densities": plots.plot_example_densities(
            densities, z_spec, zgrid, out_dir / "example_densities.png"
        ),
    }
    return {caption: path.name for caption, path in files.items()}
