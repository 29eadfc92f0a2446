"""Synthetic HDF5 datasets with the store's exact layout, and a trained tiny checkpoint."""

from __future__ import annotations

import pytest

from mantis.data.testing import write_synthetic_dataset


@pytest.fixture(scope="session")
def synthetic_h5(tmp_path_factory):
    """64 objects whose redshift is encoded in the colours of a Gaussian blob (test sizes)."""
    return write_synthetic_dataset(tmp_path_factory.mktemp("data") / "synthetic.h5", 64, seed=0)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, synthetic_h5):
    """A two-epoch early-fusion run trained through `train_model` (shared by several tests)."""
    from mantis.models import train_model

    run_dir = tmp_path_factory.mktemp("runs") / "early"
    best = train_model(
        "train/smoke_early",
        synthetic_h5,
        run_dir,
        overrides={"trainer.max_epochs": 2, "trainer.enable_progress_bar": False},
    )
    return run_dir, best
