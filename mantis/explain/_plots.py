"""Figures of the explain report (matplotlib, Agg), each written atomically as one PNG."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["plot_attribution_examples", "plot_heatmap", "plot_profiles", "plot_shares"]

_DPI = 110


def _figure(n_rows: int, n_cols: int, width: float, height: float):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt.subplots(n_rows, n_cols, figsize=(width, height), squeeze=False)


def _save(fig: Any, path: str | os.PathLike) -> Path:
    import matplotlib.pyplot as plt

    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    fig.tight_layout()
    fig.savefig(tmp, dpi=_DPI, format="png")
    plt.close(fig)
    tmp.replace(path)
    return path


def plot_heatmap(
    panels: list[tuple[str, np.ndarray, list[str], list[str]]],
    path: str | os.PathLike,
    *,
    cmap: str = "magma",
    symmetric: bool = False,
    annotate: bool = True,
) -> Path:
    """One heat map per ``(title, values, row_labels, column_labels)`` panel."""
    fig, axes = _figure(
        1, len(panels), 4.2 * len(panels) + 1.0, 0.32 * max(len(p[2]) for p in panels) + 2.0
    )
    for ax, (title, values, rows, cols) in zip(axes[0], panels, strict=True):
        values = np.asarray(values, dtype=float)
        finite = values[np.isfinite(values)]
        vmax = float(np.max(np.abs(finite))) if finite.size else 1.0
        limits = {"vmin": -vmax, "vmax": vmax} if symmetric else {}
        image = ax.imshow(values, cmap=cmap, aspect="auto", **limits)
        ax.set_xticks(range(len(cols)), cols, rotation=45, ha="right", fontsize=7)
        ax.set_yticks(range(len(rows)), rows, fontsize=7)
        ax.set_title(title, fontsize=9)
        if annotate and values.size <= 400:
            for (i, j), v in np.ndenumerate(values):
                if np.isfinite(v):
                    ax.text(
                        j,
                        i,
                        f"{v:.2f}",
                        ha="center",
                        va="center",
                        fontsize=5.5,
                        color="w" if abs(v) < 0.6 * vmax else "k",
                    )
        fig.colorbar(image, ax=ax, shrink=0.8)
    return _save(fig, path)


def plot_shares(
    panels: list[tuple[str, np.ndarray, dict[str, np.ndarray]]], path: str | os.PathLike
) -> Path:
    """Attribution share per band against a binned quantity; panel = ``(xlabel, x, shares)``."""
    fig, axes = _figure(1, len(panels), 5.0 * len(panels), 4.0)
    for ax, (label, centres, shares) in zip(axes[0], panels, strict=True):
        for name, share in shares.items():
            ax.plot(centres, share, marker="o", ms=3, label=name)
        ax.set_xlabel(label)
        ax.set_ylabel("share of |attribution|")
        ax.set_ylim(0, None)
    axes[0][0].legend(fontsize=7, ncol=2)
    return _save(fig, path)


def plot_attribution_examples(
    maps: list[tuple[str, dict[str, np.ndarray]]], path: str | os.PathLike
) -> Path:
    """Rows of per-band attribution maps: ``(row title, {band: 2-D map})``."""
    n_cols = max(len(m) for _, m in maps)
    fig, axes = _figure(len(maps), n_cols, 1.3 * n_cols + 0.5, 1.45 * len(maps) + 0.3)
    for r, (title, bands) in enumerate(maps):
        scale = max(float(np.max(np.abs(m))) for m in bands.values()) or 1.0
        for c in range(n_cols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(bands):
                ax.axis("off")
                continue
            name, image = list(bands.items())[c]
            ax.imshow(image, cmap="RdBu_r", vmin=-scale, vmax=scale)
            ax.set_title(name, fontsize=7)
        axes[r][0].set_ylabel(title, fontsize=6)
    return _save(fig, path)


def plot_profiles(
    panels: list[tuple[str, list[str], dict[str, np.ndarray]]], path: str | os.PathLike
) -> Path:
    """Line profiles along the layers; panel = ``(title, layer labels, {set: values})``."""
    fig, axes = _figure(1, len(panels), 6.0 * len(panels), 4.2)
    for ax, (title, labels, curves) in zip(axes[0], panels, strict=True):
        for name, values in curves.items():
            ax.plot(range(len(values)), values, marker="o", ms=3, label=name)
        ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=6)
        ax.set_ylabel("linear CKA (debiased)")
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7)
    return _save(fig, path)
