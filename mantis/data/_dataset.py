"""Reading the HDF5 dataset store: layout description, a torch Dataset, noise estimates."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors

from mantis.stack import DatasetError, DatasetReader

__all__ = [
    "FUSIONS",
    "DatasetError",
    "H5Dataset",
    "estimate_noise_sigma",
    "image_groups",
    "read_spec",
]

FUSIONS = ("early", "late")
"""Allowed fusion modes: one stack of all bands, or one input per survey."""


def image_groups(spec: dict[str, Any]) -> list[str]:
    """HDF5 groups a model of this fusion reads: ``['early']`` or the survey names."""
    return ["early"] if spec["fusion"] == "early" else list(spec["surveys"])


def read_spec(path: str | os.PathLike, fusion: str = "early") -> dict[str, Any]:
    """Describe a dataset file from its attributes: bands, surveys, grids, channels per group.

    Parameters
    ----------
    path : str or path-like
        The HDF5 dataset.
    fusion : {'early', 'late'}
        Which inputs a model will read.

    Returns
    -------
    dict
        ``{'fusion', 'bands', 'surveys', 'grids', 'channels'}`` where ``grids`` maps a group to
        ``{'pixel_scale', 'size'}`` and ``channels`` maps each group read to its band count.

    Raises
    ------
    DatasetError
        If the file is missing, unreadable, or lacks the attributes or groups of the layout.
    """
    if fusion not in FUSIONS:
        raise DatasetError(f"fusion must be one of {FUSIONS}, got {fusion!r}")
    with DatasetReader(path) as reader:
        held = reader.spec
        spec: dict[str, Any] = {
            "fusion": fusion,
            "bands": held["bands"],
            "surveys": held["surveys"],
            "grids": held["grids"],
        }
        groups = image_groups(spec)
        absent = [g for g in groups if g not in held["groups"]]
        if absent or "catalog/split" not in reader:
            raise DatasetError(
                f"dataset {str(path)!r} lacks {absent or ['catalog/split']}; "
                f"the {fusion}-fusion model needs image, valid and catalog/split"
            )
        spec["channels"] = {g: held["channels"][g] for g in groups}
    return spec


class H5Dataset(Dataset):
    """Objects of the HDF5 store as torch samples, read lazily and in chunks.

    A sample is ``{'image': {group: Image}, 'valid': {group: Mask}, 'ebv': (1,), 'z': (),
    'index': ()}`` with ``group`` ``'early'`` or each survey. Each process opens its own file
    handle on first use, so the dataset is safe to send to DataLoader workers (h5py handles
    cannot cross a fork). ``__getitems__`` reads a whole batch in one sorted h5py selection.

    Parameters
    ----------
    path : str or path-like
        The HDF5 dataset.
    indices : sequence of int
        Rows of the file this dataset exposes, in order.
    groups : sequence of str
        Image groups to read (``['early']`` or survey names).
    transform : callable, optional
        Applied to each sample (e.g. `RandomDihedral`).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        indices: Sequence[int],
        groups: Sequence[str],
        *,
        transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> None:
        self.path = str(path)
        self.indices = np.asarray(indices, dtype=np.int64)
        self.groups = list(groups)
        self.transform = transform
        with DatasetReader(self.path) as reader:
            columns = reader.catalog(["ebv", "z"])
        self.ebv = np.nan_to_num(columns["ebv"].astype(np.float32), nan=0.0)
        self.z = columns["z"].astype(np.float32)
        self._file: DatasetReader | None = None

    def __len__(self) -> int:
        return len(self.indices)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_file"] = None  # an open h5py handle must not cross into a worker
        return state

    def _reader(self) -> DatasetReader:
        if self._file is None:
            self._file = DatasetReader(self.path)
        return self._file  # the reader reopens its handle in a new process

    def close(self) -> None:
        """Close this process's file handle (reopened on the next read)."""
        if self._file is not None:
            self._file.close()
        self._file = None

    def read_rows(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """Read image and valid arrays of file rows ``rows`` (any order, repeats allowed)."""
        return self._reader().read(self.groups, np.asarray(rows, dtype=np.int64))

    def _sample(self, arrays: dict[str, np.ndarray], j: int, row: int) -> dict[str, Any]:
        sample = {
            "image": {g: tv_tensors.Image(arrays[f"{g}/image"][j]) for g in self.groups},
            "valid": {g: tv_tensors.Mask(arrays[f"{g}/valid"][j]) for g in self.groups},
            "ebv": torch.tensor([self.ebv[row]]),
            "z": torch.tensor(self.z[row]),
            "index": torch.tensor(row),
        }
        return self.transform(sample) if self.transform is not None else sample

    def __getitems__(self, positions: Sequence[int]) -> list[dict[str, Any]]:
        rows = self.indices[np.asarray(positions, dtype=np.int64)]
        arrays = self.read_rows(rows)
        return [self._sample(arrays, j, int(row)) for j, row in enumerate(rows)]

    def __getitem__(self, position: int) -> dict[str, Any]:
        return self.__getitems__([position])[0]


def estimate_noise_sigma(
    path: str | os.PathLike, rows: np.ndarray, groups: Sequence[str], *, max_objects: int = 256
) -> dict[str, list[float]]:
    """Robust per-band pixel noise: 1.4826 x MAD of the valid pixels of some training objects.

    Most cutout pixels are sky, so the median absolute deviation measures the noise and is
    barely moved by the galaxy in the centre. At most ``max_objects`` rows, evenly spaced, are
    read, so the estimate is deterministic and cheap.

    Returns
    -------
    dict
        Group name to a list of per-band sigmas (AB nanomaggies per pixel). A band with no
        valid pixel among the rows read gets 1.0 (its inputs are all masked anyway).
    """
    rows = np.asarray(rows, dtype=np.int64)
    if len(rows) == 0:
        raise DatasetError("cannot estimate pixel noise from an empty training split")
    take = np.unique(rows[np.linspace(0, len(rows) - 1, min(max_objects, len(rows))).astype(int)])
    sigmas: dict[str, list[float]] = {}
    with DatasetReader(path) as reader:
        arrays = reader.read(list(groups), take)
        for group in groups:
            image = arrays[f"{group}/image"]
            valid = arrays[f"{group}/valid"] & np.isfinite(image)
            per_band = []
            for b in range(image.shape[1]):
                pixels = image[:, b][valid[:, b]].astype(np.float64)
                sigma = 0.0
                if pixels.size:
                    sigma = 1.4826 * np.median(np.abs(pixels - np.median(pixels)))
                per_band.append(float(sigma) if np.isfinite(sigma) and sigma > 0 else 1.0)
            sigmas[group] = per_band
    return sigmas
