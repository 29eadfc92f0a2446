"""The one-page summary of a pipeline run; the survey ablations it shows come from evaluate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["write_summary"]

# columns of the summary table: (key in the metrics dict, heading, format)
_COLUMNS = (
    ("nmad", "NMAD", "{:.4f}"),
    ("bias_median", "bias (median)", "{:+.4f}"),
    ("outlier_rate_015", "outliers >0.15", "{:.3f}"),
    ("outlier_rate_005", "outliers >=0.05", "{:.3f}"),
    ("crps", "CRPS", "{:.4f}"),
    ("ks", "PIT KS", "{:.3f}"),
)


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
