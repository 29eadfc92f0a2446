"""Redshift-balanced sampling and the prior it imposes, to be divided back out at inference."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import WeightedRandomSampler

from mantis.zgrid import ZGrid

__all__ = ["balanced_sampler", "redshift_balance"]


def redshift_balance(
    z: np.ndarray, zgrid: ZGrid, *, n_bins: int = 40, pseudo_count: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Weights that flatten the training redshift distribution, and the log prior they add.

    Objects are grouped in ``n_bins`` equal coarse bins over the grid's range; an object in a
    coarse bin holding ``c`` training objects is drawn with weight ``1 / (c + pseudo_count)``.
    A network trained on such draws learns ``p(z|x) p_s(z) / p(z)`` where ``p_s / p`` is
    proportional to that weight; adding ``log(c + pseudo_count)`` to its logits (the returned
    correction) restores the natural training prior.

    Parameters
    ----------
    z : ndarray
        Training redshifts, inside the grid.
    zgrid : ZGrid
        The output grid.
    n_bins : int
        Number of coarse bins (fewer than the grid's so that counts are not noisy).
    pseudo_count : float
        Added to each count so that empty bins keep a finite prior.

    Returns
    -------
    weights : ndarray, shape (len(z),)
        Sampling weight of each object.
    log_correction : ndarray, shape (zgrid.n_bins,)
        Added to the logits at inference; zero mean.
    """
    if n_bins < 1 or n_bins > zgrid.n_bins:
        raise ValueError(f"balance n_bins must be in 1..{zgrid.n_bins}, got {n_bins!r}")
    if pseudo_count <= 0:
        raise ValueError(f"pseudo_count must be positive, got {pseudo_count!r}")
    z = np.asarray(z, dtype=float)
    if not zgrid.contains(z).all():
        raise ValueError("redshift_balance needs every z inside the grid")
    coarse_width = (zgrid.z_max - zgrid.z_min) / n_bins

    def coarse(values: np.ndarray) -> np.ndarray:
        return np.clip(((values - zgrid.z_min) // coarse_width).astype(int), 0, n_bins - 1)

    counts = np.bincount(coarse(z), minlength=n_bins).astype(float) + pseudo_count
    weights = 1.0 / counts[coarse(z)]
    log_correction = np.log(counts[coarse(zgrid.centres)])
    return weights, log_correction - log_correction.mean()


def balanced_sampler(weights: np.ndarray, *, seed: int = 0) -> WeightedRandomSampler:
    """Return a with-replacement sampler drawing ``len(weights)`` objects per epoch, seeded."""
    generator = torch.Generator().manual_seed(int(seed))
    return WeightedRandomSampler(
        torch.as_tensor(weights, dtype=torch.double),
        num_samples=len(weights),
        replacement=True,
        generator=generator,
    )
