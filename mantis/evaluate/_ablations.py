"""Survey ablations: score a model with one survey's inputs withheld at a time."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mantis.surveys import BAND_INDEX, SURVEYS

__all__ = ["evaluate_ablations", "read_split_arrays", "withhold_survey"]


def read_split_arrays(dataset: str | Path, split: str) -> dict[str, np.ndarray]:
    """Read every array of one split of a dataset into memory, keyed as `build_objects` keys."""
    from mantis.stack import DatasetReader

    with DatasetReader(dataset) as reader:
        return reader.read(reader.keys(), reader.rows(split))


def withhold_survey(arrays: dict[str, np.ndarray], survey: str) -> dict[str, np.ndarray]:
    """Return a copy of ``arrays`` in which ``survey`` looks absent (zero pixels, all masked)."""
    held = dict(arrays)
    for kind in ("image", "ivar", "valid"):
        key = f"{survey}/{kind}"
        if key in held:
            held[key] = np.zeros_like(held[key])
    channels = [BAND_INDEX[b] for b in SURVEYS[survey].bands]
    for key in ("early/image", "early/valid"):
        if key in held:
            copy = held[key].copy()
            copy[:, channels] = 0
            held[key] = copy
    if f"catalog/has_{survey}" in held:
        held[f"catalog/has_{survey}"] = np.zeros_like(held[f"catalog/has_{survey}"])
    return held


def evaluate_ablations(
    checkpoint: str | Path, dataset: str | Path, *, split: str, surveys: list[str]
) -> dict[str, dict[str, float]]:
    """Score a model on ``split`` with each survey in ``surveys`` withheld in turn.

    The checkpoint's calibration (the file `mantis calibrate` wrote beside it) is applied,
    as for the headline scores.
    """
    from mantis.evaluate._calibration import Calibration
    from mantis.evaluate._metrics import density_metrics, point_metrics
    from mantis.models import load_predictor

    predictor = load_predictor(checkpoint)
    arrays = read_split_arrays(dataset, split)
    z_spec = arrays["catalog/z"]
    scores: dict[str, dict[str, float]] = {}
    for survey in surveys:
        probs = predictor.predict_arrays(withhold_survey(arrays, survey))
        if predictor.calibration is not None:
            probs = Calibration.from_dict(predictor.calibration).apply(probs)
        z_mean = probs @ predictor.zgrid.centres
        scores[survey] = {
            **point_metrics(z_mean, z_spec),
            **density_metrics(probs, z_spec, predictor.zgrid),
        }
    return scores
