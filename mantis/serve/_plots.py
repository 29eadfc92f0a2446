"""PNG figures for the page: one object's p(z) with its intervals, and its nine-band cutouts."""

from __future__ import annotations

import io

import numpy as np

from mantis.surveys import SURVEY_NAMES, bands_of

__all__ = ["cutouts_png", "pz_png"]


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def pz_png(probs: np.ndarray, zgrid, row: dict) -> bytes:
    """Plot the density (per unit z) with mean, median and 68%/95% intervals shaded."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.2), layout="constrained")
    ax = fig.subplots()
    density = zgrid.pdf_values(np.asarray(probs, dtype=float)[None, :])[0]
    ax.axvspan(row["z_lo95"], row["z_hi95"], color="tab:blue", alpha=0.12, label="95% interval")
    ax.axvspan(row["z_lo68"], row["z_hi68"], color="tab:blue", alpha=0.25, label="68% interval")
    ax.step(zgrid.centres, density, where="mid", color="k", lw=1.2, label="p(z)")
    ax.axvline(row["z_median"], color="tab:red", lw=1, label=f"median {row['z_median']:.3f}")
    ax.axvline(row["z_mean"], color="tab:orange", lw=1, ls="--", label=f"mean {row['z_mean']:.3f}")
    ax.set(xlabel="redshift z", ylabel="p(z)", title=str(row.get("id", "")))
    ax.set_xlim(zgrid.z_min, zgrid.z_max)
    ax.legend(fontsize=7, loc="upper right")
    return _png(fig)


def cutouts_png(arrays: dict[str, np.ndarray], title: str = "") -> bytes:
    """Show the nine bands of one object side by side, each scaled by its own range."""
    from matplotlib.figure import Figure

    panels = []
    for survey in SURVEY_NAMES:
        image = arrays.get(f"{survey}/image")
        valid = arrays.get(f"{survey}/valid")
        for k, band in enumerate(bands_of(survey)):
            plane = None if image is None else np.asarray(image[0, k], dtype=float)
            if plane is not None and valid is not None:
                plane = np.where(np.asarray(valid[0, k], dtype=bool), plane, np.nan)
            panels.append((band.name, plane))
    fig = Figure(figsize=(4.8, 5.0), layout="constrained")
    axes = fig.subplots(3, 3).ravel()  # GALEX and PS1 g on top, PS1 r-y, then unWISE
    for ax, (name, plane) in zip(axes, panels, strict=True):
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(name, fontsize=8)
        if plane is None or not np.isfinite(plane).any():
            ax.text(0.5, 0.5, "no data", ha="center", va="center", fontsize=7)
            continue
        lo, hi = np.nanpercentile(plane, [1, 99.5])
        ax.imshow(np.arcsinh((plane - lo) / max(hi - lo, 1e-12) * 10), origin="lower",
                  cmap="gray")  # fmt: skip
    if title:
        fig.suptitle(title, fontsize=8)
    return _png(fig)
