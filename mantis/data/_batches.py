"""Whole batches of one split: the split's arrays held in memory, augmentation per batch."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from mantis.data._dataset import H5Dataset
from mantis.data._transforms import dihedral_batch, random_dihedral_elements
from mantis.stack import DatasetReader

__all__ = ["SplitBatches", "keep_batch"]

GIB = 2**30
READ_SPAN = 512  # file rows per contiguous read while loading a split: whole HDF5 chunks


def keep_batch(batch: dict[str, Any]) -> dict[str, Any]:
    """DataLoader ``collate_fn`` for `SplitBatches`, whose reads are already whole batches."""
    return batch


def read_split(
    path: str | os.PathLike, keys: Sequence[str], rows: np.ndarray, *, span: int = READ_SPAN
) -> dict[str, np.ndarray]:
    """Arrays ``keys`` at file rows ``rows`` (in that order), read as contiguous slabs.

    A random selection of rows makes HDF5 decompress every chunk it touches for a few rows;
    slabs of at most ``span`` consecutive file rows decompress each chunk about once.
    """
    rows = np.asarray(rows, dtype=np.int64)
    order = np.argsort(rows, kind="stable")
    ordered = rows[order]
    out: dict[str, np.ndarray] = {}
    with DatasetReader(path) as reader:
        start = 0
        while start < len(ordered):
            first = int(ordered[start])
            stop = int(np.searchsorted(ordered, first + span, side="left"))
            slab = reader.read(keys, slice(first, int(ordered[stop - 1]) + 1))
            for key, values in slab.items():
                if key not in out:
                    out[key] = np.empty((len(rows), *values.shape[1:]), values.dtype)
                out[key][order[start:stop]] = values[ordered[start:stop] - first]
            start = stop
    return out


class SplitBatches(Dataset):
    """Objects of one split, read a whole batch at a time, optionally flipped/rotated.

    Use with ``DataLoader(split, batch_size=B, shuffle=..., collate_fn=keep_batch)``: the loader
    hands each batch's positions to ``__getitems__``, which returns the collated batch
    ``{'image': {group: (B, C, H, W)}, 'valid': {group: bool (B, C, H, W)}, 'ebv': (B, 1),
    'z': (B,), 'index': (B,)}``, the same as collating `H5Dataset` samples.

    When the split's arrays fit in ``max_memory_gb`` they are read from the file once, in
    contiguous slabs, and every batch is picked out of memory; otherwise each batch is read from
    the file. With ``augment`` every object gets its own uniform random element of D4 (torch's
    global generator, which Lightning and DataLoader workers seed) applied to all its images
    and masks: the distribution of `RandomDihedral`, drawn for the batch at once.

    Parameters
    ----------
    path : str or path-like
        The HDF5 dataset.
    rows : sequence of int
        File rows of the split; position ``i`` of the dataset is ``rows[i]``.
    groups : sequence of str
        Image groups to read (``['early']`` or survey names).
    augment : bool
        Draw a flip/rotation per object.
    max_memory_gb : float
        Hold the split in memory when its image and valid arrays take at most this many GiB.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        rows: Sequence[int],
        groups: Sequence[str],
        *,
        augment: bool = False,
        max_memory_gb: float = 8.0,
    ) -> None:
        self.source = H5Dataset(path, rows, groups)
        self.groups = list(groups)
        self.augment = augment
        rows = self.source.indices
        self.ebv = torch.from_numpy(self.source.ebv[rows]).view(-1, 1)
        self.z = torch.from_numpy(self.source.z[rows])
        self.index = torch.from_numpy(rows)
        self.arrays: dict[str, torch.Tensor] | None = None
        self.split_bytes = self._bytes_per_object() * len(rows)
        if len(rows) and self.split_bytes <= max_memory_gb * GIB:
            keys = [f"{g}/{kind}" for g in self.groups for kind in ("image", "valid")]
            loaded = read_split(path, keys, rows)
            self.arrays = {k: torch.from_numpy(v) for k, v in loaded.items()}

    def _bytes_per_object(self) -> int:
        if not len(self.source):
            return 0
        first = self.source.read_rows(self.source.indices[:1])
        return sum(int(a.nbytes) for a in first.values())

    @property
    def in_memory(self) -> bool:
        """True while the split's arrays are held in memory."""
        return self.arrays is not None

    def __len__(self) -> int:
        return len(self.source)

    def close(self) -> None:
        """Close the file handle and drop the arrays held in memory (later reads use the file)."""
        self.source.close()
        self.arrays = None

    def __getitems__(self, positions: Sequence[int]) -> dict[str, Any]:
        chosen = torch.as_tensor(positions, dtype=torch.int64)
        if self.arrays is not None:
            held, rows = self.arrays, chosen
        else:  # the file read picks the rows
            read = self.source.read_rows(self.source.indices[chosen.numpy()])
            held, rows = {k: torch.from_numpy(v) for k, v in read.items()}, None
        elements = random_dihedral_elements(len(chosen)) if self.augment else None

        def pick(key: str) -> torch.Tensor:
            if elements is not None:
                return dihedral_batch(held[key], elements, rows=rows)
            if rows is None:
                return held[key]
            return torch.from_numpy(np.take(held[key].numpy(), rows.numpy(), axis=0))

        batch = {kind: {g: pick(f"{g}/{kind}") for g in self.groups} for kind in ("image", "valid")}
        return batch | {"ebv": self.ebv[chosen], "z": self.z[chosen], "index": self.index[chosen]}

    def __getitem__(self, position: int) -> dict[str, Any]:
        """Return a batch of the one object at ``position``."""
        return self.__getitems__([position])
