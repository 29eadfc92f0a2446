"""The LightningDataModule over the HDF5 store."""

from __future__ import annotations

import lightning.pytorch as pl
import numpy as np
from torch.utils.data import DataLoader

from mantis.data._batches import SplitBatches, keep_batch
from mantis.data._dataset import (
    estimate_noise_sigma,
    image_groups,
    read_spec,
)
from mantis.data._sampler import balanced_sampler, redshift_balance
from mantis.stack import SPLITS, DatasetError, DatasetReader
from mantis.zgrid import ZGrid

__all__ = ["MantisDataModule"]


class MantisDataModule(pl.LightningDataModule):
    """Train, validation and test loaders from ``/catalog/split`` of one HDF5 dataset.

    Objects without a redshift inside the grid cannot be trained on or scored and are left out
    of all three loaders (their number is printed).

    Parameters
    ----------
    path : str
        The HDF5 dataset written by ``mantis build``.
    fusion : {'early', 'late'}
        Read the early-fusion stack or each survey at its native grid.
    batch_size : int
        Objects per batch (per process under DDP).
    num_workers : int
        DataLoader worker processes (0: batches are made in the training process, the fastest
        on a few cores once the split is in memory).
    augment : bool
        Apply a random flip/rotation of the square to each training sample.
    max_memory_gb : float
        Hold a split's image and valid arrays in memory (read from the file once) when they
        take at most this many GiB; a larger split is read from the file batch by batch
        (much slower: each random batch decompresses many HDF5 chunks). 0 never holds one.
    balance_redshift : bool
        Draw training objects with weights that flatten n(z); the model divides that prior
        back out at inference (`prior_correction`).
    balance_bins : int
        Coarse redshift bins of the balancing weights.
    noise_objects : int
        Training objects read to estimate each band's noise.
    seed : int
        Seed of the balanced sampler and of the training subset.
    train_fraction : float
        Use this fraction of the training split (a seeded random subset, the same every run,
        nested: with one seed, a smaller fraction's subset lies inside a larger one's); for
        learning curves of accuracy against training-set size.
    z_min, z_max, n_z : float, float, int
        The redshift grid (must match the model's).
    """

    def __init__(
        self,
        path: str,
        *,
        fusion: str = "early",
        batch_size: int = 64,
        num_workers: int = 0,
        augment: bool = True,
        max_memory_gb: float = 8.0,
        balance_redshift: bool = False,
        balance_bins: int = 40,
        noise_objects: int = 256,
        seed: int = 0,
        train_fraction: float = 1.0,
        z_min: float = 0.0,
        z_max: float = 1.6,
        n_z: int = 400,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise DatasetError(f"batch_size must be a positive integer, got {batch_size!r}")
        if num_workers < 0:
            raise DatasetError(f"num_workers must be >= 0, got {num_workers!r}")
        self.path = str(path)
        self.spec = read_spec(path, fusion)
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.augment = augment
        if not max_memory_gb >= 0:
            raise DatasetError(f"max_memory_gb must be >= 0, got {max_memory_gb!r}")
        self.max_memory_gb = float(max_memory_gb)
        self.balance_redshift = balance_redshift
        self.balance_bins = balance_bins
        self.noise_objects = noise_objects
        self.seed = seed
        if not 0.0 < train_fraction <= 1.0:
            raise DatasetError(f"train_fraction must lie in (0, 1], got {train_fraction!r}")
        self.train_fraction = train_fraction
        self.zgrid = ZGrid(z_min, z_max, n_z)
        self.rows: dict[str, np.ndarray] = {}
        self._noise: dict[str, list[float]] | None = None
        self._open_datasets: list[SplitBatches] = []

    def setup(self, stage: str | None = None) -> None:
        """Index the splits (cheap; safe to call on every process)."""
        if self.rows:
            return
        with DatasetReader(self.path) as reader:
            split = reader.catalog(["split"])["split"]
            z = reader.catalog(["z"])["z"] if "catalog/z" in reader else np.full(split.size, np.nan)
        usable = np.isfinite(z) & self.zgrid.contains(np.nan_to_num(z, nan=-1.0))
        for name in SPLITS:
            in_split = split == name
            self.rows[name] = np.flatnonzero(in_split & usable)
            dropped = int((in_split & ~usable).sum())
            if dropped:
                print(f"mantis: {dropped} {name} objects lack a redshift in the grid; left out")
        if self.train_fraction < 1.0:
            train = self.rows["train"]
            keep = max(1, round(self.train_fraction * len(train)))
            # a prefix of one seeded permutation: subsets of smaller fractions lie inside
            # those of larger ones, so a learning curve only ever adds galaxies
            order = np.random.default_rng(self.seed).permutation(len(train))
            self.rows["train"] = np.sort(train[order[:keep]])
        if len(self.rows["train"]) == 0:
            raise DatasetError(f"dataset {self.path!r} has no training objects with a redshift")
        self._train_z = z[self.rows["train"]]

    def noise_sigma(self) -> dict[str, list[float]]:
        """Per-band noise sigma of each image group, from the training split."""
        self.setup()
        if self._noise is None:
            self._noise = estimate_noise_sigma(
                self.path,
                self.rows["train"],
                image_groups(self.spec),
                max_objects=self.noise_objects,
            )
        return self._noise

    def prior_correction(self) -> np.ndarray:
        """Log prior to add to the logits at inference: zero unless training is balanced."""
        self.setup()
        if not self.balance_redshift:
            return np.zeros(self.zgrid.n_bins)
        return redshift_balance(self._train_z, self.zgrid, n_bins=self.balance_bins)[1]

    def _loader(self, name: str, *, train: bool) -> DataLoader:
        self.setup()
        dataset = SplitBatches(
            self.path,
            self.rows[name],
            image_groups(self.spec),
            augment=train and self.augment,
            max_memory_gb=self.max_memory_gb,
        )
        if not dataset.in_memory and len(dataset):
            print(
                f"mantis: the {name} split takes {dataset.split_bytes / 2**30:.1f} GiB, over "
                f"data.max_memory_gb={self.max_memory_gb:g}; reading its batches from the file"
            )
        self._open_datasets.append(dataset)
        sampler = None
        if train and self.balance_redshift:
            weights = redshift_balance(self._train_z, self.zgrid, n_bins=self.balance_bins)[0]
            sampler = balanced_sampler(weights, seed=self.seed)
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=train and sampler is None,
            sampler=sampler,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            drop_last=train and len(dataset) > self.batch_size,
            collate_fn=keep_batch,
        )

    def split_dataloader(self, name: str) -> DataLoader:
        """Batches of one split (``'train'``, ``'val'`` or ``'test'``) in order, unaugmented."""
        if name not in SPLITS:
            raise DatasetError(f"split must be one of {list(SPLITS)}, got {name!r}")
        return self._loader(name, train=False)

    def teardown(self, stage: str | None = None) -> None:
        """Release the HDF5 handles and the splits held in memory."""
        for dataset in self._open_datasets:
            dataset.close()
        self._open_datasets.clear()

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)
