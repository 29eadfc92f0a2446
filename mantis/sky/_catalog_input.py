"""Turning a user's own source catalogue into the table the renderer draws."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from mantis.catalog import normalise_columns, read_table
from mantis.exceptions import CatalogError
from mantis.sky._population import SOURCE_COLUMNS
from mantis.surveys import BANDS

__all__ = ["read_source_table", "sources_from_table"]


def read_source_table(path: str | os.PathLike) -> pd.DataFrame:
    """Read a source catalogue of any kind `mantis.catalog` reads, with its column rules.

    Raises
    ------
    CatalogError
        If the file is missing, has another extension, or cannot be parsed.
    """
    return normalise_columns(read_table(path))


def _bad_rows(mask: np.ndarray) -> list[int]:
    return [int(i) for i in np.flatnonzero(mask)[:10]]


def _numeric(table: pd.DataFrame, col: str) -> np.ndarray:
    values = pd.to_numeric(table[col], errors="coerce").to_numpy(float)
    bad = ~np.isfinite(values)
    if bad.any():
        raise CatalogError(f"column {col!r} must be finite numbers; bad rows {_bad_rows(bad)}")
    return values


def _check_range(values: np.ndarray, col: str, lo: float, hi: float, *, hi_open=False) -> None:
    bad = (values < lo) | ((values >= hi) if hi_open else (values > hi))
    if bad.any():
        bracket = ")" if hi_open else "]"
        raise CatalogError(
            f"column {col!r} must lie in [{lo}, {hi}{bracket}; bad rows {_bad_rows(bad)} "
            f"(values {values[bad][:10].tolist()})"
        )


def sources_from_table(path: str | os.PathLike) -> pd.DataFrame:
    """Validate a user catalogue and return it with `SOURCE_COLUMNS` (see `Universe.from_catalog`).

    Raises
    ------
    CatalogError
        Naming the column, the first bad rows and what is allowed.
    """
    table = read_source_table(path)
    required = ["ra", "dec", *(f"mag_{b.name}" for b in BANDS)]
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise CatalogError(
            f"source catalogue lacks columns {missing}; required: ra, dec (deg) and mag_<band> "
            f"(AB) for {', '.join(b.name for b in BANDS)}"
        )
    if len(table) == 0:
        raise CatalogError("source catalogue has no rows")
    n = len(table)
    out = pd.DataFrame(index=range(n))
    out["id"] = table["id"].astype(str).to_numpy() if "id" in table else [f"src{i:07d}" for i in
                                                                          range(n)]  # fmt: skip
    if out["id"].duplicated().any():
        raise CatalogError(f"duplicate ids: {out['id'][out['id'].duplicated()].head(10).tolist()}")
    ra, dec = _numeric(table, "ra"), _numeric(table, "dec")
    _check_range(ra, "ra", 0.0, 360.0, hi_open=True)
    _check_range(dec, "dec", -90.0, 90.0)
    out["ra"], out["dec"] = ra, dec
    z = _numeric(table, "z") if "z" in table else np.zeros(n)
    _check_range(z, "z", 0.0, 20.0)
    out["z"] = z
    kind = table["kind"].astype(str).str.lower().to_numpy() if "kind" in table else np.full(
        n, "galaxy")  # fmt: skip
    bad_kind = ~np.isin(kind, ["galaxy", "star"])
    if bad_kind.any():
        raise CatalogError(
            f"column 'kind' must be 'galaxy' or 'star'; bad rows {_bad_rows(bad_kind)}"
        )
    out["kind"] = kind
    out["sed_class"] = np.where(kind == "star", "star", "user")
    for b in BANDS:
        mags = pd.to_numeric(table[f"mag_{b.name}"], errors="coerce").to_numpy(float)
        bad = np.isinf(mags) | (mags < -5.0) | (mags > 99.0)
        if bad.any():
            raise CatalogError(
                f"column 'mag_{b.name}' must be AB magnitudes in [-5, 99] or NaN (no flux); "
                f"bad rows {_bad_rows(bad)}"
            )
        out[f"mag_{b.name}"] = np.nan_to_num(mags, nan=99.0)
    out["ebv"] = _numeric(table, "ebv") if "ebv" in table else 0.0
    size = _numeric(table, "size_arcsec") if "size_arcsec" in table else np.zeros(n)
    _check_range(size, "size_arcsec", 0.0, 60.0)
    size = np.where(kind == "star", 0.0, size)
    ell = _numeric(table, "ellipticity") if "ellipticity" in table else np.zeros(n)
    _check_range(ell, "ellipticity", 0.0, 1.0, hi_open=True)
    pa = _numeric(table, "pa_deg") % 180.0 if "pa_deg" in table else np.zeros(n)
    sersic = _numeric(table, "sersic_n") if "sersic_n" in table else np.ones(n)
    _check_range(sersic, "sersic_n", 0.5, 6.0)
    out["abs_mag_b"] = np.nan
    out["hlr_arcsec"] = size
    out["bulge_frac"] = 0.0
    out["hlr_disk"] = size
    out["hlr_bulge"] = 0.0
    # quantised Sersic index: GalSim caches its tables per n, so few distinct values render fast
    out["n_disk"] = np.round(sersic * 2.0) / 2.0
    out["n_bulge"] = 4.0
    out["q_disk"] = (1.0 - ell) / (1.0 + ell)
    out["q_bulge"] = 1.0
    out["pa_deg"] = pa
    out["temperature"] = np.nan
    for i in range(5):
        out[f"coeff_{i}"] = np.nan
    out["field"] = "user"
    out["spec_sample"] = np.where((kind == "galaxy") & (z > 0) & (z < 1.6), "user", "")
    return out[list(SOURCE_COLUMNS)]
