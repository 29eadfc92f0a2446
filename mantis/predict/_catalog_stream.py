"""Reading a user catalogue chunk by chunk, so memory does not grow with its length.

Each chunk is a DataFrame with the same columns `mantis.catalog.read_catalog` gives (``id``
first, then ``ra``, ``dec`` and every other column) plus ``_row``, the 0-based row number in the
file, which the part store uses to know what is already written.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from mantis.catalog import default_ids
from mantis.exceptions import CatalogError

__all__ = ["ROW_COLUMN", "catalog_fingerprint", "count_rows", "iter_catalog_chunks"]

ROW_COLUMN = "_row"
_KINDS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".fits": "fits", ".fit": "fits",
          ".vot": "votable", ".votable": "votable", ".xml": "votable"}  # fmt: skip


def _kind(path: Path) -> str:
    kind = _KINDS.get(path.suffix.lower())
    if kind is None:
        raise CatalogError(
            f"catalogue {str(path)!r} has unsupported extension {path.suffix!r}; "
            "allowed for prediction: .csv, .parquet, .fits, .vot/.votable/.xml (VOTable)"
        )
    if not path.is_file():
        raise CatalogError(f"catalogue {str(path)!r} does not exist")
    return kind


def _fits_table(path: Path):
    from astropy.io import fits

    hdul = fits.open(path, memmap=True)
    for hdu in hdul:
        if isinstance(hdu, fits.BinTableHDU | fits.TableHDU):
            return hdul, hdu
    hdul.close()
    raise CatalogError(f"catalogue {str(path)!r} holds no table HDU")


def count_rows(path: str | os.PathLike) -> int:
    """Count the rows of a catalogue without loading it."""
    path = Path(path)
    kind = _kind(path)
    if kind == "parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    if kind == "fits":
        hdul, hdu = _fits_table(path)
        with hdul:
            return int(hdu.header["NAXIS2"])
    if kind == "votable":
        return len(_votable(path))
    return sum(len(chunk) for chunk in pd.read_csv(path, chunksize=65536, usecols=[0]))


def catalog_fingerprint(path: str | os.PathLike) -> str:
    """SHA-256 of the catalogue file, read in blocks (memory does not grow with file size)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _votable(path: Path) -> pd.DataFrame:
    """Read the first table of a VOTable, scalar columns only (VOTable cannot be streamed)."""
    from astropy.table import Table

    try:
        table = Table.read(path, format="votable")
    except (OSError, ValueError, IndexError) as err:
        raise CatalogError(f"cannot read catalogue {str(path)!r} as VOTable: {err}") from None
    scalar = [name for name in table.colnames if len(table[name].shape) <= 1]
    return table[scalar].to_pandas()


def _raw_chunks(path: Path, kind: str, chunk_rows: int) -> Iterator[pd.DataFrame]:
    if kind == "csv":
        try:
            yield from pd.read_csv(path, chunksize=chunk_rows)
        except (ValueError, pd.errors.ParserError) as err:
            raise CatalogError(f"cannot read catalogue {str(path)!r} as CSV: {err}") from None
    elif kind == "votable":
        df = _votable(path)
        for start in range(0, len(df), chunk_rows):
            yield df.iloc[start : start + chunk_rows]
    elif kind == "parquet":
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path).iter_batches(batch_size=chunk_rows):
            yield batch.to_pandas()
    else:
        from astropy.table import Table

        hdul, hdu = _fits_table(path)
        with hdul:
            scalar = [c.name for c in hdu.columns if len(hdu.data[c.name].shape) <= 1]
            for start in range(0, int(hdu.header["NAXIS2"]), chunk_rows):
                rows = hdu.data[start : start + chunk_rows]
                table = Table(rows, copy=True)[scalar]
                for name in table.colnames:
                    if table[name].dtype.kind == "S":
                        table[name] = np.char.decode(np.char.strip(table[name]), "utf-8")
                yield table.to_pandas()


def _normalise(df: pd.DataFrame, path: Path) -> pd.DataFrame:
    lower = {str(c).lower(): c for c in df.columns}
    renames = {lower[c]: c for c in ("id", "ra", "dec", "z") if c not in df.columns and c in lower}
    df = df.rename(columns=renames)
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
        If the file is missing, of an unknown type, or lacks ``ra``/``dec``.
    """
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows!r}")
    path = Path(path)
    kind = _kind(path)
    start = 0
    for raw in _raw_chunks(path, kind, chunk_rows):
        df = _normalise(raw.reset_index(drop=True), path)
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
