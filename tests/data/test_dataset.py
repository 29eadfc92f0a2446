from __future__ import annotations

import pickle

import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from mantis.data import (
    DatasetError,
    H5Dataset,
    MantisDataModule,
    estimate_noise_sigma,
    read_spec,
)
from mantis.data.testing import DEFAULT_TEST_SIZES, write_synthetic_dataset


def test_spec_reads_sizes_from_the_file(tmp_path):
    path = write_synthetic_dataset(tmp_path / "d.h5", 8, sizes={"early": 20, "ps1": 40})
    early = read_spec(path, "early")
    assert early["grids"]["early"]["size"] == 20
    assert early["channels"] == {"early": 9}
    late = read_spec(path, "late")
    assert late["grids"]["ps1"] == {"pixel_scale": 0.25, "size": 40}
    assert late["channels"] == {"galex": 2, "ps1": 5, "unwise": 2}


def test_spec_errors_name_the_problem(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        read_spec(tmp_path / "missing.h5")
    path = write_synthetic_dataset(tmp_path / "d.h5", 4)
    with pytest.raises(DatasetError, match="fusion must be one of"):
        read_spec(path, "middle")
    with h5py.File(path, "a") as f:
        del f["ps1/valid"]
    with pytest.raises(DatasetError, match="ps1"):
        read_spec(path, "late")


def test_batched_read_matches_file_in_any_order(synthetic_h5):
    rows = np.array([5, 2, 9, 2])
    ds = H5Dataset(synthetic_h5, rows, ["early", "ps1"])
    samples = ds.__getitems__([0, 1, 2, 3])
    with h5py.File(synthetic_h5) as f:
        for sample, row in zip(samples, rows, strict=True):
            np.testing.assert_array_equal(sample["image"]["ps1"].numpy(), f["ps1/image"][row])
            np.testing.assert_array_equal(sample["valid"]["early"].numpy(), f["early/valid"][row])
            assert sample["z"] == pytest.approx(f["catalog/z"][row])
            assert sample["ebv"].shape == (1,)
            assert int(sample["index"]) == row


def test_dataset_survives_pickling_and_workers(synthetic_h5):
    ds = H5Dataset(synthetic_h5, np.arange(16), ["early"])
    ds[0]  # opens a handle in this process
    clone = pickle.loads(pickle.dumps(ds))
    assert clone._file is None
    loader = DataLoader(ds, batch_size=4, num_workers=2)
    indices = torch.cat([batch["index"] for batch in loader])
    assert indices.tolist() == list(range(16))


def test_noise_estimate_recovers_the_injected_noise(tmp_path):
    path = write_synthetic_dataset(tmp_path / "d.h5", 32, noise=0.05, galex_coverage=0.0)
    sigma = estimate_noise_sigma(path, np.arange(32), ["ps1", "galex"])
    # the blob occupies few pixels, so the robust estimate sits at the sky noise
    np.testing.assert_allclose(sigma["ps1"], 0.05, rtol=0.1)
    assert sigma["galex"] == [1.0, 1.0]  # no valid GALEX pixel at all


def test_datamodule_splits_and_batches(synthetic_h5):
    dm = MantisDataModule(str(synthetic_h5), fusion="late", batch_size=8)
    dm.setup("fit")
    with h5py.File(synthetic_h5) as f:
        split = f["catalog/split"][:]
    for name in ("train", "val", "test"):
        np.testing.assert_array_equal(dm.rows[name], np.flatnonzero(split == name.encode()))
    batch = next(iter(dm.train_dataloader()))
    size = DEFAULT_TEST_SIZES["ps1"]
    assert batch["image"]["ps1"].shape == (8, 5, size, size)
    assert batch["valid"]["galex"].dtype == torch.bool
    assert set(batch["image"]) == {"galex", "ps1", "unwise"}


def test_datamodule_leaves_out_objects_without_usable_redshift(tmp_path, capsys):
    path = write_synthetic_dataset(tmp_path / "d.h5", 20)
    with h5py.File(path, "a") as f:
        z = f["catalog/z"][:]
        split = f["catalog/split"][:]
        train = np.flatnonzero(split == b"train")
        z[train[0]] = np.nan
        z[train[1]] = 2.5  # beyond the grid
        f["catalog/z"][...] = z
    dm = MantisDataModule(str(path))
    dm.setup()
    assert len(dm.rows["train"]) == len(train) - 2
    assert "2 train objects lack a redshift" in capsys.readouterr().out


def test_datamodule_rejects_bad_settings(synthetic_h5):
    with pytest.raises(DatasetError, match="batch_size"):
        MantisDataModule(str(synthetic_h5), batch_size=0)


def test_train_fraction_takes_a_fixed_subset_of_the_training_split(synthetic_h5):
    full = MantisDataModule(str(synthetic_h5))
    full.setup()
    half = MantisDataModule(str(synthetic_h5), train_fraction=0.5)
    half.setup()
    again = MantisDataModule(str(synthetic_h5), train_fraction=0.5)
    again.setup()
    assert len(half.rows["train"]) == round(0.5 * len(full.rows["train"]))
    assert set(half.rows["train"]) <= set(full.rows["train"])
    np.testing.assert_array_equal(half.rows["train"], again.rows["train"])
    np.testing.assert_array_equal(half.rows["val"], full.rows["val"])  # only training shrinks
    with pytest.raises(DatasetError, match="train_fraction"):
        MantisDataModule(str(synthetic_h5), train_fraction=0.0)


def test_train_fractions_are_nested_and_follow_the_seed(synthetic_h5):
    def rows(fraction, seed=0):
        dm = MantisDataModule(str(synthetic_h5), train_fraction=fraction, seed=seed)
        dm.setup()
        return dm.rows["train"]

    sizes = {f: len(rows(f)) for f in (1 / 16, 1 / 8, 1 / 4, 1 / 2)}
    assert sorted(sizes.values()) == list(sizes.values())  # the curve's sizes grow
    for small, large in ((1 / 16, 1 / 8), (1 / 8, 1 / 4), (1 / 4, 1 / 2), (1 / 2, 1.0)):
        assert set(rows(small)) < set(rows(large))
    assert not np.array_equal(rows(1 / 2, seed=0), rows(1 / 2, seed=1))
