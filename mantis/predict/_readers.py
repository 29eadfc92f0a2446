"""Reading prediction files back (any of the four formats), chunk by chunk.

``mantis priors`` and tests use these; each chunk comes with a dense ``(n, n_z)`` float64 array
of per-bin probabilities, NaN rows where the catalogue row was invalid.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from mantis.predict._parts import PredictionError
from mantis.predict._writers import DENSITY_COLUMN, METADATA_KEY, format_from_path
from mantis.zgrid import ZGrid

__all__ = ["iter_predictions", "read_predictions"]

Chunk = tuple[pd.DataFrame, np.ndarray]


def _parquet(path: Path, chunk_rows: int) -> tuple[ZGrid, Iterator[Chunk]]:
    import pyarrow.parquet as pq

    handle = pq.ParquetFile(path)
    meta = handle.schema_arrow.metadata or {}
    if METADATA_KEY.encode() not in meta:
        raise PredictionError(f"{str(path)!r} is not a mantis prediction file (no grid metadata)")
    zgrid = ZGrid.from_dict(json.loads(json.loads(meta[METADATA_KEY.encode()])["zgrid"]))

    def chunks() -> Iterator[Chunk]:
        for batch in handle.iter_batches(batch_size=chunk_rows):
            lists = batch.column(DENSITY_COLUMN)
            lengths = lists.value_lengths().to_numpy(zero_copy_only=False)
            dense = np.full((batch.num_rows, zgrid.n_bins), np.nan)
            dense[lengths == zgrid.n_bins] = lists.flatten().to_numpy().reshape(-1, zgrid.n_bins)
            names = [n for n in batch.schema.names if n != DENSITY_COLUMN]
            yield batch.select(names).to_pandas(), dense

    return zgrid, chunks()


def _fits(path: Path, chunk_rows: int) -> tuple[ZGrid, Iterator[Chunk]]:
    from astropy.io import fits
    from astropy.table import Table

    with fits.open(path) as hdul:
        header = hdul["PREDICTIONS"].header
        zgrid = ZGrid(float(header["ZMIN"]), float(header["ZMAX"]), int(header["NZBINS"]))
        n_rows = int(header["NAXIS2"])

    def chunks() -> Iterator[Chunk]:
        with fits.open(path, memmap=True) as hdul:
            data = hdul["PREDICTIONS"].data
            for start in range(0, n_rows, chunk_rows):
                table = Table(data[start : start + chunk_rows], copy=True)
                dense = np.asarray(table[DENSITY_COLUMN], dtype=np.float64)
                del table[DENSITY_COLUMN]
                for name in table.colnames:
                    if table[name].dtype.kind == "S":
                        table[name] = np.char.decode(table[name], "utf-8")
                yield table.to_pandas(), dense

    return zgrid, chunks()


def _csv(path: Path, chunk_rows: int) -> tuple[ZGrid, Iterator[Chunk]]:
    meta, n_comment = {}, 0
    with path.open() as fh:
        for line in fh:
            if not line.startswith("# "):
                break
            key, _, value = line[2:].partition(": ")
            meta[key] = value.strip()
            n_comment += 1
    if "zgrid" not in meta:
        raise PredictionError(f"{str(path)!r} is not a mantis prediction CSV (no '# zgrid' line)")
    zgrid = ZGrid.from_dict(json.loads(meta["zgrid"]))

    def chunks() -> Iterator[Chunk]:
        reader = pd.read_csv(
            path, skiprows=n_comment, chunksize=chunk_rows, dtype={"id": str, "flag": str},
            keep_default_na=False, na_values=[""],
        )  # fmt: skip
        for df in reader:
            text = df.pop(DENSITY_COLUMN).fillna("")
            dense = np.full((len(df), zgrid.n_bins), np.nan)
            for i, row in enumerate(text):
                if row:
                    dense[i] = np.array(row.split(), dtype=np.float64)
            df["flag"] = df["flag"].fillna("")
            yield df, dense

    return zgrid, chunks()


def _qp(path: Path, chunk_rows: int) -> tuple[ZGrid, Iterator[Chunk]]:
    import h5py

    with h5py.File(path, "r") as h5:
        edges = h5["meta/bins"][0]
        n_rows = h5["data/pdfs"].shape[0]
    zgrid = ZGrid(float(edges[0]), float(edges[-1]), edges.size - 1)
    renames = {"zmode": "z_mode", "zmean": "z_mean", "zmedian": "z_median"}

    def chunks() -> Iterator[Chunk]:
        with h5py.File(path, "r") as h5:
            for start in range(0, n_rows, chunk_rows):
                sl = slice(start, start + chunk_rows)
                df = pd.DataFrame({renames.get(k, k): h5[f"ancil/{k}"][sl] for k in h5["ancil"]})
                df["id"] = df["id"].str.decode("utf-8")
                df["valid"] = True
                pdfs = h5["data/pdfs"][sl].astype(np.float64)
                yield df, pdfs / pdfs.sum(axis=1, keepdims=True)

    return zgrid, chunks()


def _votable(path: Path, chunk_rows: int) -> tuple[ZGrid, Iterator[Chunk]]:
    from astropy.io.votable import parse_single_table

    table = parse_single_table(str(path))
    params = {p.name: p.value for p in table.params}
    zgrid = ZGrid(float(params["ZMIN"]), float(params["ZMAX"]), int(params["NZBINS"]))
    whole = table.to_table()

    def chunks() -> Iterator[Chunk]:
        for start in range(0, len(whole), chunk_rows):
            part = whole[start : start + chunk_rows]
            dense = np.asarray(part[DENSITY_COLUMN].filled(np.nan), dtype=np.float64)
            names = [n for n in part.colnames if n != DENSITY_COLUMN]
            yield part[names].to_pandas(), dense

    return zgrid, chunks()


_READERS = {"parquet": _parquet, "fits": _fits, "csv": _csv, "qp": _qp, "votable": _votable}


def iter_predictions(
    path: str | os.PathLike, *, chunk_rows: int = 65536
) -> tuple[ZGrid, Iterator[Chunk]]:
    """Open a prediction file for reading in chunks.

    Parameters
    ----------
    path : path-like
        A file written by `mantis.predict.predict_catalog` (format from the extension).
    chunk_rows : int
        Rows per chunk.

    Returns
    -------
    zgrid : ZGrid
        Grid of the densities.
    chunks : iterator of (DataFrame, ndarray)
        Columns of each chunk and its ``(n, n_z)`` per-bin probabilities (NaN rows if invalid).

    Raises
    ------
    PredictionError
        If the file is missing or not a mantis prediction file.
    """
    path = Path(path)
    if not path.is_file():
        raise PredictionError(f"prediction file {str(path)!r} does not exist")
    try:
        return _READERS[format_from_path(path)](path, chunk_rows)
    except (OSError, KeyError) as err:
        raise PredictionError(f"cannot read {str(path)!r} as mantis predictions: {err}") from None


def read_predictions(path: str | os.PathLike) -> tuple[pd.DataFrame, np.ndarray, ZGrid]:
    """Read a whole prediction file: ``(columns, probabilities (n, n_z), zgrid)``."""
    zgrid, chunks = iter_predictions(path)
    frames, dense = [], []
    for df, probs in chunks:
        frames.append(df)
        dense.append(probs)
    if not frames:
        return pd.DataFrame(), np.zeros((0, zgrid.n_bins)), zgrid
    return pd.concat(frames, ignore_index=True), np.concatenate(dense), zgrid
