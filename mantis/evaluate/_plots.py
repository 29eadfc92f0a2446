"""The evaluation figures, written as PNG files (matplotlib, Agg backend).

Every function takes plain arrays or `evaluate_densities` results and writes one file
atomically (temporary name, then rename), returning its path.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from mantis.evaluate._metrics import OUTLIER_THRESHOLD_CNN, OUTLIER_THRESHOLD_FIXED, residuals
from mantis.zgrid import ZGrid

__all__ = [
    "plot_coverage",
    "plot_example_densities",
    "plot_metrics_vs_z",
    "plot_pit",
    "plot_residuals",
    "plot_zphot_zspec",
]

_DPI = 110
_SCATTER_LIMIT = 20_000  # above this many points, density (hexbin) plots replace scatter


def _figure(n_cols: int = 1, width: float = 5.0, height: float = 4.2):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, n_cols, figsize=(width * n_cols, height), squeeze=False)
    return fig, axes[0]


def _save(fig: Any, path: str | os.PathLike) -> Path:
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fig.tight_layout()
    fig.savefig(tmp, dpi=_DPI, format="png")
    plt.close(fig)
    tmp.replace(path)
    return path


def _points(ax: Any, x: np.ndarray, y: np.ndarray, extent: tuple[float, ...]) -> None:
    if x.size > _SCATTER_LIMIT:
        ax.hexbin(x, y, gridsize=80, extent=extent, bins="log", cmap="viridis", mincnt=1)
    else:
        ax.scatter(x, y, s=3, alpha=0.4, lw=0, color="k")


def plot_zphot_zspec(
    z_phot: np.ndarray, z_spec: np.ndarray, zgrid: ZGrid, path: str | os.PathLike, *, title: str
) -> Path:
    """z_phot against z_spec with the 1:1 line and the |Δ| = 0.15 and 0.05 outlier lines."""
    fig, (ax,) = _figure()
    lo, hi = zgrid.z_min, zgrid.z_max
    _points(ax, z_spec, z_phot, (lo, hi, lo, hi))
    line = np.linspace(lo, hi, 50)
    ax.plot(line, line, color="C3", lw=1)
    for threshold, style in ((OUTLIER_THRESHOLD_FIXED, "--"), (OUTLIER_THRESHOLD_CNN, ":")):
        for sign in (-1, 1):
            ax.plot(line, line + sign * threshold * (1 + line), style, color="C1", lw=1)
    ax.set(xlim=(lo, hi), ylim=(lo, hi), xlabel="z_spec", ylabel="z_phot", title=title)
    ax.text(0.03, 0.95, "dashed |Δ| = 0.15, dotted 0.05", transform=ax.transAxes, va="top")
    return _save(fig, path)


def plot_residuals(
    z_phot: np.ndarray,
    z_spec: np.ndarray,
    mag: np.ndarray | None,
    path: str | os.PathLike,
    *,
    mag_label: str = "r aperture magnitude",
) -> Path:
    """Δ = (z_phot − z_spec)/(1 + z_spec) against z_spec and against magnitude."""
    delta = residuals(z_phot, z_spec)
    panels = [("z_spec", z_spec)]
    if mag is not None and np.isfinite(mag).any():
        panels.append((mag_label, mag))
    fig, axes = _figure(len(panels))
    for ax, (label, x) in zip(axes, panels, strict=True):
        finite = np.isfinite(x)
        lo, hi = np.nanpercentile(x[finite], [0.5, 99.5]) if finite.any() else (0.0, 1.0)
        _points(ax, x[finite], delta[finite], (lo, hi, -0.5, 0.5))
        for threshold, style in ((OUTLIER_THRESHOLD_FIXED, "--"), (OUTLIER_THRESHOLD_CNN, ":")):
            ax.axhline(threshold, ls=style, color="C1", lw=1)
            ax.axhline(-threshold, ls=style, color="C1", lw=1)
        ax.axhline(0.0, color="C3", lw=1)
        ax.set(xlim=(lo, hi), ylim=(-0.5, 0.5), xlabel=label, ylabel="Δ")
    return _save(fig, path)


def plot_pit(pits: dict[str, np.ndarray], path: str | os.PathLike, *, n_bins: int = 25) -> Path:
    """PIT histograms (one per label) with the ±2σ band expected of a uniform PIT."""
    fig, (ax,) = _figure()
    n = max(p.size for p in pits.values())
    expected = n / n_bins
    band = 2.0 * np.sqrt(expected * (1 - 1 / n_bins))
    ax.axhspan(expected - band, expected + band, color="0.85", label="uniform ±2σ")
    for label, pit in pits.items():
        counts, edges = np.histogram(pit, bins=n_bins, range=(0.0, 1.0))
        ax.stairs(counts * (n / max(pit.size, 1)), edges, label=label, lw=1.5)
    ax.set(xlim=(0, 1), xlabel="PIT", ylabel="objects per bin")
    ax.legend(loc="upper center")
    return _save(fig, path)


def plot_coverage(scores: dict[str, dict[str, np.ndarray]], path: str | os.PathLike) -> Path:
    """Coverage of central and HPD credible intervals against their nominal level."""
    fig, (ax,) = _figure()
    levels = np.linspace(0.0, 1.0, 101)
    ax.plot(levels, levels, color="k", lw=1, label="ideal")
    for i, (label, s) in enumerate(scores.items()):
        central = [np.mean(np.abs(s["pit"] - 0.5) <= a / 2) for a in levels]
        hpd = [np.mean(s["hpd"] <= a) for a in levels]
        ax.plot(levels, central, color=f"C{i}", label=f"{label} central")
        ax.plot(levels, hpd, color=f"C{i}", ls="--", label=f"{label} HPD")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="nominal level", ylabel="fraction covered")
    ax.legend(fontsize="small")
    return _save(fig, path)


def plot_metrics_vs_z(
    results: dict[str, dict[str, Any]], path: str | os.PathLike, *, point: str = "mean"
) -> Path:
    """NMAD and the two outlier rates in slices of z_spec, one line per method."""
    fig, axes = _figure(2)
    for label, result in results.items():
        sliced = result["slices"]["z"]
        edges = np.asarray(sliced["edges"])
        centres = 0.5 * (edges[1:] + edges[:-1])
        rows = sliced["metrics"]
        nmad = [r.get("nmad", np.nan) for r in rows]
        out15 = [r.get("outlier_rate_015", np.nan) for r in rows]
        out05 = [r.get("outlier_rate_005", np.nan) for r in rows]
        (line,) = axes[0].plot(centres, nmad, marker="o", label=label)
        axes[1].plot(centres, out15, marker="o", color=line.get_color(), label=f"{label} >0.15")
        axes[1].plot(centres, out05, marker="s", ls=":", color=line.get_color())
    axes[0].set(xlabel="z_spec", ylabel=f"NMAD ({point})")
    axes[1].set(xlabel="z_spec", ylabel="outlier rate (solid >0.15, dotted ≥0.05)")
    axes[0].legend(fontsize="small")
    return _save(fig, path)


def plot_example_densities(
    densities: dict[str, np.ndarray],
    z_spec: np.ndarray,
    zgrid: ZGrid,
    path: str | os.PathLike,
    *,
    n_examples: int = 6,
    seed: int = 0,
) -> Path:
    """Plot a few objects' densities from each method, with the true redshift."""
    n = z_spec.size
    rng = np.random.default_rng(seed)
    picks = np.sort(rng.choice(n, size=min(n_examples, n), replace=False))
    n_cols = 3
    n_rows = int(np.ceil(picks.size / n_cols))
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(n_rows, n_cols, figsize=(12, 3 * n_rows), squeeze=False)
    for ax, i in zip(axes.ravel(), picks, strict=False):
        for label, probs in densities.items():
            ax.plot(zgrid.centres, zgrid.pdf_values(probs[i]), lw=1.2, label=label)
        ax.axvline(z_spec[i], color="k", ls="--", lw=1, label="z_spec")
        ax.set(xlabel="z", ylabel="p(z)", xlim=(zgrid.z_min, zgrid.z_max))
    for ax in axes.ravel()[picks.size :]:
        ax.set_visible(False)
    axes[0, 0].legend(fontsize="small")
    return _save(fig, path)
