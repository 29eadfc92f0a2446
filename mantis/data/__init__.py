"""Loading the HDF5 dataset for training: Dataset, DataModule, augmentation, sampling."""

from mantis.data._datamodule import MantisDataModule
from mantis.data._dataset import (
    FUSIONS,
    H5Dataset,
    estimate_noise_sigma,
    image_groups,
    read_spec,
)
from mantis.data._sampler import balanced_sampler, redshift_balance
from mantis.data._transforms import (
    DIHEDRAL_ORDER,
    ArcsinhStretch,
    RandomDihedral,
    dihedral,
    dihedral_inverse,
)
from mantis.stack import SPLITS, DatasetError  # re-exported: the store's, not a copy

__all__ = [
    "DIHEDRAL_ORDER",
    "FUSIONS",
    "SPLITS",
    "ArcsinhStretch",
    "DatasetError",
    "H5Dataset",
    "MantisDataModule",
    "RandomDihedral",
    "balanced_sampler",
    "dihedral",
    "dihedral_inverse",
    "estimate_noise_sigma",
    "image_groups",
    "read_spec",
    "redshift_balance",
]
