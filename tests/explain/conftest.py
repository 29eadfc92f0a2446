"""A synthetic dataset and a model trained on it through `train_model` (shared by the tests)."""

from __future__ import annotations

import pytest

from mantis.data.testing import write_synthetic_dataset


@pytest.fixture(scope="session")
def explain_h5(tmp_path_factory):
    """120 objects whose redshift is encoded in the colours of a Gaussian blob."""
    return write_synthetic_dataset(tmp_path_factory.mktemp("data") / "explain.h5", 120, seed=3)


@pytest.fixture(scope="session")
def explain_model(tmp_path_factory, explain_h5):
    """(dataset, best checkpoint) of a three-epoch early-fusion run."""
    from mantis.models import train_model

    best = train_model(
        "configs/train/smoke_early.yaml",
        explain_h5,
        tmp_path_factory.mktemp("runs") / "early",
        overrides={"trainer.max_epochs": 3, "trainer.enable_progress_bar": False},
    )
    return explain_h5, best
