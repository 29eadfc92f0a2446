"""Reading and validating user catalogues (CSV, parquet or FITS).

Every stage that takes a list of sky positions (fetch, build, predict, train) reads it through
`read_catalog`, so the same rules apply everywhere: columns ``ra`` and ``dec`` in degrees,
an optional ``id``, optional ``z`` (required for training), everything else passed through.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from mantis.exceptions import CatalogError

__all__ = ["MAX_ROWS_NAMED", "default_ids", "read_catalog", "validate_rows"]

MAX_ROWS_NAMED = 10  # error messages name at most this many offending rows
_READERS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".fits": "fits", ".fit": "fits",
            ".vot": "votable", ".votable": "votable", ".xml": "votable"}  # fmt: skip


def default_ids(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """IAU-style names ``J{ra:09.5f}{dec:+09.5f}`` for rows without an ``id``."""
    return np.array(
        [f"J{r:09.5f}{d:+09.5f}" for r, d in zip(np.asarray(ra), np.asarray(dec), strict=True)],
        dtype=object,
    )


def _read_table(path: Path) -> pd.DataFrame:
    suffix = path.suffix.lower()
    if suffix == ".gz" and path.stem.lower().endswith((".fits", ".fit", ".csv")):
        suffix = Path(path.stem).suffix.lower()
    kind = _READERS.get(suffix)
    if kind is None:
        raise CatalogError(
            f"catalogue {str(path)!r} has unsupported extension {path.suffix!r}; "
            f"allowed: .csv, .parquet, .fits (optionally .gz for CSV and FITS), .vot, .xml"
        )
    try:
        if kind == "csv":
            return pd.read_csv(path)
        if kind == "parquet":
            return pd.read_parquet(path)
        from astropy.table import Table

        if kind == "votable":
            table = Table.read(path, format="votable")
        else:
            table = Table.read(path, format="fits", character_as_bytes=False)
        # multidimensional columns cannot live in a flat DataFrame; keep the scalar ones
        names = [name for name in table.colnames if len(table[name].shape) <= 1]
        return table[names].to_pandas()
    except (OSError, ValueError, TypeError, pd.errors.ParserError) as err:
        raise CatalogError(f"cannot read catalogue {str(path)!r} as {kind}: {err}") from None


def _normalise_columns(df: pd.DataFrame) -> pd.DataFrame:
    # accept RA/Dec/ID in any case, the way survey catalogues spell them
    renames = {}
    lower = {str(c).lower(): c for c in df.columns}
    for wanted in ("id", "ra", "dec", "z"):
        if wanted not in df.columns and wanted in lower:
            renames[lower[wanted]] = wanted
    return df.rename(columns=renames)


def _describe_rows(rows: list[int]) -> str:
    shown = ", ".join(str(r) for r in rows[:MAX_ROWS_NAMED])
    more = f" and {len(rows) - MAX_ROWS_NAMED} more" if len(rows) > MAX_ROWS_NAMED else ""
    return f"row{'s' if len(rows) > 1 else ''} {shown}{more}"


def validate_rows(df: pd.DataFrame, *, require_z: bool = False) -> tuple[np.ndarray, list[str]]:
    """Check every row of a catalogue, flagging rather than failing.

    Parameters
    ----------
    df : pandas.DataFrame
        Catalogue with columns ``ra`` and ``dec`` (and ``id`` if present).
    require_z : bool
        Also require a finite, non-negative ``z``.

    Returns
    -------
    valid_mask : ndarray of bool, shape (n_rows,)
        True for rows that can be used.
    reasons : list of str
        One entry per row: ``''`` for valid rows, otherwise why the row is rejected.

    Raises
    ------
    CatalogError
        If the ``ra`` or ``dec`` column (or ``z`` when required) is missing altogether.
    """
    required = ["ra", "dec"] + (["z"] if require_z else [])
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise CatalogError(
            f"catalogue lacks column(s) {', '.join(missing)}; it needs ra and dec in degrees"
            + (" and z" if require_z else "")
            + f" (found: {', '.join(map(str, df.columns)) or 'no columns'})"
        )
    n = len(df)
    reasons = [""] * n
    ra = pd.to_numeric(df["ra"], errors="coerce").to_numpy(dtype=float)
    dec = pd.to_numeric(df["dec"], errors="coerce").to_numpy(dtype=float)
    checks: list[tuple[np.ndarray, str]] = [
        (~np.isfinite(ra), "ra is not a finite number"),
        (np.isfinite(ra) & ((ra < 0) | (ra >= 360)), "ra outside [0, 360) degrees"),
        (~np.isfinite(dec), "dec is not a finite number"),
        (np.isfinite(dec) & ((dec < -90) | (dec > 90)), "dec outside [-90, 90] degrees"),
    ]
    if require_z:
        z = pd.to_numeric(df["z"], errors="coerce").to_numpy(dtype=float)
        checks.append((~np.isfinite(z) | (z < 0), "z is not a finite number >= 0"))
    if "id" in df.columns:
        ids = df["id"].astype(str).str.strip()
        checks.append((((ids == "") | df["id"].isna()).to_numpy(), "id is empty"))
        checks.append((ids.duplicated(keep=False).to_numpy(), "id is duplicated"))
    for bad, why in checks:
        for i in np.flatnonzero(bad):
            reasons[i] = f"{reasons[i]}; {why}" if reasons[i] else why
    valid = np.array([r == "" for r in reasons], dtype=bool)
    return valid, reasons


def read_catalog(path: str | os.PathLike, *, require_z: bool = False) -> pd.DataFrame:
    """Read a catalogue and check every row.

    Parameters
    ----------
    path : str or path-like
        CSV, parquet, FITS or VOTable (chosen by extension).
    require_z : bool
        Require a ``z`` column with finite values >= 0 (training sets).

    Returns
    -------
    pandas.DataFrame
        Columns ``id`` (str), ``ra``, ``dec`` (float64, degrees), then every other column as read.
        Without an ``id`` column, ids are ``J{ra:09.5f}{dec:+09.5f}``.

    Raises
    ------
    CatalogError
        If the file cannot be read, ra/dec are missing, or any row has a non-numeric or
        out-of-range coordinate or a duplicate id; the message names the rows (0-based, first ten).
    """
    path = Path(path)
    if not path.is_file():
        raise CatalogError(f"catalogue {str(path)!r} does not exist")
    df = _normalise_columns(_read_table(path)).reset_index(drop=True)
    valid, reasons = validate_rows(df, require_z=require_z)
    if not valid.all():
        by_reason: dict[str, list[int]] = {}
        for i, why in enumerate(reasons):
            for part in filter(None, why.split("; ")):
                by_reason.setdefault(part, []).append(i)
        details = "; ".join(f"{why}: {_describe_rows(rows)}" for why, rows in by_reason.items())
        raise CatalogError(
            f"catalogue {str(path)!r} has {int((~valid).sum())} invalid row(s) "
            f"(0-based): {details}. "
            "Allowed: ra in [0, 360), dec in [-90, 90] degrees, unique non-empty ids"
            + (", z finite and >= 0" if require_z else "")
        )
    df["ra"] = pd.to_numeric(df["ra"]).astype("float64")
    df["dec"] = pd.to_numeric(df["dec"]).astype("float64")
    if "id" in df.columns:
        df["id"] = df["id"].astype(str).str.strip()
    else:
        df.insert(0, "id", default_ids(df["ra"].to_numpy(), df["dec"].to_numpy()))
        if df["id"].duplicated().any():
            rows = np.flatnonzero(df["id"].duplicated(keep=False).to_numpy()).tolist()
            raise CatalogError(
                f"catalogue {str(path)!r} has no id column and positions that round to the same "
                f"name at {_describe_rows(rows)}; add a unique id column"
            )
    cols = ["id", "ra", "dec"] + [c for c in df.columns if c not in ("id", "ra", "dec")]
    return df[cols]
