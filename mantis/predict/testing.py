"""Deterministic stand-ins for the network and the cutout pipeline, for tests and benchmarks.

`StandInPredictor` has the `mantis.models` predictor interface and turns the image arrays into
a Gaussian density whose centre depends on the pixels, so different objects get different,
reproducible answers. `StandInSource` makes small arrays from ra/dec without any network, with
an optional delay per chunk that imitates fetching.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mantis.surveys import BANDS, SURVEY_NAMES, bands_of
from mantis.zgrid import DEFAULT_ZGRID, ZGrid

__all__ = ["StandInPredictor", "StandInSource"]


@dataclass
class StandInPredictor:
    """A predictor whose density is a Gaussian centred by the mean pixel value.

    Parameters
    ----------
    zgrid : ZGrid
        Grid of the densities.
    bands : tuple of str
        Bands the stand-in claims to have been trained on.
    calibration : dict, optional
        Recalibration to report (applied by the pipeline, as for a real checkpoint).
    """

    zgrid: ZGrid = DEFAULT_ZGRID
    bands: tuple[str, ...] = tuple(b.name for b in BANDS)
    calibration: dict | None = None
    grids: dict = field(default_factory=dict)
    fingerprint: str = "stand-in-v1"

    def predict_arrays(self, arrays: dict[str, np.ndarray], *, tta: bool = False) -> np.ndarray:
        """Per-bin probabilities, shape ``(n_objects, n_z)``, rows summing to one."""
        images = [arrays[f"{s}/image"] for s in SURVEY_NAMES if f"{s}/image" in arrays]
        n = images[0].shape[0]
        level = np.zeros(n)
        for image in images:
            level += np.nanmean(image.reshape(n, -1), axis=1)
        span = self.zgrid.z_max - self.zgrid.z_min
        centre = self.zgrid.z_min + span * (0.1 + 0.8 * (0.5 + 0.5 * np.tanh(level)))
        sigma = 0.03 * (1.0 + centre)
        z = self.zgrid.centres
        logp = -0.5 * ((z[None, :] - centre[:, None]) / sigma[:, None]) ** 2
        probs = np.exp(logp - logp.max(axis=1, keepdims=True))
        return probs / probs.sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class StandInSource:
    """Arrays like `mantis.stack.build_objects` gives, computed from ra and dec.

    Parameters
    ----------
    size : int
        Cutout side in pixels for every survey.
    delay_s : float
        Seconds to sleep per chunk (imitates fetching latency).
    """

    size: int = 8
    delay_s: float = 0.0

    def arrays(self, chunk: pd.DataFrame) -> dict[str, np.ndarray]:
        """Arrays keyed like ``'ps1/image'`` for the rows of ``chunk``."""
        if self.delay_s:
            time.sleep(self.delay_s)
        ra = np.radians(chunk["ra"].to_numpy())[:, None, None, None]
        dec = np.radians(chunk["dec"].to_numpy())[:, None, None, None]
        yy, xx = np.mgrid[0 : self.size, 0 : self.size] / self.size
        out: dict[str, np.ndarray] = {}
        for s in SURVEY_NAMES:
            k = np.arange(len(bands_of(s)))[None, :, None, None]
            image = np.sin(3 * ra + k) * np.cos(2 * dec) + 0.1 * (xx + yy)[None, None]
            out[f"{s}/image"] = image.astype(np.float32)
            out[f"{s}/valid"] = np.ones(image.shape, dtype=bool)
        out["catalog/has_ps1"] = chunk["dec"].to_numpy() > -30.0
        out["catalog/has_galex"] = np.ones(len(chunk), dtype=bool)
        out["catalog/has_unwise"] = np.ones(len(chunk), dtype=bool)
        return out
