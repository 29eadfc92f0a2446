"""Loading the HDF5 dataset for training: Dataset, DataModule, augmentation, sampling."""

from mantis.data._batches import SplitBatches, keep_batch
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
    dihedral_batch,
    dihedral_inverse,
    random_dihedral_elements,
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
    "SplitBatches",
    "balanced_sampler",
    "dihedral",
    "dihedral_batch",
    "dihedral_inverse",
    "estimate_noise_sigma",
    "image_groups",
    "keep_batch",
    "random_dihedral_elements",
    "read_spec",
    "redshift_balance",
]
