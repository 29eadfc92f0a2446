"""Survey ablations and the one-page summary of a pipeline run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mantis.surveys import SURVEYS

__all__ = ["evaluate_ablations", "read_split_arrays", "withhold_survey", "write_summary"]

# columns of the summary table: (key in the metrics dict, heading, format)
_COLUMNS = (
    ("nmad", "NMAD", "{:.4f}"),
    ("bias_median", "bias (median)", "{:+.4f}"),
    ("outlier_rate_015", "outliers >0.15", "{:.3f}"),
    ("outlier_rate_005", "outliers >=0.05", "{:.3f}"),
    ("crps", "CRPS", "{:.4f}"),
    ("ks", "PIT KS", "{:.3f}"),
)


def read_split_arrays(dataset: str | Path, split: str) -> dict[str, np.ndarray]:
    """Read every array of one split of a dataset into memory, keyed as `build_objects` keys."""
    import h5py

    arrays: dict[str, np.ndarray] = {}
    with h5py.File(dataset, "r") as h5:
        n_written = int(h5.attrs.get("n_written", len(h5["catalog/ra"])))
        labels = h5["catalog/split"][:n_written]
        rows = np.flatnonzero(labels == split.encode())

        def visit(name: str, node: Any) -> None:
            if isinstance(node, h5py.Dataset) and node.shape and node.shape[0] >= n_written:
                arrays[name] = node[:n_written][rows]

        h5.visititems(visit)
    return arrays


def withhold_survey(arrays: dict[str, np.ndarray], survey: str) -> dict[str, np.ndarray]:
    """Return a copy of ``arrays`` in which ``survey`` looks absent (zero pixels, all masked)."""
    from mantis.surveys import BAND_INDEX

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
    """Score a model on ``split`` with each survey in ``surveys`` withheld in turn."""
    from mantis.evaluate import density_metrics, point_metrics
    from mantis.models import load_predictor

    predictor = load_predictor(checkpoint)
    arrays = read_split_arrays(dataset, split)
    z_spec = arrays["catalog/z"]
    scores: dict[str, dict[str, float]] = {}
    for survey in surveys:
        probs = predictor.predict_arrays(withhold_survey(arrays, survey))
        if predictor.calibration is not None:
            from mantis.evaluate import Calibration

            probs = Calibration.from_dict(predictor.calibration).apply(probs)
        z_mean = probs @ predictor.zgrid.centres
        scores[survey] = {
            **point_metrics(z_mean, z_spec),
            **density_metrics(probs, z_spec, predictor.zgrid),
        }
    return scores


def _row(name: str, metrics: dict[str, Any]) -> str:
    cells = []
    for key, _, fmt in _COLUMNS:
        value = metrics.get(key)
        cells.append(fmt.format(value) if isinstance(value, int | float) else "–")
    return f"| {name} | " + " | ".join(cells) + " |"


def write_summary(
    results: dict[str, Any], path: str | Path, *, timings: dict[str, float] | None = None
) -> None:
    """Write the markdown table comparing models, ablations and baselines."""
    lines = [
        "# Pipeline summary",
        "",
        "| estimator | " + " | ".join(h for _, h, _ in _COLUMNS) + " |",
        "|---|" + "---|" * len(_COLUMNS),
    ]
    baselines: dict[str, Any] = {}
    for model, metrics in results.items():
        lines.append(_row(f"{model} fusion", metrics.get("calibrated", metrics)))
        for survey, ablated in metrics.get("without", {}).items():
            lines.append(_row(f"{model} fusion without {survey}", ablated))
        baselines.update(metrics.get("baselines", {}))
    for name, metrics in baselines.items():
        lines.append(_row(f"baseline: {name}", metrics))
    if timings:
        lines += ["", "| step | seconds |", "|---|---|"]
        lines += [f"| {step} | {seconds:.1f} |" for step, seconds in timings.items()]
    tmp = Path(str(path) + ".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(path)
