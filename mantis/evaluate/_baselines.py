"""Classical photo-z baselines on the same objects and splits as the networks.

- `template_fit`: χ² of non-negative combinations of the kcorrect template basis (Blanton &
  Roweis 2007; the package's ``kcorrect-default-v4`` templates, zero flux below 600 Å rest
  frame) at every redshift of the grid, integrated through the speclite filters named in
  `mantis.surveys`; the density is exp(−χ²_min(z)/2), no prior. The template flux grid is
  computed once per grid and process.
- `TabularBaseline`: k nearest neighbours (scikit-learn) on asinh magnitudes and adjacent
  colours, trained on the training split; the density is a distance-weighted sum of Gaussian
  kernels at the neighbours' redshifts.
- `oracle_photometry`: the simulator's true photometry with its catalogue noise, for the same
  template fit (the best a photometry-only method can do on the simulated sky).
"""

from __future__ import annotations

import functools
import itertools
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from mantis.evaluate._validate import EvaluationError
from mantis.surveys import BANDS, mag_to_nanomaggies
from mantis.zgrid import ZGrid

__all__ = [
    "TabularBaseline",
    "oracle_photometry",
    "template_chi2",
    "template_fit",
    "template_flux_grid",
]

_TEMPLATE_FILE = "kcorrect-default-v4.fits"
_PAD_BELOW_ANGSTROM = 600.0
_FIT_CHUNK = 128


def _template_basis() -> tuple[np.ndarray, np.ndarray]:
    """Rest-frame wavelengths (Å) and the template spectra (T, n_wave), zero-padded blueward."""
    import kcorrect
    from astropy.io import fits

    path = Path(kcorrect.__file__).parent / "data" / "templates" / _TEMPLATE_FILE
    with fits.open(path) as hdul:
        wave = np.asarray(hdul["FLUX"].data["wave"][0], dtype=np.float64)
        flux = np.asarray(hdul["FLUX"].data["flux"][0], dtype=np.float64)
    # Far-UV bands at z ~ 1.6 sample rest wavelengths below the templates' 600 Å start; the
    # flux there is absorbed by the Lyman continuum, so zero is the right padding.
    pad_wave = np.array([1.0, _PAD_BELOW_ANGSTROM * (1 - 1e-6)])
    wave = np.concatenate([pad_wave, wave])
    flux = np.concatenate([np.zeros((flux.shape[0], 2)), flux], axis=1)
    return wave, flux


@functools.lru_cache(maxsize=4)
def _flux_grid(z_min: float, z_max: float, n_bins: int) -> np.ndarray:
    import speclite.filters

    zgrid = ZGrid(z_min, z_max, n_bins)
    wave, flux = _template_basis()
    filters = speclite.filters.load_filters(*(b.filter_name for b in BANDS))
    grid = np.empty((zgrid.n_bins, flux.shape[0], len(BANDS)))
    for i, z in enumerate(zgrid.centres):
        table = filters.get_ab_maggies(flux / (1 + z), wave * (1 + z))
        grid[i] = np.column_stack([np.asarray(table[name]) for name in table.colnames])
    # Unit norm per template and redshift: the amplitudes absorb distance and luminosity, and
    # comparable scales keep the coordinate-descent solver well conditioned.
    grid /= np.linalg.norm(grid, axis=2, keepdims=True)
    grid.setflags(write=False)
    return grid


def template_flux_grid(zgrid: ZGrid) -> np.ndarray:
    """Fluxes of the redshifted templates through the nine filters, ``(n_z, n_templates, 9)``.

    Each template's fluxes are scaled to unit norm at every redshift (only colours matter).
    """
    return _flux_grid(float(zgrid.z_min), float(zgrid.z_max), int(zgrid.n_bins))


def _prepare_photometry(
    flux: np.ndarray, flux_err: np.ndarray, sys_err: float
) -> tuple[np.ndarray, np.ndarray]:
    flux = np.asarray(flux, dtype=np.float64)
    flux_err = np.asarray(flux_err, dtype=np.float64)
    if flux.ndim != 2 or flux.shape[1] != len(BANDS) or flux.shape != flux_err.shape:
        raise EvaluationError(
            f"flux and flux_err must both have shape (n, {len(BANDS)}) in band order "
            f"{[b.name for b in BANDS]}, got {flux.shape} and {flux_err.shape}"
        )
    usable = np.isfinite(flux) & np.isfinite(flux_err) & (flux_err > 0)
    variance = np.where(usable, flux_err**2 + (sys_err * np.abs(flux)) ** 2, np.inf)
    return np.where(usable, flux, 0.0), np.where(usable, 1.0 / variance, 0.0)


def _nnls_chi2(grid: np.ndarray, flux: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """min over a ≥ 0 of Σ_b w (f − Σ_t a_t A_ztb)² for every object and redshift, (c, n_z).

    Exact: the non-negative optimum is the unconstrained optimum on its own support, so the
    minimum over every support whose unconstrained solution is non-negative is the answer. With
    five templates that is 31 small linear solves, each vectorised over objects and redshifts.
    """
    n_templates = grid.shape[1]
    gram = np.einsum("ztb,cb,zsb->czts", grid, weight, grid)
    proj = np.einsum("ztb,cb->czt", grid, weight * flux)
    data_term = np.sum(weight * flux * flux, axis=1)[:, None]
    # A tiny ridge keeps supports of degenerate templates (or all-missing bands) solvable.
    ridge = 1e-12 * np.trace(gram, axis1=2, axis2=3)[..., None, None] + 1e-300
    best = np.full(gram.shape[:2], np.inf)
    for size in range(1, n_templates + 1):
        for support in itertools.combinations(range(n_templates), size):
            sel = list(support)
            sub_gram = gram[:, :, sel][:, :, :, sel] + ridge * np.eye(size)
            sub_proj = proj[:, :, sel]
            coeff = np.linalg.solve(sub_gram, sub_proj[..., None])[..., 0]
            chi2 = data_term - np.einsum("czk,czk->cz", coeff, sub_proj)
            feasible = np.all(coeff >= 0, axis=2)
            np.minimum(best, np.where(feasible, chi2, np.inf), out=best)
    # No support is feasible only when every projection is ≤ 0: then a = 0 is optimal.
    best = np.where(np.isfinite(best), best, data_term)
    return np.maximum(best, 0.0)


def template_chi2(
    flux: np.ndarray,
    flux_err: np.ndarray,
    zgrid: ZGrid,
    *,
    sys_err: float = 0.05,
    progress: bool = False,
) -> np.ndarray:
    """χ² of the best non-negative template combination at every redshift of the grid.

    Parameters
    ----------
    flux, flux_err : ndarray, shape (n, 9)
        Fluxes and 1σ errors in nanomaggies, bands FUV..W2; NaN marks a missing band.
    zgrid : ZGrid
        Redshift grid.
    sys_err : float
        Fractional error added in quadrature for template mismatch.
    progress : bool
        Show a progress bar.

    Returns
    -------
    ndarray, shape (n, n_z)
    """
    if not 0 <= sys_err < 1:
        raise EvaluationError(f"sys_err must lie in [0, 1), got {sys_err!r}")
    values, weight = _prepare_photometry(flux, flux_err, sys_err)
    grid = template_flux_grid(zgrid)
    chi2 = np.empty((values.shape[0], zgrid.n_bins))
    starts = range(0, values.shape[0], _FIT_CHUNK)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="template fit", unit="chunk")
    for start in starts:
        stop = start + _FIT_CHUNK
        chi2[start:stop] = _nnls_chi2(grid, values[start:stop], weight[start:stop])
    return chi2


def _chi2_to_probs(chi2: np.ndarray) -> np.ndarray:
    log_like = -0.5 * (chi2 - chi2.min(axis=1, keepdims=True))
    probs = np.exp(log_like)
    return probs / probs.sum(axis=1, keepdims=True)


def template_fit(
    flux: np.ndarray,
    flux_err: np.ndarray,
    zgrid: ZGrid,
    *,
    sys_err: float = 0.05,
    progress: bool = False,
) -> np.ndarray:
    """Template-fitting densities p(z) ∝ exp(−χ²_min(z)/2) on the grid, ``(n, n_z)``.

    Objects without any usable band get a flat density. Parameters as in `template_chi2`.
    """
    return _chi2_to_probs(template_chi2(flux, flux_err, zgrid, sys_err=sys_err, progress=progress))


def _asinh_features(flux: np.ndarray, softening: np.ndarray) -> np.ndarray:
    """Asinh magnitudes (Lupton et al. 1999) and adjacent colours; NaN where a band is missing."""
    mags = 22.5 - 2.5 / np.log(10) * (np.arcsinh(flux / (2 * softening)) + np.log(softening))
    return np.concatenate([mags, np.diff(mags, axis=1)], axis=1)


class TabularBaseline:
    """k-nearest-neighbour densities from asinh magnitudes and colours.

    Parameters
    ----------
    zgrid : ZGrid
        Output grid.
    n_neighbors : int
        Neighbours per object.
    kernel_width : float
        Gaussian kernel σ = ``kernel_width`` (1 + z) around each neighbour's redshift.
    """

    def __init__(self, zgrid: ZGrid, *, n_neighbors: int = 30, kernel_width: float = 0.02):
        if int(n_neighbors) != n_neighbors or n_neighbors < 1:
            raise EvaluationError(f"n_neighbors must be a positive integer, got {n_neighbors!r}")
        if not kernel_width > 0:
            raise EvaluationError(f"kernel_width must be positive, got {kernel_width!r}")
        self.zgrid = zgrid
        self.n_neighbors = int(n_neighbors)
        self.kernel_width = float(kernel_width)

    def _features(self, flux: np.ndarray) -> np.ndarray:
        feats = _asinh_features(np.asarray(flux, dtype=np.float64), self.softening_)
        feats = np.where(np.isfinite(feats), feats, self.fill_)
        return (feats - self.mean_) / self.scale_

    def fit(self, flux: np.ndarray, flux_err: np.ndarray, z: np.ndarray) -> TabularBaseline:
        """Learn from training photometry (nanomaggies, bands FUV..W2) and redshifts."""
        from sklearn.neighbors import NearestNeighbors

        _prepare_photometry(flux, flux_err, 0.0)  # shape checks
        z = np.asarray(z, dtype=np.float64)
        keep = np.isfinite(z)
        if keep.sum() < self.n_neighbors:
            raise EvaluationError(
                f"the tabular baseline needs at least {self.n_neighbors} training objects with "
                f"a redshift, got {int(keep.sum())}"
            )
        flux = np.asarray(flux, dtype=np.float64)[keep]
        err = np.asarray(flux_err, dtype=np.float64)[keep]
        with warnings.catch_warnings():
            # a band measured for no training object is expected (no coverage): it gets the
            # defaults below
            warnings.filterwarnings("ignore", "All-NaN slice", RuntimeWarning)
            softening = np.nanmedian(np.where(err > 0, err, np.nan), axis=0)
        self.softening_ = np.where(np.isfinite(softening) & (softening > 0), softening, 1.0)
        raw = _asinh_features(flux, self.softening_)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "All-NaN slice", RuntimeWarning)
            fill = np.nanmedian(raw, axis=0)
        self.fill_ = np.where(np.isfinite(fill), fill, 0.0)
        raw = np.where(np.isfinite(raw), raw, self.fill_)
        self.mean_ = raw.mean(axis=0)
        self.scale_ = np.where(raw.std(axis=0) > 0, raw.std(axis=0), 1.0)
        self.z_train_ = z[keep]
        self.index_ = NearestNeighbors(n_neighbors=self.n_neighbors).fit(
            (raw - self.mean_) / self.scale_
        )
        return self

    def predict(self, flux: np.ndarray) -> np.ndarray:
        """Densities ``(n, n_z)`` for photometry in the training layout."""
        if not hasattr(self, "index_"):
            raise EvaluationError("TabularBaseline.predict called before fit")
        distance, index = self.index_.kneighbors(self._features(flux))
        weights = 1.0 / (distance + 1e-3)
        weights /= weights.sum(axis=1, keepdims=True)
        centres = self.z_train_[index]
        sigma = self.kernel_width * (1.0 + centres)
        edges = self.zgrid.edges
        probs = np.zeros((centres.shape[0], self.zgrid.n_bins))
        for k in range(centres.shape[1]):
            cdf = stats.norm.cdf((edges[None, :] - centres[:, k, None]) / sigma[:, k, None])
            probs += weights[:, k, None] * np.diff(cdf, axis=1)
        probs += 1e-12  # a kernel far off the grid still leaves a valid density
        return probs / probs.sum(axis=1, keepdims=True)


def oracle_photometry(
    truth: pd.DataFrame, ids: np.ndarray, *, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Noisy fluxes from the simulator's true magnitudes and their catalogue errors.

    Parameters
    ----------
    truth : pandas.DataFrame
        The sky's ``<stem>.truth.parquet``: ``id``, ``mag_<band>`` (true observed AB) and
        ``magerr_<band>`` (1σ catalogue noise).
    ids : array_like of str
        Objects wanted, in that order.
    seed : int
        Seed of the noise draw.

    Returns
    -------
    flux, flux_err : ndarray, shape (n, 9)
        Nanomaggies, bands FUV..W2; the flux is the truth plus Gaussian noise of that error.
    """
    names = [b.name for b in BANDS]
    needed = ["id", *(f"mag_{n}" for n in names), *(f"magerr_{n}" for n in names)]
    missing = [c for c in needed if c not in truth.columns]
    if missing:
        raise EvaluationError(f"truth table lacks columns {missing}; it needs {needed}")
    table = truth.assign(id=truth["id"].astype(str)).drop_duplicates("id").set_index("id")
    ids = np.asarray(ids).astype(str)
    absent = [str(i) for i in ids if i not in table.index]
    if absent:
        raise EvaluationError(
            f"{len(absent)} objects are not in the truth table, e.g. {absent[:10]}"
        )
    rows = table.loc[ids]
    mags = rows[[f"mag_{n}" for n in names]].to_numpy(dtype=np.float64)
    magerr = rows[[f"magerr_{n}" for n in names]].to_numpy(dtype=np.float64)
    true_flux = mag_to_nanomaggies(mags)
    flux_err = true_flux * magerr * np.log(10) / 2.5
    rng = np.random.default_rng(seed)
    flux = true_flux + flux_err * rng.standard_normal(true_flux.shape)
    return flux, flux_err
