"""metrics.json, report.md and report.html from `evaluate_densities` results.

The network (before and after recalibration) and every baseline share the same tables.
"""

from __future__ import annotations

import html
import json
import math
import os
from pathlib import Path
from typing import Any

__all__ = ["DENSITY_COLUMNS", "POINT_COLUMNS", "write_json", "write_report"]

# (key, header, digits)
POINT_COLUMNS = (
    ("nmad", "NMAD", 4),
    ("bias_mean", "bias (mean)", 4),
    ("bias_median", "bias (median)", 4),
    ("sigma_iqr", "σ_IQR", 4),
    ("outlier_rate_015", "η >0.15", 4),
    ("outlier_rate_005", "η ≥0.05", 4),
    ("outlier_rate_rail", "η RAIL", 4),
)
DENSITY_COLUMNS = (
    ("crps", "CRPS", 4),
    ("cde_loss", "CDE loss", 3),
    ("ks", "PIT KS", 4),
    ("cvm", "PIT CvM", 3),
    ("ad", "PIT AD", 2),
    ("pit_outlier_rate", "PIT outliers", 4),
    ("coverage_central_68", "cov 68 central", 3),
    ("coverage_central_90", "cov 90 central", 3),
    ("coverage_central_95", "cov 95 central", 3),
    ("coverage_hpd_68", "cov 68 HPD", 3),
    ("coverage_hpd_90", "cov 90 HPD", 3),
    ("coverage_hpd_95", "cov 95 HPD", 3),
)


def _clean(value: Any) -> Any:
    """JSON-safe copy: NaN and infinities become None, numpy scalars become Python ones."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and not hasattr(value, "__len__"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _atomic_write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path


def write_json(data: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``data`` as indented JSON (NaN as null), atomically."""
    return _atomic_write(Path(path), json.dumps(_clean(data), indent=2, sort_keys=False) + "\n")


def _cell(result: dict[str, Any], block: str, key: str, digits: int) -> str:
    point = result["point_estimator"]
    values = result["point"][point] if block == "point" else result["density"]
    value = values.get(key)
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    text = f"{value:.{digits}f}"
    error = result.get("errors", {}).get(key)
    if error is not None and math.isfinite(error) and error > 0:
        text += f" ± {error:.{digits}f}"
    return text


def _tables(results: dict[str, dict[str, Any]]) -> list[tuple[str, list[str], list[list[str]]]]:
    point_header = ["method", "N", *(h for _, h, _ in POINT_COLUMNS)]
    point_rows = [
        [name, str(r["n"]), *(_cell(r, "point", k, d) for k, _, d in POINT_COLUMNS)]
        for name, r in results.items()
    ]
    density_header = ["method", *(h for _, h, _ in DENSITY_COLUMNS)]
    density_rows = [
        [name, *(_cell(r, "density", k, d) for k, _, d in DENSITY_COLUMNS)]
        for name, r in results.items()
    ]
    estimator = next(iter(results.values()))["point_estimator"]
    return [
        (
            f"Point estimates (density {estimator}); Δ = (z_phot − z_spec)/(1 + z_spec)",
            point_header,
            point_rows,
        ),
        ("Densities", density_header, density_rows),
    ]


SLICE_COLUMNS = (
    ("nmad", "NMAD", 4),
    ("bias_median", "bias (median)", 4),
    ("outlier_rate_015", "η >0.15", 4),
    ("outlier_rate_005", "η ≥0.05", 4),
    ("crps", "CRPS", 4),
    ("ks", "PIT KS", 3),
    ("coverage_central_68", "cov 68 central", 3),
)
_SLICE_LABELS = {"z": "z_spec", "mag": "r magnitude", "ebv": "E(B−V)"}


def _slice_tables(
    name: str, result: dict[str, Any]
) -> list[tuple[str, list[str], list[list[str]]]]:
    """One table per slicing variable of one method's result."""
    tables = []
    for variable, sliced in result.get("slices", {}).items():
        edges, rows = sliced["edges"], []
        for i, metrics in enumerate(sliced["metrics"]):
            cells = [f"{edges[i]:.3g}–{edges[i + 1]:.3g}", str(metrics["n"])]
            for key, _, digits in SLICE_COLUMNS:
                value = metrics.get(key)
                ok = isinstance(value, int | float) and math.isfinite(value)
                cells.append(f"{value:.{digits}f}" if ok else "–")
            rows.append(cells)
        if rows:
            label = _SLICE_LABELS.get(variable, variable)
            header = [label, "N", *(h for _, h, _ in SLICE_COLUMNS)]
            tables.append((f"{name} in slices of {label}", header, rows))
    return tables


def _markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _calibration_parts(
    calibration: dict[str, Any] | None,
) -> tuple[str, list[str], list[list[str]]]:
    """Return a summary sentence and the held-out comparison table of the recalibration."""
    if not calibration:
        return "No recalibration was fitted.", [], []
    summary = f"Chosen method: {calibration['method']}"
    if calibration["method"] == "temperature":
        summary += f" (T = {calibration['temperature']:.3f})"
    summary += "; candidates scored on the held-out half of the validation split:"
    held_out = calibration.get("diagnostics", {}).get("held_out", {})
    rows = [
        [name, f"{s['crps']:.5f}", f"{s['ks']:.4f}", f"{s['score']:.4f}"]
        for name, s in held_out.items()
    ]
    return summary, ["candidate", "CRPS", "PIT KS", "score"], rows


def write_report(
    out_dir: str | os.PathLike,
    results: dict[str, dict[str, Any]],
    *,
    title: str,
    notes: list[str] | None = None,
    calibration: dict[str, Any] | None = None,
    figures: dict[str, str] | None = None,
    sliced: str | None = None,
) -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.html`` into ``out_dir``.

    Parameters
    ----------
    out_dir : path
        Output folder (created if needed).
    results : dict
        Method name → `evaluate_densities` result; the order is the table order.
    title : str
        Report heading.
    notes : list of str, optional
        Lines shown under the heading (data set, split, definitions).
    calibration : dict, optional
        `Calibration.to_dict` of the fitted recalibration.
    figures : dict, optional
        Caption → PNG file name relative to ``out_dir``.
    sliced : str, optional
        Method whose metrics in slices (z, magnitude, E(B−V)) get tables of their own.

    Returns
    -------
    (Path, Path)
        The markdown and HTML files.
    """
    out_dir = Path(out_dir)
    notes = notes or []
    figures = figures or {}
    tables = _tables(results)
    if sliced in results:
        tables += _slice_tables(sliced, results[sliced])
    md = [f"# {title}", "", *notes, ""]
    for caption, header, rows in tables:
        md += [f"## {caption}", "", _markdown_table(header, rows), ""]
    summary, cal_header, cal_rows = _calibration_parts(calibration)
    md += ["## Recalibration", "", summary, ""]
    if cal_rows:
        md += [_markdown_table(cal_header, cal_rows), ""]
    if figures:
        md += ["## Figures", ""]
        md += [f"![{caption}]({name})\n\n*{caption}*\n" for caption, name in figures.items()]
    md_path = _atomic_write(out_dir / "report.md", "\n".join(md) + "\n")

    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;max-width:1200px;margin:auto}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;"
        "padding:3px 6px;font-size:90%}th{background:#eee}img{max-width:100%}</style>",
        "</head><body>",
        f"<h1>{html.escape(title)}</h1>",
        *(f"<p>{html.escape(line)}</p>" for line in notes if line),
    ]
    for caption, header, rows in tables:
        parts += [f"<h2>{html.escape(caption)}</h2>", _html_table(header, rows)]
    parts += ["<h2>Recalibration</h2>", f"<p>{html.escape(summary)}</p>"]
    if cal_rows:
        parts.append(_html_table(cal_header, cal_rows))
    for caption, name in figures.items():
        parts.append(
            f"<figure><img src='{html.escape(name)}' alt='{html.escape(caption)}'>"
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )
    parts.append("</body></html>")
    html_path = _atomic_write(out_dir / "report.html", "\n".join(parts) + "\n")
    return md_path, html_path
