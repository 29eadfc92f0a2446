"""The HDF5 dataset: incremental, resumable writing and the sky-position split.

The file is laid out as docs/interfaces.md ("Dataset") says. Every array has the catalogue's
full length from the start and is chunked by object; chunks of objects are written in
catalogue order and the attribute ``n_written`` is updated and flushed after each one, so an
interrupted build loses at most the chunk in flight and a rerun continues from ``n_written``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mantis.exceptions import ConfigError, MantisError

__all__ = [
    "SPLITS",
    "DatasetError",
    "DatasetWriter",
    "assign_splits",
    "catalog_hash",
    "healpix_cells",
]

SPLITS = ("train", "val", "test")


class DatasetError(MantisError):
    """An existing dataset file does not belong to this build, or is not a mantis dataset."""


def catalog_hash(ids: Sequence[str], ra: np.ndarray, dec: np.ndarray) -> str:
    """Short stable hash of the catalogue's order and positions."""
    digest = hashlib.sha256()
    digest.update("\n".join(map(str, ids)).encode("utf-8"))
    digest.update(np.ascontiguousarray(ra, dtype="<f8").tobytes())
    digest.update(np.ascontiguousarray(dec, dtype="<f8").tobytes())
    return digest.hexdigest()[:16]


def healpix_cells(ra: np.ndarray, dec: np.ndarray, nside: int) -> np.ndarray:
    """Nested HEALPix cell index of each ICRS position."""
    import astropy.units as u
    from astropy_healpix import HEALPix

    if not isinstance(nside, int) or nside < 1 or nside & (nside - 1):
        raise ConfigError(f"split.nside must be a power of two >= 1, got {nside!r}")
    grid = HEALPix(nside=nside, order="nested")
    return np.asarray(
        grid.lonlat_to_healpix(np.asarray(ra) * u.deg, np.asarray(dec) * u.deg), dtype=np.int64
    )


def _check_fractions(fractions: Mapping[str, Any]) -> np.ndarray:
    if not isinstance(fractions, Mapping) or set(fractions) != set(SPLITS):
        raise ConfigError(f"split.fractions must give train, val and test, got {fractions!r}")
    values = np.array([fractions[name] for name in SPLITS], dtype=float)
    if (values < 0).any() or not np.isclose(values.sum(), 1.0):
        raise ConfigError(
            f"split.fractions must be non-negative and sum to 1, got {dict(fractions)!r}"
        )
    return values


def assign_splits(
    ra: np.ndarray,
    dec: np.ndarray,
    *,
    nside: int,
    fractions: Mapping[str, float],
    seed: int = 0,
) -> np.ndarray:
    """Train / val / test by HEALPix cell, so that sky neighbours never straddle splits.

    Each cell draws a uniform number from a hash of (seed, cell) and goes to the split whose
    cumulative fraction interval holds it; the assignment of an object depends only on its
    position, so chunks and reruns agree.

    Returns
    -------
    ndarray
        Bytes array (``b'train'``, ``b'val'``, ``b'test'``), one per object.
    """
    edges = np.cumsum(_check_fractions(fractions))
    cells = healpix_cells(ra, dec, nside)
    unique, inverse = np.unique(cells, return_inverse=True)
    draws = np.array(
        [
            int.from_bytes(hashlib.sha256(f"{seed}:{nside}:{cell}".encode()).digest()[:8], "big")
            / 2.0**64
            for cell in unique
        ]
    )
    which = np.minimum(np.searchsorted(edges, draws, side="right"), len(SPLITS) - 1)
    labels = np.array([name.encode() for name in SPLITS], dtype="S5")
    return labels[which][inverse]


def _h5_dtype(array: np.ndarray):
    import h5py

    if array.dtype.kind in "OU":
        return h5py.string_dtype("utf-8")
    return array.dtype


class DatasetWriter:
    """Write chunks of objects into one HDF5 dataset, resuming where an earlier run stopped.

    Parameters
    ----------
    path : str or path-like
        The ``.h5`` file; created if missing, else opened for appending.
    n_objects : int
        Catalogue length (every array's first dimension).
    attrs : mapping
        File attributes; must include ``config_hash`` and ``catalog_hash``. On an existing file
        these two must match what it holds.
    chunk_objects : int
        Objects per HDF5 chunk.
    compression : str or None
        h5py compression filter for every array (``'lzf'``, ``'gzip'`` or None).

    Raises
    ------
    DatasetError
        If an existing file is not a mantis dataset or was built from another catalogue or
        configuration.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        n_objects: int,
        attrs: Mapping[str, Any],
        chunk_objects: int = 64,
        compression: str | None = "lzf",
    ) -> None:
        import h5py

        self.path = Path(path)
        self.n_objects = int(n_objects)
        self.chunk_objects = max(1, min(int(chunk_objects), max(self.n_objects, 1)))
        self.compression = compression
        if self.path.exists():
            try:
                self._file = h5py.File(self.path, "r+")
            except OSError as err:
                raise DatasetError(
                    f"{self.path} exists but is not a readable HDF5 file: {err}"
                ) from None
            self._check_existing(attrs)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = h5py.File(self.path, "w")
            for key, value in attrs.items():
                self._file.attrs[key] = value
            self._file.attrs["n_written"] = 0
            self._file.flush()

    def _check_existing(self, attrs: Mapping[str, Any]) -> None:
        held = self._file.attrs
        if "n_written" not in held or "config_hash" not in held:
            self._file.close()
            raise DatasetError(
                f"{self.path} exists and is not a mantis dataset; choose another --out"
            )
        for key in ("catalog_hash", "config_hash"):
            if str(held.get(key)) != str(attrs[key]):
                self._file.close()
                what = "catalogue" if key == "catalog_hash" else "build configuration"
                raise DatasetError(
                    f"{self.path} was built from another {what} ({key} {held.get(key)} in the "
                    f"file, {attrs[key]} now); delete it or choose another --out to rebuild"
                )

    @property
    def n_written(self) -> int:
        """Objects safely on disk."""
        return int(self._file.attrs["n_written"])

    def write(self, start: int, arrays: Mapping[str, np.ndarray]) -> None:
        """Write rows ``[start, start + n)`` of every array, then advance ``n_written``."""
        if start != self.n_written:
            raise ValueError(f"chunks must be written in order: at {self.n_written}, got {start}")
        lengths = {len(a) for a in arrays.values()}
        if len(lengths) != 1:
            raise ValueError(f"arrays of one chunk differ in length: {sorted(lengths)}")
        stop = start + lengths.pop()
        for key, array in arrays.items():
            if key not in self._file:
                self._file.create_dataset(
                    key,
                    shape=(self.n_objects, *array.shape[1:]),
                    dtype=_h5_dtype(array),
                    chunks=(self.chunk_objects, *array.shape[1:]),
                    compression=self.compression,
                )
            self._file[key][start:stop] = array
        self._file.attrs["n_written"] = stop
        self._file.flush()

    def set_attr(self, key: str, value: Any) -> None:
        """Set one file attribute (JSON-encoded when it is a mapping)."""
        self._file.attrs[key] = json.dumps(value) if isinstance(value, Mapping) else value

    def close(self) -> None:
        """Flush and close the file."""
        if self._file.id.valid:
            self._file.flush()
            self._file.close()

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
