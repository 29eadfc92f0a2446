"""A picture of a dataset for a person to look at: objects x bands as stored, plus the stack."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from mantis.exceptions import MantisError
from mantis.stack._dataset import DatasetError, DatasetReader
from mantis.surveys import BANDS, SURVEY_NAMES, survey

__all__ = ["render_gallery"]


def _stretch(image: np.ndarray, valid: np.ndarray) -> np.ma.MaskedArray:
    """Arcsinh stretch scaled to the valid pixels' noise, masked where not valid."""
    values = image[valid]
    if values.size == 0:
        return np.ma.masked_all(image.shape)
    noise = 1.4826 * np.median(np.abs(values - np.median(values))) or np.abs(values).max() or 1.0
    return np.ma.masked_array(np.arcsinh(image / (3.0 * noise)), ~valid)


def _composite(early: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """RGB of the early stack: W1 red, r green, NUV blue (one band from each survey)."""
    index = {b.name: k for k, b in enumerate(BANDS)}
    channels = []
    for name in ("W1", "r", "NUV"):
        stretched = _stretch(early[index[name]], valid[index[name]])
        top = float(stretched.max()) if stretched.count() else 1.0
        channels.append(np.clip(stretched.filled(0.0) / (top or 1.0), 0.0, 1.0))
    return np.stack(channels, axis=-1)


def render_gallery(dataset: str | os.PathLike, out: str | os.PathLike, *, n: int = 8) -> Path:
    """Draw the first ``n`` written objects: nine bands at native scale and the early stack.

    Masked pixels are drawn in grey, so missing coverage is visible rather than black.

    Raises
    ------
    MantisError
        If the file is not a mantis dataset or holds no objects yet, or ``n`` is not positive.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not isinstance(n, int) or n < 1:
        raise MantisError(f"--n must be a positive integer, got {n!r}")
    path = Path(dataset)
    if not path.is_file():
        raise MantisError(f"dataset {str(path)!r} does not exist")
    with DatasetReader(path) as reader:
        if "n_written" not in reader.attrs or "early/image" not in reader:
            raise DatasetError(f"{path} is not a mantis dataset (no n_written or early/image)")
        count = min(n, reader.n_written)
        if count == 0:
            raise DatasetError(f"{path} holds no finished objects yet")
        f = reader.read(["catalog/id", "catalog/z", "early", *SURVEY_NAMES], slice(0, count))
        ids = f["catalog/id"].astype("S").astype(str)
        z = f["catalog/z"]
        columns = [(s, k, b) for s in SURVEY_NAMES for k, b in enumerate(survey(s).bands)]
        cmap = matplotlib.colormaps["magma"].with_extremes(bad="0.6")
        fig, axes = plt.subplots(
            count, len(columns) + 1, figsize=(1.3 * (len(columns) + 1), 1.4 * count + 0.4),
            squeeze=False,
        )  # fmt: skip
        for row in range(count):
            for col, (survey_name, k, band_name) in enumerate(columns):
                image = f[f"{survey_name}/image"][row, k]
                valid = f[f"{survey_name}/valid"][row, k]
                axes[row, col].imshow(_stretch(image, valid), origin="lower", cmap=cmap)
                if row == 0:
                    axes[row, col].set_title(band_name, fontsize=9)
            rgb = _composite(f["early/image"][row], f["early/valid"][row])
            axes[row, -1].imshow(rgb, origin="lower")
            if row == 0:
                axes[row, -1].set_title("early W1/r/NUV", fontsize=9)
            label = ids[row] + ("" if np.isnan(z[row]) else f"\nz={z[row]:.3f}")
            axes[row, 0].set_ylabel(label, fontsize=7)
        for ax in axes.flat:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    temp = out.with_name(f".{out.name}.part")
    fig.savefig(temp, dpi=110, format=out.suffix.lstrip(".") or "png")
    plt.close(fig)
    temp.replace(out)
    return out
