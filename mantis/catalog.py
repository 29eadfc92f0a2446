"""Reading and validating user catalogues: the one reader of every stage.

Fetch, build, predict (in chunks, `iter_table_chunks`) and the sky's user source catalogue read
tables here, so they accept the same kinds (`CATALOG_EXTENSIONS`: CSV, gzipped CSV, parquet,
FITS, gzipped FITS, VOTable) and apply the same column rules (`normalise_columns`): ``ra`` and
``dec`` in degrees, an optional ``id``, optional ``z`` (required for training), names matched
in any case, everything else passed through.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mantis.exceptions import CatalogError

__all__ = [
    "CATALOG_EXTENSIONS",
    "COLUMN_NAMES",
    "MAX_ROWS_NAMED",
    "catalog_kind",
    "count_rows",
    "default_ids",
    "iter_table_chunks",
    "normalise_columns",
    "read_catalog",
    "read_table",
    "select_columns",
    "validate_rows",
]

MAX_ROWS_NAMED = 10  # error messages name at most this many offending rows
MAX_COLUMNS_NAMED = 20  # and at most this many of a table's columns

CATALOG_EXTENSIONS: dict[str, str] = {
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".fits": "fits",
    ".fit": "fits",
    ".vot": "votable",
    ".votable": "votable",
    ".xml": "votable",
    ".csv.gz": "csv",
    ".fits.gz": "fits",
    ".fit.gz": "fits",
}
"""Every catalogue file kind mantis reads, by (lower-case) extension."""

COLUMN_NAMES = ("id", "ra", "dec", "z")
"""Columns recognised in any case (``RA``, ``Dec``, ``ID``, ``Z``)."""


def default_ids(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """IAU-style names ``J{ra:09.5f}{dec:+09.5f}`` for rows without an ``id``."""
    return np.array(
        [f"J{r:09.5f}{d:+09.5f}" for r, d in zip(np.asarray(ra), np.asarray(dec), strict=True)],
        dtype=object,
    )


def catalog_kind(path: str | os.PathLike) -> str:
    """Return the kind of a catalogue file: ``'csv'``, ``'parquet'``, ``'fits'`` or ``'votable'``.

    Raises
    ------
    CatalogError
        If the extension is not one of `CATALOG_EXTENSIONS`.
    """
    path = Path(path)
    name = path.name.lower()
    for extension in sorted(CATALOG_EXTENSIONS, key=len, reverse=True):
        if name.endswith(extension):
            return CATALOG_EXTENSIONS[extension]
    raise CatalogError(
        f"catalogue {str(path)!r} has unsupported extension {path.suffix!r}; "
        f"allowed: {', '.join(CATALOG_EXTENSIONS)}"
    )


def _existing(path: str | os.PathLike) -> tuple[Path, str]:
    path = Path(path)
    kind = catalog_kind(path)
    if not path.is_file():
        raise CatalogError(f"catalogue {str(path)!r} does not exist")
    return path, kind


def _scalar_frame(table) -> pd.DataFrame:
    # multidimensional columns cannot live in a flat DataFrame; keep the scalar ones
    names = [name for name in table.colnames if len(table[name].shape) <= 1]
    table = table[names]
    for name in table.colnames:
        if table[name].dtype.kind == "S":
            table[name] = np.char.decode(np.char.strip(table[name]), "utf-8")
    return table.to_pandas()


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    """Read a whole catalogue file as it is (no column rules applied).

    Raises
    ------
    CatalogError
        If the file is missing, of another kind, or cannot be parsed.
    """
    path, kind = _existing(path)
    try:
        if kind == "csv":
            return pd.read_csv(path)
        if kind == "parquet":
            return pd.read_parquet(path)
        from astropy.table import Table

        if kind == "votable":
            return _scalar_frame(Table.read(path, format="votable"))
        return _scalar_frame(Table.read(path, format="fits", character_as_bytes=False))
    except (OSError, ValueError, TypeError, KeyError, IndexError, pd.errors.ParserError) as err:
        raise CatalogError(f"cannot read catalogue {str(path)!r} as {kind}: {err}") from None


def _fits_table(path: Path):
    from astropy.io import fits

    # memory-mapped unless gzipped (astropy decompresses those into memory)
    hdul = fits.open(path, memmap=not path.name.lower().endswith(".gz"))
    for hdu in hdul:
        if isinstance(hdu, fits.BinTableHDU | fits.TableHDU):
            return hdul, hdu
    hdul.close()
    raise CatalogError(f"catalogue {str(path)!r} holds no table HDU")


def count_rows(path: str | os.PathLike) -> int:
    """Count the rows of a catalogue without loading it (VOTables are parsed once)."""
    path, kind = _existing(path)
    if kind == "parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    if kind == "fits":
        hdul, hdu = _fits_table(path)
        with hdul:
            return int(hdu.header["NAXIS2"])
    if kind == "votable":
        return len(read_table(path))
    return sum(len(chunk) for chunk in pd.read_csv(path, chunksize=65536, usecols=[0]))


def iter_table_chunks(path: str | os.PathLike, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """Yield a catalogue file in chunks of ``chunk_rows`` rows, as it is (no column rules).

    CSV (gzipped or not), parquet and FITS are streamed, so memory does not grow with the
    catalogue; a VOTable (an XML document) is parsed whole and then sliced.

    Raises
    ------
    CatalogError
        If the file is missing, of another kind, or cannot be parsed.
    """
    if int(chunk_rows) != chunk_rows or chunk_rows < 1:
        raise CatalogError(f"chunk_rows must be an integer >= 1, got {chunk_rows!r}")
    path, kind = _existing(path)
    if kind == "csv":
        try:
            yield from pd.read_csv(path, chunksize=chunk_rows)
        except (OSError, ValueError, pd.errors.ParserError) as err:
            raise CatalogError(f"cannot read catalogue {str(path)!r} as CSV: {err}") from None
    elif kind == "parquet":
        import pyarrow.parquet as pq

        # Streamed column chunks, one thread: a file written as one row group of a million
        # rows would otherwise be read (and kept by the allocator) whole.
        handle = pq.ParquetFile(path, pre_buffer=False, buffer_size=1 << 20)
        for batch in handle.iter_batches(batch_size=chunk_rows, use_threads=False):
            yield batch.to_pandas()
    elif kind == "votable":
        table = read_table(path)
        for start in range(0, len(table), chunk_rows):
            yield table.iloc[start : start + chunk_rows].reset_index(drop=True)
    else:
        from astropy.table import Table

        hdul, hdu = _fits_table(path)
        with hdul:
            for start in range(0, int(hdu.header["NAXIS2"]), chunk_rows):
                yield _scalar_frame(Table(hdu.data[start : start + chunk_rows], copy=True))


def normalise_columns(df: pd.DataFrame) -> pd.DataFrame:
    """Rename ``RA``/``Dec``/``ID``/``Z`` (any case) to the lower-case names mantis uses."""
    renames = {}
    lower = {str(c).lower(): c for c in df.columns}
    for wanted in COLUMN_NAMES:
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


def select_columns(
    df: pd.DataFrame, columns: Mapping[str, str | None], *, source: str = "catalogue"
) -> pd.DataFrame:
    """Keep the columns named in ``columns`` under mantis's names, and nothing else.

    Parameters
    ----------
    df : pandas.DataFrame
        The table as read.
    columns : mapping
        Mantis name (``'id'``, ``'ra'``, ``'dec'``, ``'z'``) to the table's column name, matched
        exactly or else in any case; None leaves that column out.
    source : str
        What the table is, named in the message.

    Raises
    ------
    CatalogError
        Naming every requested column the table lacks, and the columns it has.
    """
    lower = {str(c).lower(): c for c in df.columns}
    renames: dict[Any, str] = {}
    missing = []
    for wanted, name in columns.items():
        if name is None:
            continue
        found = name if name in df.columns else lower.get(str(name).lower())
        if found is None:
            missing.append(f"{name!r} (for {wanted})")
        else:
            renames[found] = wanted
    if missing:
        have = [str(c) for c in df.columns]
        shown = ", ".join(have[:MAX_COLUMNS_NAMED])
        more = f" and {len(have) - MAX_COLUMNS_NAMED} more" if len(have) > MAX_COLUMNS_NAMED else ""
        raise CatalogError(
            f"{source} lacks column(s) {', '.join(missing)}; it has {shown or 'no columns'}{more}"
        )
    return df[list(renames)].rename(columns=renames)


def read_catalog(
    path: str | os.PathLike,
    *,
    require_z: bool = False,
    columns: Mapping[str, str | None] | None = None,
) -> pd.DataFrame:
    """Read a catalogue and check every row.

    Parameters
    ----------
    path : str or path-like
        A table of one of the `CATALOG_EXTENSIONS` kinds.
    require_z : bool
        Require a ``z`` column with finite values >= 0 (training sets).
    columns : mapping, optional
        Read only these columns, renamed (see `select_columns`: ``{'ra': 'RAJ2000', ...}``);
        by default every column, ``RA``/``Dec``/``ID``/``Z`` matched in any case.

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
    table = read_table(path)
    if columns is None:
        df = normalise_columns(table).reset_index(drop=True)
    else:
        df = select_columns(table, columns, source=f"catalogue {str(path)!r}")
        df = df.reset_index(drop=True)
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
