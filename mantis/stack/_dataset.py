"""The HDF5 dataset store: incremental, resumable writing, reading, and the sky-position split.

This is the only module that opens a dataset file: the build writes it with `DatasetWriter`,
and training, evaluation, calibration, prediction and the gallery read it with `DatasetReader`.

The file is laid out as docs/interfaces.md ("Dataset") says. Every array has the catalogue's
full length from the start and is chunked by object; chunks of objects are written in
catalogue order and the attribute ``n_written`` is updated and flushed after each one, so an
interrupted build loses at most the chunk in flight and a rerun continues from ``n_written``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mantis.exceptions import ConfigError, MantisError

__all__ = [
    "SPLITS",
    "DatasetError",
    "DatasetReader",
    "DatasetWriter",
    "assign_splits",
    "catalog_hash",
    "check_split",
    "healpix_cells",
]

SPLITS = ("train", "val", "test")
"""The dataset's splits, in the order of ``split.fractions``."""


class DatasetError(MantisError):
    """A dataset file is missing, malformed, lacks what was asked for, or belongs elsewhere."""


def _split_choices() -> str:
    return ", ".join(repr(s) for s in SPLITS[:-1]) + f" or {SPLITS[-1]!r}"


def check_split(split: str | None, *, allow_all: bool = False) -> str | None:
    """Return ``split`` if it names a split (or is None and ``allow_all``), else raise.

    Raises
    ------
    DatasetError
        Naming the value and the allowed ones.
    """
    if split is None and allow_all:
        return None
    if split not in SPLITS:
        allowed = ("None, " if allow_all else "") + _split_choices()
        raise DatasetError(f"split must be {allowed}; got {split!r}")
    return split


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


class DatasetReader:
    """Read a dataset written by `DatasetWriter`: its description, splits, catalogue, arrays.

    Only the first ``n_written`` objects are finished; every method sees those alone (a file
    without ``n_written``, such as a hand-made test file, counts as finished). The file is
    opened on first use and again in each new process, so a reader may be sent to DataLoader
    workers (h5py handles cannot cross a fork).

    Parameters
    ----------
    path : str or path-like
        The ``.h5`` file.

    Raises
    ------
    DatasetError
        If the file does not exist or is not a readable HDF5 file.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise DatasetError(
                f"dataset {str(self.path)!r} does not exist; build it with `mantis build`"
            )
        self._file: Any = None
        self._pid: int | None = None
        self._handle()

    def _handle(self) -> Any:
        import h5py

        if self._file is None or self._pid != os.getpid() or not self._file.id.valid:
            try:
                self._file = h5py.File(self.path, "r")
            except OSError as err:
                raise DatasetError(f"cannot read dataset {str(self.path)!r}: {err}") from None
            self._pid = os.getpid()
        return self._file

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_file"] = None  # an open h5py handle must not cross into a worker
        state["_pid"] = None
        return state

    def close(self) -> None:
        """Close this process's handle (reopened on the next read)."""
        if self._file is not None and self._pid == os.getpid() and self._file.id.valid:
            self._file.close()
        self._file = None
        self._pid = None

    def __enter__(self) -> DatasetReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __contains__(self, key: str) -> bool:
        return key in self._handle()

    @property
    def attrs(self) -> dict[str, Any]:
        """File attributes (mappings stored as JSON are decoded)."""
        out = {}
        for key, value in self._handle().attrs.items():
            if isinstance(value, str) and value[:1] == "{":
                with contextlib.suppress(ValueError):
                    value = json.loads(value)
            out[key] = value
        return out

    @property
    def n_objects(self) -> int:
        """Catalogue length (every array's first dimension)."""
        f = self._handle()
        for key in ("catalog/split", "catalog/z", "catalog/ebv", "catalog/ra"):
            if key in f:
                return int(f[key].shape[0])
        raise DatasetError(f"dataset {str(self.path)!r} has no catalogue arrays")

    @property
    def n_written(self) -> int:
        """Objects finished on disk."""
        held = self._handle().attrs.get("n_written")
        return self.n_objects if held is None else min(int(held), self.n_objects)

    @property
    def spec(self) -> dict[str, Any]:
        """What the file holds: bands, surveys, grids, channels per image group, z grid, hashes.

        Returns
        -------
        dict
            ``{'bands', 'surveys', 'grids', 'channels', 'groups', 'catalog_hash',
            'config_hash', 'zgrid', 'n_objects', 'n_written'}``; ``grids`` maps an image group
            to ``{'pixel_scale', 'size'}``, ``channels`` maps each group present to its band
            count, ``zgrid`` is None when the file records none.

        Raises
        ------
        DatasetError
            If ``bands``, ``surveys`` or ``grids`` is missing.
        """
        attrs = self.attrs
        missing = [k for k in ("bands", "surveys", "grids") if k not in attrs]
        if missing:
            raise DatasetError(f"dataset {str(self.path)!r} lacks attributes {missing}")
        grids = attrs["grids"]
        f = self._handle()
        groups = [g for g in grids if f"{g}/image" in f and f"{g}/valid" in f]
        return {
            "bands": [str(b) for b in attrs["bands"]],
            "surveys": [str(s) for s in attrs["surveys"]],
            "grids": grids,
            "groups": groups,
            "channels": {g: int(f[f"{g}/image"].shape[1]) for g in groups},
            "catalog_hash": attrs.get("catalog_hash"),
            "config_hash": attrs.get("config_hash"),
            "zgrid": attrs.get("zgrid"),
            "n_objects": self.n_objects,
            "n_written": self.n_written,
        }

    def grids(self) -> dict[str, dict[str, float]]:
        """``{group: {'pixel_scale', 'size'}}`` from the ``grids`` attribute."""
        grids = self.attrs.get("grids")
        if not isinstance(grids, dict):
            raise DatasetError(f"dataset {str(self.path)!r} lacks the 'grids' attribute")
        return grids

    def require(self, keys: Sequence[str]) -> None:
        """Raise `DatasetError` naming every array of ``keys`` the file lacks."""
        missing = [k for k in keys if k not in self._handle()]
        if missing:
            raise DatasetError(f"dataset {str(self.path)!r} lacks {missing}")

    def keys(self) -> list[str]:
        """Every per-object array (first dimension the catalogue length), as ``group/name``."""
        import h5py

        n, found = self.n_objects, []

        def visit(name: str, node: Any) -> None:
            if isinstance(node, h5py.Dataset) and node.shape and node.shape[0] == n:
                found.append(name)

        self._handle().visititems(visit)
        return found

    def rows(self, split: str | None = None) -> np.ndarray:
        """Return the indices of the finished objects of ``split`` (None: all), in file order."""
        check_split(split, allow_all=True)
        n = self.n_written
        if split is None:
            return np.arange(n)
        self.require(["catalog/split"])
        labels = np.asarray(self._handle()["catalog/split"][:n]).astype("S")
        return np.flatnonzero(labels == split.encode())

    def catalog(self, columns: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Catalogue columns of the finished objects (strings decoded to ``str``).

        Parameters
        ----------
        columns : sequence of str, optional
            Names under ``/catalog`` (default: every one); ``split`` and ``id`` come back as
            ``str`` arrays.
        """
        f = self._handle()
        if columns is None:
            columns = list(f["catalog"]) if "catalog" in f else []
        self.require([f"catalog/{c}" for c in columns])
        n = self.n_written
        out = {}
        for name in columns:
            values = np.asarray(f[f"catalog/{name}"][:n])
            if values.dtype.kind in "SO":
                values = values.astype("S").astype(str)
            out[name] = values
        return out

    def _expand(self, keys: Sequence[str]) -> list[str]:
        # an image group name stands for its image and valid arrays
        out = []
        for key in keys:
            out += [key] if "/" in key else [f"{key}/image", f"{key}/valid"]
        return out

    def read(self, keys: Sequence[str], rows: np.ndarray | slice | None = None) -> dict:
        """Arrays ``keys`` at ``rows`` (any order, repeats allowed; None: every finished row).

        ``keys`` are array paths (``'catalog/ebv'``) or image groups (``'early'`` stands for
        ``'early/image'`` and ``'early/valid'``).
        """
        keys = self._expand(keys)
        self.require(keys)
        f = self._handle()
        if rows is None:
            rows = slice(0, self.n_written)
        if isinstance(rows, slice):
            return {k: f[k][rows] for k in keys}
        unique, inverse = np.unique(np.asarray(rows, dtype=np.int64), return_inverse=True)
        if unique.size == 0:
            return {k: np.empty((0, *f[k].shape[1:]), dtype=f[k].dtype) for k in keys}
        return {k: f[k][unique][inverse] for k in keys}

    def iter_arrays(
        self, keys: Sequence[str], rows: np.ndarray | None = None, chunk: int = 256
    ) -> Iterator[dict[str, np.ndarray]]:
        """Yield `read` of ``keys`` for consecutive chunks of ``rows`` (None: every row)."""
        if chunk < 1:
            raise DatasetError(f"chunk must be a positive integer, got {chunk!r}")
        rows = self.rows() if rows is None else np.asarray(rows, dtype=np.int64)
        keys = self._expand(keys)
        self.require(keys)
        for start in range(0, len(rows), chunk):
            yield self.read(keys, rows[start : start + chunk])
