"""A redshift prior tabulated on the mantis grid, with the interface SPS samplers call.

Prospector's model asks each free parameter's prior for ``prior(x)`` (ln p), ``unit_transform``
(the inverse CDF, for nested sampling), ``sample()``, ``bounds()``, ``range`` and ``len(prior)``;
`TabulatedRedshiftPrior` provides all of them without importing Prospector, so it works with any
sampler that duck-types the same way.
"""

from __future__ import annotations

import numpy as np

__all__ = ["TabulatedRedshiftPrior", "soften_density"]


def soften_density(probs: np.ndarray, *, broaden: float = 1.0, floor: float = 0.0) -> np.ndarray:
    """Broaden per-bin probabilities by a temperature and mix in a uniform floor.

    Parameters
    ----------
    probs : ndarray, shape (n_z,) or (n_objects, n_z)
        Non-negative per-bin probabilities (rows need not be normalised).
    broaden : float
        Temperature ``T > 0``: ``p -> p**(1/T)`` renormalised. ``T > 1`` widens the density
        (a hedge against an over-confident network), ``T = 1`` leaves it as it is.
    floor : float
        Fraction ``0 <= EPS < 1`` of the probability spread uniformly over the whole grid, so
        that no redshift inside the grid has zero prior probability.

    Returns
    -------
    ndarray, float64, same shape as ``probs``
        Rows sum to one.

    Raises
    ------
    ValueError
        If ``broaden`` or ``floor`` is out of range, or a row is negative, non-finite or zero.
    """
    if not (np.isfinite(broaden) and broaden > 0):
        raise ValueError(f"broaden (temperature T) must be a finite number > 0, got {broaden!r}")
    if not (np.isfinite(floor) and 0.0 <= floor < 1.0):
        raise ValueError(f"floor (EPS) must lie in [0, 1), got {floor!r}")
    p = np.asarray(probs, dtype=np.float64)
    if not np.all(np.isfinite(p)) or np.any(p < 0):
        raise ValueError("a density must be finite and non-negative everywhere")
    total = p.sum(axis=-1, keepdims=True)
    if np.any(total <= 0):
        raise ValueError("a density is zero everywhere; it cannot become a prior")
    p = p / total
    if broaden != 1.0:
        # the power is taken relative to the row maximum so tiny values do not underflow
        p = (p / p.max(axis=-1, keepdims=True)) ** (1.0 / broaden)
        p /= p.sum(axis=-1, keepdims=True)
    if floor > 0.0:
        p = (1.0 - floor) * p + floor / p.shape[-1]
    return p


class TabulatedRedshiftPrior:
    """Piecewise-constant redshift prior on the bins of a grid.

    Parameters
    ----------
    edges : array_like, shape (n_z + 1,)
        Strictly increasing bin edges in redshift.
    probs : array_like, shape (n_z,)
        Per-bin probabilities of the photometric-redshift density (normalised here).
    broaden, floor : float
        Temperature and uniform floor applied before use; see `soften_density`.
    name : str
        Parameter name, for display only (Prospector's free redshift is ``'zred'``).

    Attributes
    ----------
    params : dict
        ``edges``, ``probs`` (after broadening and floor), ``broaden`` and ``floor``.
    """

    prior_params = ("edges", "probs", "broaden", "floor")

    def __init__(
        self,
        edges: np.ndarray,
        probs: np.ndarray,
        *,
        broaden: float = 1.0,
        floor: float = 0.0,
        name: str = "zred",
    ) -> None:
        edges = np.asarray(edges, dtype=np.float64)
        probs = np.asarray(probs, dtype=np.float64)
        if edges.ndim != 1 or probs.ndim != 1 or edges.size != probs.size + 1:
            raise ValueError(
                f"need n_z + 1 edges for n_z probabilities, got {edges.size} edges "
                f"and {probs.size} probabilities"
            )
        if not np.all(np.diff(edges) > 0):
            raise ValueError("bin edges must be strictly increasing")
        self.name = name
        self._raw_probs = soften_density(probs)
        self.params = {"edges": edges}
        self.update(broaden=broaden, floor=floor)

    def _tabulate(self) -> None:
        edges, probs = self.params["edges"], self.params["probs"]
        self._density = probs / np.diff(edges)
        self._cdf = np.concatenate([[0.0], np.cumsum(probs)])
        self._cdf[-1] = 1.0
        support = np.flatnonzero(probs > 0)
        self._support = (float(edges[support[0]]), float(edges[support[-1] + 1]))

    def update(self, **kwargs: float) -> None:
        """Set ``broaden`` and/or ``floor`` (Prospector passes new parameter values this way).

        The tabulated probabilities are always re-derived from the network's density, so
        updates replace rather than compound each other.
        """
        unknown = set(kwargs) - {"broaden", "floor"}
        if unknown:
            raise ValueError(
                f"unknown prior parameter(s) {sorted(unknown)}; allowed: broaden, floor"
            )
        broaden = float(kwargs.get("broaden", self.params.get("broaden", 1.0)))
        floor = float(kwargs.get("floor", self.params.get("floor", 0.0)))
        probs = soften_density(self._raw_probs, broaden=broaden, floor=floor)
        self.params.update(probs=probs, broaden=broaden, floor=floor)
        self._tabulate()

    def __len__(self) -> int:
        # the parameter is a scalar even though the prior's own parameters are arrays
        return 1

    def __repr__(self) -> str:
        lo, hi = self._support
        return (
            f"{type(self).__name__}(name={self.name!r}, support=({lo:g}, {hi:g}), "
            f"n_z={self.params['probs'].size}, broaden={self.params['broaden']:g}, "
            f"floor={self.params['floor']:g})"
        )

    def pdf(self, x: np.ndarray | float) -> np.ndarray:
        """Probability density (1/z units) at ``x``; zero outside the grid."""
        x = np.asarray(x, dtype=np.float64)
        edges = self.params["edges"]
        idx = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, edges.size - 2)
        inside = (x >= edges[0]) & (x < edges[-1])
        return np.where(inside, self._density[idx], 0.0)

    def __call__(self, x: np.ndarray | float, **kwargs: float) -> np.ndarray:
        """Natural log of the prior density at ``x``; ``-inf`` where the density is zero."""
        if kwargs:
            self.update(**kwargs)
        with np.errstate(divide="ignore"):
            return np.log(self.pdf(x))

    def unit_transform(self, u: np.ndarray | float, **kwargs: float) -> np.ndarray:
        """Inverse CDF: map ``u`` in [0, 1] to a redshift (the nested-sampling prior transform)."""
        if kwargs:
            self.update(**kwargs)
        u = np.clip(np.asarray(u, dtype=np.float64), 0.0, 1.0)
        edges, probs, cdf = self.params["edges"], self.params["probs"], self._cdf
        # bin j holds cdf[j] <= u < cdf[j+1]; empty bins never satisfy it
        j = np.clip(np.searchsorted(cdf, u, side="right") - 1, 0, probs.size - 1)
        last = np.flatnonzero(probs > 0)[-1]
        j = np.where(u >= 1.0, last, j)
        p = probs[j]
        frac = np.where(p > 0, (u - cdf[j]) / np.where(p > 0, p, 1.0), 0.0)
        return edges[j] + np.clip(frac, 0.0, 1.0) * (edges[j + 1] - edges[j])

    def inverse_unit_transform(self, x: np.ndarray | float, **kwargs: float) -> np.ndarray:
        """CDF: map a redshift to its unit-cube coordinate in [0, 1]."""
        if kwargs:
            self.update(**kwargs)
        return np.interp(np.asarray(x, dtype=np.float64), self.params["edges"], self._cdf)

    def sample(
        self, nsample: int | None = None, *, rng: np.random.Generator | None = None
    ) -> np.ndarray:
        """Draw redshifts from the prior.

        Parameters
        ----------
        nsample : int, optional
            Number of draws; one draw (shape ``(1,)``, as Prospector expects) when omitted.
        rng : numpy.random.Generator, optional
            Source of randomness; NumPy's global generator (which Prospector seeds) if omitted.
        """
        size = len(self) if nsample is None else int(nsample)
        u = rng.random(size) if rng is not None else np.random.random_sample(size)  # noqa: NPY002 - Prospector seeds this
        return self.unit_transform(u)

    def bounds(self, **kwargs: float) -> tuple[float, float]:
        """Lower and upper redshift outside which the prior is zero."""
        if kwargs:
            self.update(**kwargs)
        return self._support

    @property
    def range(self) -> tuple[float, float]:
        """Plotting range: the support of the prior."""
        return self._support
