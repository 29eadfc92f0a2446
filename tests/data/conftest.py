"""A synthetic HDF5 dataset with the store's exact layout."""

from __future__ import annotations

import pytest

from mantis.data.testing import write_synthetic_dataset


@pytest.fixture(scope="session")
def synthetic_h5(tmp_path_factory):
    """64 objects, 20% without GALEX, at the small test cutout sizes."""
    return write_synthetic_dataset(tmp_path_factory.mktemp("data") / "synthetic.h5", 64, seed=0)
