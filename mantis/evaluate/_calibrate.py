"""``mantis calibrate`` as a library call: fit the recalibration on a split, write its file.

As RAIL's ``inform`` to ``estimate``: this stage fits and writes a small JSON file (never a
pickle) that records the checkpoint's SHA-256; prediction and evaluation apply it. The
checkpoint is only read.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from mantis.calibration import Calibration, calibration_path, write_calibration
from mantis.evaluate._calibration import fit_calibration
from mantis.evaluate._validate import EvaluationError
from mantis.evaluate._work import check_run_arguments, read_catalog, split_densities
from mantis.exceptions import MantisWarning

__all__ = ["MIN_VALIDATION_OBJECTS", "calibrate_run"]

MIN_VALIDATION_OBJECTS = 40
"""Fewer objects with a redshift than this cannot pin a recalibration down."""


def calibrate_run(
    ckpt: str | os.PathLike,
    dataset: str | os.PathLike,
    out: str | os.PathLike | None = None,
    *,
    split: str = "val",
    predictor: Any = None,
) -> dict[str, Any]:
    """Fit the recalibration of a checkpoint's densities on one split and write it to a file.

    Parameters
    ----------
    ckpt : path
        The trained checkpoint (read only).
    dataset : path
        The HDF5 dataset (``mantis build``).
    out : path, optional
        The calibration file; default ``mantis.calibration.calibration_path(ckpt)``, beside
        the checkpoint, where prediction and evaluation look for it.
    split : {'val', 'train', 'test'}
        The split to fit on; the validation split unless there is a reason.
    predictor : object, optional
        Anything with ``.zgrid`` and ``.predict_dataset(h5, split=...)``; default
        ``mantis.models.load_predictor(ckpt)``.

    Returns
    -------
    dict
        ``{'path', 'split', 'n_objects', 'calibration'}`` (the last as ``Calibration.to_dict``).

    Raises
    ------
    EvaluationError
        For an argument that is not allowed (checked before any work starts) or unusable
        densities. Nothing is written then.
    """
    ckpt, dataset = Path(ckpt), Path(dataset)
    out = calibration_path(ckpt) if out is None else Path(out)
    check_run_arguments(ckpt, dataset, split=split)
    if out.is_dir():
        raise EvaluationError(f"calibration file {str(out)!r} is a folder")
    if predictor is None:
        from mantis.models import load_predictor

        predictor = load_predictor(ckpt)
    zgrid = predictor.zgrid
    catalog = read_catalog(dataset)
    in_split = catalog["split"] == split
    z = catalog["z"][in_split]
    has_z = np.isfinite(z)
    n = int(has_z.sum())
    if n >= MIN_VALIDATION_OBJECTS:
        probs = split_densities(predictor, dataset, split, int(in_split.sum()), None)
        calibration = fit_calibration(probs[has_z], z[has_z], zgrid)
    else:
        # A tiny split (smoke runs) cannot pin a recalibration down: keep the densities as
        # they are, say so, and record it in the file.
        warnings.warn(
            f"the {split} split has {n} objects with a redshift, fewer than the "
            f"{MIN_VALIDATION_OBJECTS} a recalibration needs; densities are left uncalibrated",
            MantisWarning,
            stacklevel=2,
        )
        calibration = Calibration(
            "identity", zgrid, diagnostics={"skipped": f"{n} {split} objects"}
        )
    write_calibration(calibration, out, checkpoint=ckpt, split=split)
    return {"path": str(out), "split": split, "n_objects": n, "calibration": calibration.to_dict()}
