"""Combining several reprojected tiles of one band into one image.

unwise.me answers a position near a tile edge with every tile whose box overlaps it, each
clipped to its tile, so one band arrives as several partial images. After each is reprojected
onto the object's grid they are merged here: pixels covered by one tile take its value, pixels
covered by several take the inverse-variance-weighted mean (plain mean without variances).
Overlapping unWISE tiles are co-adds of largely the same exposures, so the merged inverse
variance is the best single tile's rather than their sum.
"""

from __future__ import annotations

import numpy as np

__all__ = ["stitch_tiles"]


def stitch_tiles(
    image: np.ndarray, valid: np.ndarray, ivar: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Merge ``T`` reprojected tiles of one band on the same grid.

    Parameters
    ----------
    image, valid, ivar : ndarray
        ``(T, H, W)`` arrays as `Reprojected` holds them (image 0 and ivar 0 where not valid).

    Returns
    -------
    image, valid, ivar : ndarray
        ``(H, W)`` float32, bool, float32.
    """
    if image.shape[0] == 1:
        return image[0], valid[0], ivar[0]
    known = (ivar > 0) | ~valid
    weights = np.where(valid, ivar if known.all() else 1.0, 0.0)
    total = weights.sum(axis=0)
    merged_valid = valid.any(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        merged = np.where(merged_valid, (weights * image).sum(axis=0) / total, 0.0)
    merged_ivar = np.where(merged_valid, ivar.max(axis=0), 0.0)
    return merged.astype(np.float32), merged_valid, merged_ivar.astype(np.float32)
