"""Units, masks, reprojection, E(B-V) and the HDF5 dataset: raw cutouts to training arrays."""

from mantis.stack._build import (
    BuildSummary,
    build_dataset,
    build_objects,
    build_objects_with_report,
    resolve_build_config,
)
from mantis.stack._dataset import (
    SPLITS,
    DatasetError,
    DatasetReader,
    DatasetWriter,
    assign_splits,
    check_split,
    healpix_cells,
)
from mantis.stack._ebv import sfd_ebv
from mantis.stack._gallery import render_gallery
from mantis.stack._grids import EARLY, Grid, TanProjection, grids_from_config, object_projection
from mantis.stack._reproject_fast import Reprojected, reproject_planes, reproject_planes_to_grids
from mantis.stack._stitch import stitch_tiles
from mantis.stack._units import Plane, ProductError, read_galex, read_product, read_ps1, read_unwise

__all__ = [
    "EARLY",
    "SPLITS",
    "BuildSummary",
    "DatasetError",
    "DatasetReader",
    "DatasetWriter",
    "Grid",
    "Plane",
    "ProductError",
    "Reprojected",
    "TanProjection",
    "assign_splits",
    "build_dataset",
    "build_objects",
    "build_objects_with_report",
    "check_split",
    "grids_from_config",
    "healpix_cells",
    "object_projection",
    "read_galex",
    "read_product",
    "read_ps1",
    "read_unwise",
    "render_gallery",
    "reproject_planes",
    "reproject_planes_to_grids",
    "resolve_build_config",
    "sfd_ebv",
    "stitch_tiles",
]
