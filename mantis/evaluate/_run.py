"""``mantis evaluate`` as a library call: scores before and after recalibration, and more.

Baselines, figures and the report come with the scores.

Intermediate arrays (network densities, photometry, baseline densities) are kept under
``<out_dir>/work/`` keyed by the inputs, so a rerun after an interruption skips what is done.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from mantis.calibration import Calibration, calibration_path, find_calibration
from mantis.evaluate._metrics import score_densities
from mantis.evaluate._summary import evaluate_densities
from mantis.evaluate._validate import EvaluationError
from mantis.evaluate._work import (
    WorkCache,
    check_run_arguments,
    file_key,
    read_catalog,
    split_densities,
)
from mantis.exceptions import ConfigError, MantisWarning
from mantis.surveys import BANDS, nanomaggies_to_mag
from mantis.zgrid import ZGrid

__all__ = ["evaluate_run"]

_MAG_BAND = "r"  # the magnitude the report slices by


def _flat(result: dict[str, Any]) -> dict[str, Any]:
    """One level: the headline point metrics, the density metrics and ``n``."""
    return {**result["point"][result["point_estimator"]], **result["density"]}


def _calibration_for(
    ckpt: Path, calibration: str | os.PathLike | None, zgrid: ZGrid
) -> tuple[Calibration, str]:
    """Return the calibration to score with, and where it came from ('' for none)."""
    try:
        found = find_calibration(ckpt, calibration)
    except ConfigError as err:
        raise EvaluationError(str(err)) from None
    if found is None:
        warnings.warn(
            f"no calibration file beside {str(ckpt)!r} (run `mantis calibrate` first); "
            "the recalibrated scores equal the raw ones",
            MantisWarning,
            stacklevel=3,
        )
        return Calibration("identity", zgrid, diagnostics={"skipped": "no calibration file"}), ""
    if found.zgrid != zgrid:
        raise EvaluationError(
            f"the calibration was fitted on grid {found.zgrid} but the network predicts on "
            f"{zgrid}; run `mantis calibrate` again"
        )
    return found, str(calibration or calibration_path(ckpt))


def evaluate_run(
    ckpt: str | os.PathLike,
    dataset: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    split: str = "test",
    truth: str | os.PathLike | None = None,
    predictor: Any = None,
    calibration: str | os.PathLike | None = None,
    n_boot: int = 100,
    baselines: bool = True,
    plots: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """Score a checkpoint on a dataset split, before and after its recalibration, with baselines.

    Evaluation only reads its inputs: the checkpoint and the calibration file are never written.

    Parameters
    ----------
    ckpt : path
        The trained checkpoint.
    dataset : path
        The HDF5 dataset (``mantis build``) with ``/catalog/split`` and ``/catalog/z``.
    out_dir : path
        Where ``metrics.json``, ``report.md``, ``report.html`` and the PNG figures go.
    split : {'test', 'val', 'train'}
        Split to score.
    truth : path, optional
        The simulated sky's ``<stem>.truth.parquet``; enables the oracle baseline.
    predictor : object, optional
        Anything with ``.zgrid`` and ``.predict_dataset(h5, split=...)``; default
        ``mantis.models.load_predictor(ckpt)``.
    calibration : path, optional
        The file `calibrate_run` wrote; by default the one beside the checkpoint. Without
        either, the recalibrated scores are the raw ones (with a warning).
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

    Raises
    ------
    EvaluationError
        For an argument that is not allowed (checked before any work starts), or a
        calibration that belongs to another checkpoint or grid.
    """
    ckpt, dataset, out_dir = Path(ckpt), Path(dataset), Path(out_dir)
    check_run_arguments(
        ckpt, dataset, split=split, n_boot=n_boot, truth=truth, calibration=calibration,
        out_dir=out_dir,
    )  # fmt: skip
    if predictor is None:
        from mantis.models import load_predictor

        predictor = load_predictor(ckpt)
    zgrid = predictor.zgrid
    calibration_obj, calibration_source = _calibration_for(ckpt, calibration, zgrid)
    catalog = read_catalog(dataset)
    cache = WorkCache(out_dir / "work", f"{file_key(ckpt)}|{file_key(dataset)}")

    eval_mask = catalog["split"] == split
    z_all = catalog["z"][eval_mask]
    has_z = np.isfinite(z_all)
    if has_z.sum() < 2:
        raise EvaluationError(f"the {split} split has fewer than 2 objects with a redshift")
    z_spec = z_all[has_z]
    raw = split_densities(predictor, dataset, split, int(eval_mask.sum()), cache)[has_z]
    densities = {"network": raw, "network recalibrated": calibration_obj.apply(raw)}

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
        "calibration": calibration_obj.to_dict(),
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
            f"recalibration: {calibration_obj.method}"
            + (f" from {calibration_source}." if calibration_source else " (none fitted)."),
            "Errors are bootstrap standard deviations. Outlier rates: |Δ| > 0.15, |Δ| ≥ 0.05 "
            "and RAIL's |Δ| > max(0.06, 3σ_IQR). Definitions follow RAIL/qp (docs).",
            *_shift_notes(metrics),
        ],
        calibration=calibration_obj.to_dict(),
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
    cache: WorkCache,
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

        truth_key = hashlib.sha256(file_key(Path(truth)).encode()).hexdigest()[:8]
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
