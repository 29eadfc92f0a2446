"""The redshift grid shared by training, evaluation, prediction and priors.

Densities in mantis are ``(n_objects, n_z)`` arrays of probability *per bin* (each row sums to
one) on a `ZGrid`; ``pdf_values`` turns them into probability densities in 1/z units.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["DEFAULT_ZGRID", "ZGrid"]


@dataclass(frozen=True)
class ZGrid:
    """A uniform grid of redshift bins on ``[z_min, z_max)``.

    Parameters
    ----------
    z_min, z_max : float
        Lower and upper edge of the grid.
    n_bins : int
        Number of bins.
    """

    z_min: float = 0.0
    z_max: float = 1.6
    n_bins: int = 400
    edges: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not (np.isfinite(self.z_min) and np.isfinite(self.z_max)) or self.z_max <= self.z_min:
            raise ValueError(
                f"ZGrid needs finite z_min < z_max, got z_min={self.z_min!r}, z_max={self.z_max!r}"
            )
        if int(self.n_bins) != self.n_bins or self.n_bins < 2:
            raise ValueError(f"ZGrid n_bins must be an integer >= 2, got {self.n_bins!r}")
        object.__setattr__(self, "n_bins", int(self.n_bins))
        edges = np.linspace(self.z_min, self.z_max, self.n_bins + 1)
        edges.setflags(write=False)
        object.__setattr__(self, "edges", edges)

    @property
    def centres(self) -> np.ndarray:
        """Bin centres, shape ``(n_bins,)``."""
        return 0.5 * (self.edges[1:] + self.edges[:-1])

    @property
    def width(self) -> float:
        """Bin width in redshift."""
        return (self.z_max - self.z_min) / self.n_bins

    def to_dict(self) -> dict[str, float | int]:
        """Plain-dict form for checkpoints, HDF5 attributes and file metadata."""
        return {"z_min": float(self.z_min), "z_max": float(self.z_max), "n_bins": self.n_bins}

    @classmethod
    def from_dict(cls, spec: dict) -> ZGrid:
        """Inverse of `to_dict`."""
        return cls(float(spec["z_min"]), float(spec["z_max"]), int(spec["n_bins"]))

    def contains(self, z: np.ndarray | float) -> np.ndarray:
        """Return True where ``z`` lies inside ``[z_min, z_max)``."""
        z = np.asarray(z, dtype=float)
        return (z >= self.z_min) & (z < self.z_max)

    def bin_index(self, z: np.ndarray | float) -> np.ndarray:
        """Index of the bin holding each ``z``, clipped to the grid.

        Raises
        ------
        ValueError
            If any ``z`` is NaN.
        """
        z = np.asarray(z, dtype=float)
        if np.isnan(z).any():
            raise ValueError("bin_index got NaN redshifts")
        idx = np.floor((z - self.z_min) / self.width).astype(np.int64)
        return np.clip(idx, 0, self.n_bins - 1)

    def pdf_values(self, probs: np.ndarray) -> np.ndarray:
        """Per-bin probabilities to probability density (1/z units)."""
        return np.asarray(probs) / self.width

    def normalise(self, probs: np.ndarray) -> np.ndarray:
        """Rescale rows of non-negative weights so that each sums to one."""
        probs = np.clip(np.asarray(probs, dtype=np.float64), 0.0, None)
        total = probs.sum(axis=-1, keepdims=True)
        if np.any(total <= 0):
            raise ValueError("cannot normalise a density that is zero everywhere")
        return probs / total


DEFAULT_ZGRID = ZGrid()
