"""Shared cutouts for neighbours: one large cutout per group of nearby objects, cut locally.

Objects are grouped on a grid of square cells (declination bands, right-ascension cells
scaled by cos dec); the cell size is the candidate that minimises bytes x requests over the
objects still to fetch, per-object fetching (cell 0) included, so a sparse catalogue keeps one
request per object. Each group is fetched once per survey (and band) with a cutout covering
every member's window, and every member's product is cut from it with the same pixel grid,
WCS keywords and units a per-object request would have given (`mantis.fetch` survey modules
hold the per-survey cutting). The cache and manifest stay per object; the group answers are
kept under ``<cache>/groups/<survey>/`` so that an interrupted run does not ask again.
"""

from __future__ import annotations

import hashlib
import io
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mantis.exceptions import ConfigError
from mantis.fetch._base import PlannedRequest, SkyObject
from mantis.fetch._client import HttpClient

if TYPE_CHECKING:
    from astropy.io import fits
    from astropy.wcs import WCS

__all__ = [
    "GroupFiles",
    "GroupSettings",
    "GroupWindow",
    "choose_cell",
    "fetch_in_groups",
    "group_window",
    "header_wcs",
    "plan_groups",
    "quiet_fits_open",
]

_MARGIN_FRACTION = 0.02  # native grids are tilted a little against north: pad the extent
_MARGIN_PIXELS = 4


@dataclass(frozen=True)
class GroupSettings:
    """The ``groups`` entry of ``configs/fetch.yaml``.

    Attributes
    ----------
    enabled : bool
        Fetch shared cutouts for neighbours.
    cells_arcsec : tuple of float
        Candidate cell sizes; 0 (one object per request) is always a candidate.
    max_pixels : dict of str to int
        Largest group cutout side per survey, native pixels.
    keep_files : bool
        Keep the group answers in the cache (an interrupted run reuses them).
    """

    enabled: bool = False
    cells_arcsec: tuple[float, ...] = (60.0, 120.0, 240.0)
    max_pixels: dict[str, int] = field(
        default_factory=lambda: {"ps1": 1600, "unwise": 512, "galex": 512}
    )
    keep_files: bool = True

    @classmethod
    def from_config(cls, config: dict[str, Any] | None) -> GroupSettings:
        """Read and check the ``groups`` mapping (missing keys keep their defaults)."""
        config = dict(config or {})
        unknown = set(config) - {"enabled", "cells_arcsec", "max_pixels", "keep_files"}
        if unknown:
            raise ConfigError(
                f"unknown groups setting(s) {sorted(unknown)}; allowed: enabled, cells_arcsec, "
                "max_pixels, keep_files"
            )
        defaults = cls()
        cells = tuple(float(c) for c in config.get("cells_arcsec", defaults.cells_arcsec))
        if any(not math.isfinite(c) or c < 0 for c in cells):
            raise ConfigError(f"groups.cells_arcsec must hold sizes >= 0, got {list(cells)!r}")
        max_pixels = {**defaults.max_pixels, **dict(config.get("max_pixels") or {})}
        for name, value in max_pixels.items():
            if int(value) != value or value < 1:
                raise ConfigError(
                    f"groups.max_pixels.{name} must be an integer >= 1, got {value!r}"
                )
        return cls(
            bool(config.get("enabled", defaults.enabled)),
            cells,
            {k: int(v) for k, v in max_pixels.items()},
            bool(config.get("keep_files", defaults.keep_files)),
        )


def _cell_keys(ra: np.ndarray, dec: np.ndarray, cell_deg: float) -> np.ndarray:
    band = np.floor((dec + 90.0) / cell_deg)
    band_dec = np.clip(-90.0 + (band + 0.5) * cell_deg, -89.9, 89.9)
    per_band = np.maximum(np.floor(360.0 * np.cos(np.radians(band_dec)) / cell_deg), 1.0)
    column = np.floor((ra % 360.0) / 360.0 * per_band)
    return band * 1e7 + column


def plan_groups(objects: Sequence[SkyObject], cell_deg: float) -> list[list[SkyObject]]:
    """Objects sharing a grid cell of side ``cell_deg``, groups in order of first member.

    A cell size of 0 gives one group per object.
    """
    if cell_deg <= 0 or len(objects) < 2:
        return [[o] for o in objects]
    ra = np.array([o.ra for o in objects])
    dec = np.array([o.dec for o in objects])
    _, first, inverse = np.unique(_cell_keys(ra, dec, cell_deg), return_index=True,
                                  return_inverse=True)  # fmt: skip
    order = np.argsort(first[inverse], kind="stable")
    groups: list[list[SkyObject]] = []
    last = None
    for i in order:
        if inverse[i] != last:
            groups.append([])
            last = inverse[i]
        groups[-1].append(objects[i])
    return groups


@dataclass(frozen=True)
class GroupWindow:
    """Centre and side of a group cutout.

    Attributes
    ----------
    ra, dec : float
        Centre of the members' bounding box, degrees.
    side : int
        Cutout side in native pixels: the members' extent plus one object window and a margin.
    """

    ra: float
    dec: float
    side: int


def group_window(
    members: Sequence[SkyObject], scale_arcsec: float, window_pixels: int
) -> GroupWindow:
    """Smallest square cutout (with a margin) holding every member's window."""
    ra = np.array([o.ra for o in members])
    dec = np.array([o.dec for o in members])
    dra = (ra - ra[0] + 180.0) % 360.0 - 180.0
    dec_c = 0.5 * (dec.min() + dec.max())
    ra_c = (ra[0] + 0.5 * (dra.min() + dra.max())) % 360.0
    cosd = math.cos(math.radians(dec_c))
    extent_deg = max((dra.max() - dra.min()) * cosd, dec.max() - dec.min())
    extent_pix = extent_deg * 3600.0 / scale_arcsec * (1.0 + _MARGIN_FRACTION)
    side = math.ceil(extent_pix) + window_pixels + _MARGIN_PIXELS
    return GroupWindow(float(ra_c), float(dec_c), side if len(members) > 1 else window_pixels)


def choose_cell(
    objects: Sequence[SkyObject],
    cells_deg: Sequence[float],
    scale_arcsec: float,
    window_pixels: int,
    max_pixels: int,
) -> float:
    """Cell size (degrees; 0 = per object) minimising bytes x requests for ``objects``.

    Bytes are counted as the pixels of every group cutout, requests as the groups; a candidate
    whose largest group would exceed ``max_pixels`` is not considered.
    """
    n = len(objects)
    best, best_cost = 0.0, float(n) * n * window_pixels**2
    for cell in sorted(c for c in cells_deg if c > 0):
        groups = plan_groups(objects, cell)
        sides = [group_window(g, scale_arcsec, window_pixels).side for g in groups]
        if max(sides, default=0) > max_pixels:
            continue
        cost = float(len(groups)) * float(sum(s * s for s in sides))
        if cost < best_cost:
            best, best_cost = cell, cost
    return best


def quiet_fits_open(body: bytes) -> fits.HDUList:
    """Open FITS bytes without astropy's header-fixing chatter."""
    from astropy.io import fits

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fits.open(io.BytesIO(body), lazy_load_hdus=False)


def header_wcs(header: fits.Header) -> WCS:
    """Celestial WCS of a cutout header (legacy ``PC00i00j`` keywords read quietly)."""
    from astropy.wcs import WCS

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return WCS(header, naxis=2)


def centred_corner(wcs: WCS, ra: float, dec: float, size: int) -> tuple[int, int]:
    """First column and row of the ``size`` window centred on the pixel holding (ra, dec)."""
    x, y = wcs.all_world2pix(ra, dec, 0)
    return round(float(x)) - size // 2, round(float(y)) - size // 2


class GroupFiles:
    """Group answers kept beside the cache, keyed by the request.

    Parameters
    ----------
    cache : CutoutCache
        The per-object cache; group files go to ``<root>/groups/<survey>/``.
    keep : bool
        Write answers to disk (and reuse those found there).
    """

    def __init__(self, cache: Any, *, keep: bool) -> None:
        self.cache = cache
        self.keep = keep

    def path(self, survey: str, request: PlannedRequest) -> Path:
        """Where the answer to ``request`` is kept."""
        key = repr((request.method, request.url, sorted(request.params.items())))
        digest = hashlib.sha256(key.encode()).hexdigest()[:24]
        return Path(self.cache.root) / "groups" / survey / f"{digest}.bin"

    async def body(
        self, fetcher: Any, client: HttpClient, request: PlannedRequest, **kwargs: Any
    ) -> bytes:
        """Return the answer's body: kept by an earlier run, or sent now (and kept)."""
        path = self.path(fetcher.survey, request)
        if self.keep and path.is_file():
            return path.read_bytes()
        reply = await fetcher.send(client, request, **kwargs)
        if self.keep:
            self.cache._write_file(path, reply.body)
        return reply.body


async def fetch_in_groups(
    fetcher: Any,
    client: HttpClient,
    cache: Any,
    todo: Sequence[SkyObject],
    n_workers: int,
    record: Any,
) -> None:
    """Fetch ``todo`` group by group; ``record(obj, product_or_error)`` stores each outcome."""
    import asyncio

    from mantis.surveys import survey as survey_info

    settings = fetcher.groups
    scale = survey_info(fetcher.survey).pixel_scale
    max_pixels = int(settings.max_pixels.get(fetcher.survey, fetcher.pixels))
    cells = [c / 3600.0 for c in settings.cells_arcsec]
    cell = choose_cell(todo, cells, scale, fetcher.pixels, max_pixels)
    groups = plan_groups(todo, cell)
    fetcher.prepare([o for g in groups for o in g])
    files = GroupFiles(cache, keep=settings.keep_files)
    pending = iter(groups)

    async def worker() -> None:
        for members in pending:
            for obj in members:
                cache.begin(obj.id, fetcher.survey)
            outcomes = await fetcher.fetch_group(client, members, files)
            for obj in members:
                record(obj, outcomes[obj.id])

    await asyncio.gather(*(worker() for _ in range(min(n_workers, max(len(groups), 1)))))
