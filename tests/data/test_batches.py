"""Whole batches of a split: equal to the per-sample path, in memory or read from the file."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, default_collate

from mantis.data import (
    DIHEDRAL_ORDER,
    DatasetError,
    H5Dataset,
    MantisDataModule,
    SplitBatches,
    dihedral,
    dihedral_batch,
    keep_batch,
)

GROUPS = ["galex", "ps1", "unwise"]


def _element_of(image: torch.Tensor, reference: torch.Tensor) -> int:
    matches = [k for k in range(DIHEDRAL_ORDER) if torch.equal(dihedral(reference, k), image)]
    assert len(matches) == 1
    return matches[0]


def test_batched_elements_equal_the_per_object_definition():
    # distinct pixel values, so equal outputs mean the same map; odd size, so no symmetry
    images = torch.arange(10 * 2 * 5 * 5, dtype=torch.float32).view(10, 2, 5, 5)
    elements = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7, 5, 0])
    rows = torch.tensor([9, 0, 3, 3, 7, 1, 2, 8, 4, 6])
    out = dihedral_batch(images, elements, rows=rows)
    for i in range(len(rows)):
        assert torch.equal(out[i], dihedral(images[rows[i]], int(elements[i])))
    masks = images.remainder(3) == 0
    flags = dihedral_batch(masks, elements)
    assert flags.dtype == torch.bool
    for i in range(len(elements)):
        assert torch.equal(flags[i], dihedral(masks[i], int(elements[i])))


def test_batched_elements_reject_bad_input():
    images = torch.zeros(3, 1, 4, 4)
    with pytest.raises(ValueError, match="one dihedral element per object"):
        dihedral_batch(images, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"0\.\.7"):
        dihedral_batch(images, torch.tensor([0, 8, 1]))


@pytest.mark.parametrize("max_memory_gb", [8.0, 0.0])
def test_plain_batches_equal_collated_samples(synthetic_h5, max_memory_gb):
    rows = np.array([5, 2, 9, 2, 40, 17])
    split = SplitBatches(synthetic_h5, rows, GROUPS, max_memory_gb=max_memory_gb)
    assert split.in_memory == (max_memory_gb > 0)
    positions = [3, 0, 5, 1]
    batch = split.__getitems__(positions)
    expected = default_collate(H5Dataset(synthetic_h5, rows, GROUPS).__getitems__(positions))
    for kind in ("image", "valid"):
        for group in GROUPS:
            assert batch[kind][group].dtype == expected[kind][group].dtype
            assert torch.equal(batch[kind][group], expected[kind][group])
    for key in ("ebv", "z", "index"):
        assert batch[key].dtype == expected[key].dtype
        assert torch.equal(batch[key], expected[key])


def test_augmented_batches_turn_every_survey_of_an_object_together(synthetic_h5):
    rows = np.arange(30)
    split = SplitBatches(synthetic_h5, rows, GROUPS, augment=True)
    with h5py.File(synthetic_h5) as f:
        keys = [f"{g}/{k}" for g in GROUPS for k in ("image", "valid")]
        stored = {key: torch.as_tensor(f[key][:30]) for key in keys}
    torch.manual_seed(3)
    seen = set()
    for _ in range(4):
        positions = torch.randperm(30)[:16].tolist()
        batch = split.__getitems__(positions)
        for i, row in enumerate(positions):
            k = _element_of(batch["image"]["ps1"][i], stored["ps1/image"][row])
            seen.add(k)
            for group in GROUPS:
                for kind in ("image", "valid"):
                    turned = dihedral(stored[f"{group}/{kind}"][row], k)
                    assert torch.equal(batch[kind][group][i], turned)
    assert seen == set(range(DIHEDRAL_ORDER))


def test_in_memory_and_file_batches_agree_under_one_seed(synthetic_h5):
    rows = np.flatnonzero(np.arange(64) % 3 != 1)
    batches = []
    for limit in (8.0, 0.0):
        split = SplitBatches(synthetic_h5, rows, ["early"], augment=True, max_memory_gb=limit)
        torch.manual_seed(11)
        loader = DataLoader(split, batch_size=8, shuffle=True, collate_fn=keep_batch)
        batches.append(list(loader))
    for memory, file in zip(*batches, strict=True):
        assert torch.equal(memory["index"], file["index"])
        assert torch.equal(memory["image"]["early"], file["image"]["early"])
        assert torch.equal(memory["valid"]["early"], file["valid"]["early"])


def test_datamodule_reads_from_the_file_over_its_memory_limit(synthetic_h5, capsys):
    dm = MantisDataModule(str(synthetic_h5), batch_size=8, max_memory_gb=0)
    batch = next(iter(dm.val_dataloader()))
    assert "val split takes" in capsys.readouterr().out
    assert torch.equal(batch["index"], torch.as_tensor(dm.rows["val"][:8]))
    with h5py.File(synthetic_h5) as f:
        expected = f["early/image"][dm.rows["val"][:8]]
    np.testing.assert_array_equal(batch["image"]["early"].numpy(), expected)
    dm.teardown()
    with pytest.raises(DatasetError, match="max_memory_gb"):
        MantisDataModule(str(synthetic_h5), max_memory_gb=-1)


def test_training_batches_repeat_under_a_seed(synthetic_h5):
    firsts = []
    for _ in range(2):
        dm = MantisDataModule(str(synthetic_h5), fusion="late", batch_size=8)
        torch.manual_seed(5)
        firsts.append(next(iter(dm.train_dataloader())))
        dm.teardown()
    assert torch.equal(firsts[0]["index"], firsts[1]["index"])
    for group in GROUPS:
        assert torch.equal(firsts[0]["image"][group], firsts[1]["image"][group])
    torch.manual_seed(6)
    other = next(iter(MantisDataModule(str(synthetic_h5), batch_size=8).train_dataloader()))
    assert not torch.equal(other["index"], firsts[0]["index"])
