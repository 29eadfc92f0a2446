"""Reference reprojection with the `reproject` package (exact spherical-polygon overlaps).

`reproject.reproject_exact` returns, for each output pixel, the overlap-weighted mean of the
input pixels (a surface brightness in input-pixel units) and the fraction of the output pixel
the input covers. Stored values are flux per output pixel, so the mean is multiplied back by
the covered fraction and by the ratio of output to input pixel areas at the object. It is slow
and used to check the fast path (`reproject_fast`), never in production builds by default.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mantis.stack._grids import TanProjection
from mantis.stack._reproject_fast import Reprojected
from mantis.stack._units import Plane

__all__ = ["reproject_planes_reference"]


def _area_ratio(source: TanProjection, target: TanProjection, shape: tuple[int, int]) -> float:
    """Output pixel area over input pixel area at the centre of the output grid (astropy)."""
    centre = ((shape[1] - 1) / 2.0, (shape[0] - 1) / 2.0)
    corners = np.array([[-0.5, -0.5], [0.5, -0.5], [0.5, 0.5], [-0.5, 0.5]]) + centre
    world = target.to_wcs().pixel_to_world_values(corners[:, 0], corners[:, 1])
    x, y = source.to_wcs().world_to_pixel_values(*world)
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def reproject_planes_reference(
    planes: Sequence[Plane],
    targets: Sequence[TanProjection],
    shape: tuple[int, int],
    *,
    min_valid_fraction: float = 0.999,
) -> Reprojected:
    """Reproject each plane onto its target grid with `reproject.reproject_exact`.

    Same parameters and result as `mantis.stack._reproject_fast.reproject_planes`.
    """
    from reproject import reproject_exact

    if len(planes) != len(targets):
        raise ValueError(f"got {len(planes)} planes but {len(targets)} target projections")
    n = len(planes)
    image = np.zeros((n, *shape), dtype=np.float32)
    valid = np.zeros((n, *shape), dtype=bool)
    ivar = np.zeros((n, *shape), dtype=np.float32)
    for k, (plane, target) in enumerate(zip(planes, targets, strict=True)):
        variance = np.zeros(plane.shape)
        if plane.ivar is not None:
            good = plane.valid & (plane.ivar > 0)
            variance[good] = 1.0 / plane.ivar[good]
        cube = np.stack([plane.flux, plane.valid.astype(float), variance])
        mean, covered = reproject_exact(
            (cube, plane.projection.to_wcs()),
            target.to_wcs(),
            shape_out=shape,
            return_footprint=True,
        )
        mean = np.nan_to_num(mean) * covered
        ratio = _area_ratio(plane.projection, target, shape)
        good = mean[1] >= min_valid_fraction
        valid[k] = good
        image[k] = np.where(good, mean[0] * ratio, 0.0)
        if plane.ivar is not None:
            var_out = mean[2] * ratio * min(ratio, 1.0)
            with np.errstate(divide="ignore"):
                ivar[k] = np.where(good & (var_out > 0), 1.0 / var_out, 0.0)
    return Reprojected(image, valid, ivar)
