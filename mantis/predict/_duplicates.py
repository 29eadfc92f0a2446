"""Finding ids that occur more than once anywhere in a catalogue, in bounded memory.

Chunks are validated one at a time, so a chunk alone can only see its own duplicates. Before
predicting, one pass hashes every id to 64 bits and files ``(hash, row)`` pairs into buckets by
hash (in memory for up to ``bucket_rows`` rows, else in files beside the parts), so at most one
bucket (16 bytes a row) is held at a time. Hashes seen twice are only candidates: a second pass
compares the real ids of those few rows, so a hash collision never flags a row.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from mantis.predict._catalog_stream import ROW_COLUMN, iter_catalog_chunks

__all__ = ["DUPLICATE_REASON", "duplicated_rows"]

DUPLICATE_REASON = "id is duplicated"
_PAIR = np.dtype([("hash", "<u8"), ("row", "<i8")])


def _pairs(chunk: pd.DataFrame) -> np.ndarray:
    ids = chunk["id"].to_numpy(dtype=object)
    keep = ids != ""  # empty ids are flagged as such, not as duplicates
    pairs = np.empty(int(keep.sum()), dtype=_PAIR)
    pairs["hash"] = pd.util.hash_array(ids[keep])
    pairs["row"] = chunk[ROW_COLUMN].to_numpy()[keep]
    return pairs


def _candidates(pairs: np.ndarray) -> np.ndarray:
    """Rows whose id hash occurs more than once in ``pairs``."""
    if len(pairs) < 2:
        return np.zeros(0, dtype=np.int64)
    pairs = np.sort(pairs, order="hash", kind="stable")
    same = pairs["hash"][1:] == pairs["hash"][:-1]
    repeated = np.zeros(len(pairs), dtype=bool)
    repeated[1:] |= same
    repeated[:-1] |= same
    return pairs["row"][repeated]


def _confirm(path: str | os.PathLike, rows: np.ndarray, chunk_rows: int) -> np.ndarray:
    """Of the candidate ``rows``, those whose actual id occurs more than once among them."""
    ids = []
    for chunk in iter_catalog_chunks(path, chunk_rows):
        picked = chunk[np.isin(chunk[ROW_COLUMN].to_numpy(), rows)]
        ids.append(picked[["id", ROW_COLUMN]])
    found = pd.concat(ids, ignore_index=True)
    return np.sort(found.loc[found["id"].duplicated(keep=False), ROW_COLUMN].to_numpy(np.int64))


def duplicated_rows(
    path: str | os.PathLike,
    n_rows: int,
    *,
    workdir: str | os.PathLike,
    chunk_rows: int = 65_536,
    bucket_rows: int = 1 << 16,
) -> np.ndarray:
    """Return the sorted 0-based row numbers whose id occurs more than once in the catalogue.

    Parameters
    ----------
    path : path-like
        The catalogue (read with `iter_catalog_chunks`, so generated ids count too).
    n_rows : int
        Its number of rows (sets the number of buckets).
    workdir : path-like
        Existing folder for the bucket files of large catalogues (removed afterwards).
    chunk_rows : int
        Rows read at a time.
    bucket_rows : int
        Rows per bucket on average; memory is about 16 bytes times this.

    Returns
    -------
    ndarray of int64
        Every row of every duplicated id (all occurrences, the first included).
    """
    n_buckets = max(1, math.ceil(n_rows / bucket_rows))
    if n_buckets == 1:
        pairs = [_pairs(chunk) for chunk in iter_catalog_chunks(path, chunk_rows)]
        candidates = _candidates(np.concatenate(pairs) if pairs else np.zeros(0, _PAIR))
    else:
        with tempfile.TemporaryDirectory(dir=workdir, prefix=".duplicates-") as tmp:
            files = [Path(tmp) / f"bucket-{k:05d}.bin" for k in range(n_buckets)]
            for chunk in iter_catalog_chunks(path, chunk_rows):
                pairs = _pairs(chunk)
                bucket = pairs["hash"] % np.uint64(n_buckets)
                for k in np.unique(bucket):
                    with files[int(k)].open("ab") as fh:
                        pairs[bucket == k].tofile(fh)
            found = [
                _candidates(np.fromfile(f, dtype=_PAIR)) for f in files if f.is_file()
            ]  # one bucket in memory at a time
            candidates = np.concatenate(found)
    if not len(candidates):
        return np.zeros(0, dtype=np.int64)
    return _confirm(path, np.sort(candidates), chunk_rows)
