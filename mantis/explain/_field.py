"""A field-level shift test: seeing and zero points are properties of a field, not of a galaxy.

A PSF 1.5 times wider or a 0.2 mag calibration offset in one band moves each galaxy's inputs
by less than galaxies differ from each other, but it moves *every* object of the field the
same way. The catalogue being predicted is therefore grouped into sky cells (nested HEALPix
cells of ``nside``; 64 gives cells of about 0.9 deg), and each cell with at least
``min_objects`` objects is tested on:

* ``seeing``: the lower quartile of the native-scale size (`native_morphology`'s ``log_size``)
  of its objects detected at signal-to-noise >= 20: the compact objects' sizes follow the PSF;
* ``offset_<band>``: the median, over its objects, of each PS1 band's residual from the
  training locus (the band's asinh magnitude minus the median of that band among the 20
  training objects nearest in the other PS1 bands), which a zero-point error shifts.

Each statistic is compared with its distribution over 10 000 draws of the same number of
training objects (at most 1000) from one training cell (a seeded bootstrap, cells weighted by
their objects, so that the training fields' own seeing and depth are part of the null); the
two-sided p-values are combined by Bonferroni: ``field_shift_pvalue = min(1, m * min_j p_j)``.
Cells with fewer objects, and objects without PS1 data, get NaN (no field part).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from mantis.stack import healpix_cells

__all__ = ["FIELD_STATISTICS", "FieldReference", "locus_residuals"]

LOCUS_NEIGHBOURS = 20
SEEING_MIN_SNR = 20.0
_DRAWS = 10_000  # null draws per cell size: p-values down to 12 / 10001 after Bonferroni
_DRAW_BLOCK = 500  # draws computed at a time (memory)
_MAX_DRAWN = 1000  # larger cells are compared with draws of this many (a wider, safe null)
FIELD_STATISTICS = ("seeing", "offset_g", "offset_r", "offset_i", "offset_z", "offset_y")


def locus_residuals(
    mags: np.ndarray, reference: np.ndarray, *, leave_one_out: bool = False
) -> np.ndarray:
    """Residual of each band's magnitude from its median among locus neighbours.

    Parameters
    ----------
    mags : ndarray, shape (n, bands)
        Magnitudes (any log-flux unit) of the objects.
    reference : ndarray, shape (n_ref, bands)
        Magnitudes of the training objects.
    leave_one_out : bool
        ``mags`` are ``reference`` itself: skip each object's own entry.

    Returns
    -------
    ndarray, shape (n, bands)
        ``mags[:, b]`` minus the median of band ``b`` among the `LOCUS_NEIGHBOURS` reference
        objects nearest in the other bands.
    """
    from sklearn.neighbors import NearestNeighbors

    mags = np.asarray(mags, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    k = min(LOCUS_NEIGHBOURS + int(leave_one_out), len(reference))
    out = np.zeros_like(mags)
    for band in range(mags.shape[1]):
        others = [b for b in range(mags.shape[1]) if b != band]
        index = NearestNeighbors(n_neighbors=k).fit(reference[:, others])
        _, nearest = index.kneighbors(mags[:, others])
        nearest = nearest[:, 1:] if leave_one_out else nearest
        out[:, band] = mags[:, band] - np.median(reference[nearest, band], axis=1)
    return out


def _statistics(log_size: np.ndarray, snr: np.ndarray, residuals: np.ndarray) -> np.ndarray:
    """Compute the `FIELD_STATISTICS` of draws: ``(..., n)`` arrays in, ``(..., 1 + bands)`` out."""
    detected = np.where(snr >= SEEING_MIN_SNR, log_size, np.nan)
    with warnings.catch_warnings():  # a draw without a detected object: NaN, not tested
        warnings.simplefilter("ignore", RuntimeWarning)
        seeing = np.nanpercentile(detected, 25, axis=-1)
    offsets = np.median(residuals, axis=-2)
    return np.concatenate([seeing[..., None], offsets], axis=-1)


@dataclass
class FieldReference:
    """Training objects' positions and field features, and the cell test built on them.

    Attributes
    ----------
    ra, dec : ndarray, shape (n_ref,)
        Positions of the training objects (degrees).
    log_size, snr : ndarray, shape (n_ref,)
        Their native-scale `native_morphology` ``log_size`` and ``snr``.
    residuals : ndarray, shape (n_ref, bands)
        Their leave-one-out `locus_residuals`.
    mags : ndarray, shape (n_ref, bands)
        Their PS1 magnitudes (the locus).
    nside : int
        HEALPix resolution of the cells.
    min_objects : int
        Fewest objects of a cell that is tested.
    """

    ra: np.ndarray
    dec: np.ndarray
    log_size: np.ndarray
    snr: np.ndarray
    residuals: np.ndarray
    mags: np.ndarray
    nside: int
    min_objects: int

    def _null(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Statistics of `_DRAWS` draws of ``n`` training objects, each from one cell."""
        cells = healpix_cells(self.ra, self.dec, self.nside)
        ids, counts = np.unique(cells, return_counts=True)
        usable = counts >= self.min_objects
        ids, counts = ids[usable], counts[usable]
        if len(ids) == 0:
            return np.zeros((0, 1 + self.residuals.shape[1]))
        members = [np.flatnonzero(cells == cell) for cell in ids]
        chosen_cells = rng.choice(len(ids), size=_DRAWS, p=counts / counts.sum())
        n = min(n, _MAX_DRAWN)
        blocks = []
        for start in range(0, _DRAWS, _DRAW_BLOCK):
            block = chosen_cells[start : start + _DRAW_BLOCK]
            rows = np.stack([members[c][rng.integers(0, len(members[c]), n)] for c in block])
            blocks.append(_statistics(self.log_size[rows], self.snr[rows], self.residuals[rows]))
        return np.concatenate(blocks)

    def pvalues(
        self,
        ra: np.ndarray,
        dec: np.ndarray,
        log_size: np.ndarray,
        snr: np.ndarray,
        mags: np.ndarray,
        *,
        seed: int = 0,
    ) -> np.ndarray:
        """``field_shift_pvalue`` of each object (NaN outside tested cells).

        Parameters
        ----------
        ra, dec : ndarray, shape (n,)
            Positions (degrees) of the catalogue's objects.
        log_size, snr : ndarray, shape (n,)
            Their `native_morphology` ``log_size`` and ``snr``.
        mags : ndarray, shape (n, bands)
            Their PS1 magnitudes, in the units of `mags`; rows with NaN have no PS1 data.
        seed : int
            Seed of the null draws.
        """
        n = len(ra)
        out = np.full(n, np.nan)
        has_data = np.all(np.isfinite(mags), axis=1) if n else np.zeros(0, bool)
        if not has_data.any():
            return out
        residuals = np.zeros_like(np.asarray(mags, dtype=np.float64))
        residuals[has_data] = locus_residuals(mags[has_data], self.mags)
        cells = np.where(has_data, healpix_cells(ra, dec, self.nside), -1)
        rng = np.random.default_rng(seed)
        nulls: dict[int, np.ndarray] = {}
        for cell in np.unique(cells[has_data]):
            rows = np.flatnonzero(cells == cell)
            if len(rows) < self.min_objects:
                continue
            if len(rows) not in nulls:
                nulls[len(rows)] = self._null(len(rows), rng)
            null = nulls[len(rows)]
            if len(null) == 0:
                continue
            observed = _statistics(log_size[rows], snr[rows], residuals[rows])
            finite = np.isfinite(null)
            with np.errstate(invalid="ignore"):
                above = np.sum(finite & (null >= observed), axis=0)
                below = np.sum(finite & (null <= observed), axis=0)
            n_null = finite.sum(axis=0)
            tested = np.isfinite(observed) & (n_null >= 100)
            tail = (1.0 + np.minimum(above, below)) / (1.0 + np.maximum(n_null, 1))
            if tested.any():
                out[rows] = min(1.0, 2.0 * tested.sum() * tail[tested].min())
        return out
