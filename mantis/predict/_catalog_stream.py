"""A user catalogue chunk by chunk (`mantis.catalog.iter_table_chunks`), numbered by row.

Each chunk is a DataFrame with the same columns `mantis.catalog.read_catalog` gives (``id``
first, then ``ra``, ``dec`` and every other column) plus ``_row``, the 0-based row number in the
file, which the part store uses to know what is already written.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from mantis.calibration import file_sha256
from mantis.catalog import count_rows, default_ids, iter_table_chunks, normalise_columns
from mantis.exceptions import CatalogError

__all__ = ["ROW_COLUMN", "catalog_fingerprint", "count_rows", "iter_catalog_chunks"]

ROW_COLUMN = "_row"


def catalog_fingerprint(path: str | os.PathLike) -> str:
    """SHA-256 of the catalogue file, read in blocks (memory does not grow with file size)."""
    return file_sha256(path)


def _check_columns(df: pd.DataFrame, path: Path) -> pd.DataFrame:
    df = normalise_columns(df)
    missing = [c for c in ("ra", "dec") if c not in df.columns]
    if missing:
        raise CatalogError(
            f"catalogue {str(path)!r} lacks column(s) {', '.join(missing)}; it needs ra and dec "
            f"in degrees (found: {', '.join(map(str, df.columns)) or 'no columns'})"
        )
    if ROW_COLUMN in df.columns:
        raise CatalogError(f"catalogue {str(path)!r} has a column named {ROW_COLUMN!r}; rename it")
    return df


def iter_catalog_chunks(path: str | os.PathLike, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """Yield the catalogue in chunks of ``chunk_rows`` rows.

    Coordinates are coerced to float64 (non-numeric values become NaN and are flagged later by
    `mantis.catalog.validate_rows`); ids are strings, ``J{ra:09.5f}{dec:+09.5f}`` when the
    catalogue has none.

    Raises
    ------
    CatalogError
        If the file is missing, of a kind not in ``mantis.catalog.CATALOG_EXTENSIONS``, or
        lacks ``ra``/``dec``.
    """
    path = Path(path)
    start = 0
    for raw in iter_table_chunks(path, chunk_rows):
        df = _check_columns(raw.reset_index(drop=True), path)
        df["ra"] = pd.to_numeric(df["ra"], errors="coerce").astype("float64")
        df["dec"] = pd.to_numeric(df["dec"], errors="coerce").astype("float64")
        if "id" in df.columns:
            df["id"] = df["id"].astype(str).str.strip().where(df["id"].notna(), "")
        else:
            df.insert(0, "id", default_ids(df["ra"].to_numpy(), df["dec"].to_numpy()))
        df[ROW_COLUMN] = np.arange(start, start + len(df), dtype=np.int64)
        start += len(df)
        cols = ["id", "ra", "dec"] + [c for c in df.columns if c not in ("id", "ra", "dec")]
        yield df[cols]
