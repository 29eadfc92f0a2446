"""Each survey's shared cutout: the group request, and every member's product cut from it.

A member's product is the window a per-object request would have been answered with, taken
from the group cutout's pixel grid, with the group header's WCS shifted to the window
(``CRPIX`` minus the window's corner; ``IMAGEW``/``IMAGEH`` where the service writes them):

* PS1 (fitscut) and unWISE cut from the stored skycell or tile, so the window is the same
  pixels, header and units as a per-object answer.
* GALEX (the Legacy Survey viewer) resamples onto a grid centred on each request; a member's
  window of the group cube keeps the group's tangent point, with the member within half a pixel
  of the window centre. The build stage reprojects every product by its WCS, so the pixels it
  sees agree with a per-object answer to within that resampling.

A member whose window does not lie inside the group cutout (it cannot happen by construction,
but a service may centre differently) is fetched on its own.
"""

from __future__ import annotations

import asyncio
import functools
import gzip
import io
import math
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mantis.exceptions import FetchError, NoCoverageError
from mantis.fetch._base import Product, SkyObject
from mantis.fetch._client import HttpClient, RequestFailedError
from mantis.fetch._groups import centred_corner, group_window, header_wcs, quiet_fits_open
from mantis.surveys import survey as survey_info

__all__ = ["cut_unwise_tar", "fetch_galex_shared", "fetch_ps1_shared", "fetch_unwise_shared"]

_ALL_NAN = "all-NaN cutout"


def _window(data: np.ndarray, x0: int, y0: int, width: int, height: int) -> np.ndarray | None:
    ny, nx = data.shape[-2:]
    if x0 < 0 or y0 < 0 or x0 + width > nx or y0 + height > ny:
        return None
    return data[..., y0 : y0 + height, x0 : x0 + width]


class _Template:
    """A group header rendered once; a member's header changes only its axis and WCS cards.

    Rendering a header card by card through astropy for every member of a large group costs
    more than everything else; only ``NAXISn``, ``CRPIXn`` and ``IMAGEW``/``IMAGEH`` differ
    between members, and those cards are formatted by astropy exactly as its writer would.
    The group's values and comments of those cards are read once (astropy's card accessors
    are slow), and each distinct card is formatted once (`_card_image`).
    """

    def __init__(self, header: Any) -> None:
        self.images = [card.image for card in header.cards]
        self.index = {card.keyword: i for i, card in enumerate(header.cards)}
        self.crpix = (header["CRPIX1"], header["CRPIX2"])
        self.comments = {key: header.comments[key] for key in self.index if key in _MEMBER_KEYS}

    def render(self, data: np.ndarray, x0: int, y0: int) -> bytes:
        """Return the member's HDU: shifted header and the window's pixels, FITS-padded."""
        height, width = data.shape[-2:]
        updates = {"CRPIX1": self.crpix[0] - x0, "CRPIX2": self.crpix[1] - y0}
        for axis, length in enumerate(reversed(data.shape), start=1):
            updates[f"NAXIS{axis}"] = length
        if "IMAGEW" in self.index:
            updates.update(IMAGEW=width, IMAGEH=height)
        images = list(self.images)
        for key, value in updates.items():
            images[self.index[key]] = _card_image(key, value, self.comments[key])
        text = "".join(images) + "END".ljust(80)
        text += " " * ((-len(text)) % 2880)
        raw = np.ascontiguousarray(data, dtype=data.dtype.newbyteorder(">")).tobytes()
        return text.encode("ascii") + raw + b"\0" * ((-len(raw)) % 2880)


_MEMBER_KEYS = frozenset({"CRPIX1", "CRPIX2", "NAXIS1", "NAXIS2", "NAXIS3", "IMAGEW", "IMAGEH"})


@functools.lru_cache(maxsize=4096, typed=True)  # typed: 100 and 100.0 are different cards
def _card_image(key: str, value: Any, comment: str) -> str:
    """Return the 80 characters astropy writes for ``key = value / comment``."""
    from astropy.io.fits import Card

    return Card(key, value, comment).image


async def _each_alone(fetcher: Any, client: HttpClient, objects: Sequence[SkyObject], fetch_one):
    outcomes: dict[str, Product | Exception] = {}
    for obj in objects:
        try:
            outcomes[obj.id] = await fetch_one(obj)
        except (NoCoverageError, FetchError) as err:
            outcomes[obj.id] = err
    return outcomes


def _max_side(fetcher: Any) -> int:
    return int(fetcher.groups.max_pixels.get(fetcher.survey, fetcher.pixels))


async def _shared_body(
    fetcher: Any, client: HttpClient, members: Sequence[SkyObject], files: Any, **send: Any
) -> tuple[Any, SkyObject | None, int]:
    """``(body, centre, side)`` of a group's one request; ``(outcomes, None, 0)`` otherwise.

    A single member or a group too wide for one cutout is fetched object by object; a group
    request that fails (or finds no coverage) gives every member that outcome.
    """
    window = group_window(members, survey_info(fetcher.survey).pixel_scale, fetcher.pixels)
    if len(members) == 1 or window.side > _max_side(fetcher):
        alone = lambda obj: fetcher.fetch_object(client, obj)  # noqa: E731
        return await _each_alone(fetcher, client, members, alone), None, 0
    centre = SkyObject("group", window.ra, window.dec)
    (request,) = fetcher.build_requests([centre], size=window.side)
    try:
        return await files.body(fetcher, client, request, **send), centre, window.side
    except (NoCoverageError, FetchError) as err:
        return {o.id: err for o in members}, None, 0


# ------------------------------------------------------------------------------------- PS1


async def fetch_ps1_shared(
    fetcher: Any,
    client: HttpClient,
    entries: list[tuple[SkyObject, list[dict[str, str]]]],
    files: Any,
) -> dict[str, Product | Exception]:
    """PS1 members on the same skycell files: one fitscut per band, cut per member."""
    from mantis.fetch._panstarrs import check_ps1_cutout

    members = [obj for obj, _ in entries]
    rows_of = {obj.id: ordered for obj, ordered in entries}
    window = group_window(members, survey_info("ps1").pixel_scale, fetcher.pixels)
    alone = lambda obj: fetcher.fetch_bands(client, obj, rows_of[obj.id])  # noqa: E731
    if len(members) == 1 or window.side > _max_side(fetcher):
        return await _each_alone(fetcher, client, members, alone)
    ordered = entries[0][1]
    centre = SkyObject("group", window.ra, window.dec)
    requests = fetcher.cutout_requests(centre, ordered, size=window.side)
    bodies = await asyncio.gather(
        *(files.body(fetcher, client, r, validate=check_ps1_cutout) for r in requests),
        return_exceptions=True,
    )
    size = fetcher.pixels
    cut: dict[str, dict[str, bytes]] = {o.id: {} for o in members}
    empty: dict[str, list[str]] = {o.id: [] for o in members}
    outside: set[str] = set()
    for row, body in zip(ordered, bodies, strict=True):
        band = row["filter"]
        if isinstance(body, RequestFailedError) and body.reason == _ALL_NAN:
            for obj in members:
                empty[obj.id].append(band)
            continue
        if isinstance(body, FetchError):  # the band failed for every member
            return {o.id: body for o in members}
        if isinstance(body, BaseException):
            raise body
        with quiet_fits_open(body) as hdul:
            header, data = hdul[0].header, hdul[0].data
            wcs, template = header_wcs(header), _Template(header)
            for obj in members:
                x0, y0 = centred_corner(wcs, obj.ra, obj.dec, size)
                pixels = _window(data, x0, y0, size, size)
                if pixels is None:
                    outside.add(obj.id)
                elif not np.isfinite(pixels).any():
                    empty[obj.id].append(band)
                else:
                    cut[obj.id][f".{band}.fits"] = template.render(pixels, x0, y0)
    outcomes: dict[str, Product | Exception] = {}
    for obj in members:
        if obj.id in outside:
            continue
        try:
            outcomes[obj.id] = fetcher.assemble(cut[obj.id], empty[obj.id])
        except NoCoverageError as err:
            outcomes[obj.id] = err
    outcomes.update(
        await _each_alone(fetcher, client, [o for o in members if o.id in outside], alone)
    )
    return outcomes


# ---------------------------------------------------------------------------------- unWISE


def _tar_members(body: bytes) -> list[tuple[str, bytes]]:
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(body)), mode="r:") as tar:
        return [(m.name, tar.extractfile(m).read()) for m in tar if m.isfile()]


def _tar_bytes(members: list[tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with (
        gzip.GzipFile(fileobj=buffer, mode="wb", compresslevel=6, mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.USTAR_FORMAT) as tar,
    ):
        for name, payload in members:
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(payload))
    return buffer.getvalue()


def _angle_deg(ra1: float, dec1: float, ra2: float, dec2: float) -> float:
    r1, d1, r2, d2 = (math.radians(v) for v in (ra1, dec1, ra2, dec2))
    cos = math.sin(d1) * math.sin(d2) + math.cos(d1) * math.cos(d2) * math.cos(r1 - r2)
    return math.degrees(math.acos(max(-1.0, min(1.0, cos))))


@dataclass
class _TileFiles:
    """One tile's members of a group answer: names, headers, pixels and the shared WCS."""

    coadd_id: str
    names: list[str] = field(default_factory=list)
    headers: list[Any] = field(default_factory=list)
    templates: list[_Template] = field(default_factory=list)
    pixels: list[np.ndarray] = field(default_factory=list)
    wcs: Any = None


def parse_unwise_group(body: bytes) -> list[_TileFiles]:
    """Split a group's tar.gz into its tiles (each member opened once)."""
    tiles: dict[str, _TileFiles] = {}
    for name, payload in _tar_members(body):
        tile = tiles.setdefault(name.split("-")[1], _TileFiles(name.split("-")[1]))
        raw = gzip.decompress(payload) if name.endswith(".gz") else payload
        with quiet_fits_open(raw) as hdul:
            tile.names.append(name)
            tile.headers.append(hdul[0].header)
            tile.templates.append(_Template(hdul[0].header))
            tile.pixels.append(hdul[0].data)
        if tile.wcs is None:
            tile.wcs = header_wcs(tile.headers[0])
    return list(tiles.values())


def cut_unwise_tar(
    tiles: list[_TileFiles], obj: SkyObject, size: int, centre: SkyObject, group_side: int
) -> bytes | None:
    """One member's unWISE tar.gz cut from a group's tiles: nearest tile first, boxes clipped.

    Returns None when the member's box does not lie inside the group's (fetch it alone).
    """
    kept = []
    for tile in tiles:
        # the group's box and the member's, in this tile member's pixels
        gx0, gy0 = centred_corner(tile.wcs, centre.ra, centre.dec, group_side)
        x0, y0 = centred_corner(tile.wcs, obj.ra, obj.dec, size)
        if x0 < gx0 or y0 < gy0 or x0 + size > gx0 + group_side or y0 + size > gy0 + group_side:
            return None
        ny, nx = tile.pixels[0].shape
        cx0, cy0 = max(x0, 0), max(y0, 0)
        cx1, cy1 = min(x0 + size, nx), min(y0 + size, ny)
        if cx1 <= cx0 or cy1 <= cy0:
            continue  # the member's box misses this tile
        out = []
        for name, template, data in zip(tile.names, tile.templates, tile.pixels, strict=True):
            encoded = template.render(data[cy0:cy1, cx0:cx1], cx0, cy0)
            if name.endswith(".gz"):
                encoded = gzip.compress(encoded, compresslevel=6, mtime=0)
            out.append((name, encoded))
        head = tile.headers[0]
        distance = _angle_deg(obj.ra, obj.dec, head["CRVAL1"], head["CRVAL2"])
        kept.append((distance, tile.coadd_id, out))
    kept.sort(key=lambda item: (item[0], item[1]))
    return _tar_bytes([m for _, _, out in kept for m in out])


async def fetch_unwise_shared(
    fetcher: Any, client: HttpClient, members: Sequence[SkyObject], files: Any
) -> dict[str, Product | Exception]:
    """unWISE members: one ``cutout_fits`` for the group, each member's tiles cut from it."""
    from mantis.fetch._validate import check_unwise_tar

    body, centre, side = await _shared_body(
        fetcher, client, members, files, validate=check_unwise_tar
    )
    if centre is None:
        return body
    alone = lambda obj: fetcher.fetch_object(client, obj)  # noqa: E731
    outcomes: dict[str, Product | Exception] = {}
    later = []
    tiles = parse_unwise_group(body)
    for obj in members:
        cut = cut_unwise_tar(tiles, obj, fetcher.pixels, centre, side)
        if cut is None:
            later.append(obj)
        elif not check_unwise_tar(cut):
            outcomes[obj.id] = NoCoverageError(
                f"unwise.me returned no tile at ra={obj.ra}, dec={obj.dec}"
            )
        else:
            outcomes[obj.id] = Product({".tar.gz": cut})
    outcomes.update(await _each_alone(fetcher, client, later, alone))
    return outcomes


# ----------------------------------------------------------------------------------- GALEX


async def fetch_galex_shared(
    fetcher: Any, client: HttpClient, members: Sequence[SkyObject], files: Any
) -> dict[str, Product | Exception]:
    """GALEX members: one viewer cube for the group, each member's window cut from it."""
    from mantis.fetch._galex import galex_cube_is_empty

    body, centre, _ = await _shared_body(
        fetcher, client, members, files, validate=fetcher.check_cube,
        no_coverage_status=500, no_coverage_after=fetcher.no_coverage_after,
    )  # fmt: skip
    if centre is None:
        return body
    alone = lambda obj: fetcher.fetch_object(client, obj)  # noqa: E731
    size = fetcher.pixels
    outcomes: dict[str, Product | Exception] = {}
    later = []
    with quiet_fits_open(body) as hdul:
        wcs = header_wcs(hdul[0].header)
        templates = [_Template(hdu.header) for hdu in hdul[:2]]
        for obj in members:
            x, y = wcs.all_world2pix(obj.ra, obj.dec, 0)
            # the viewer puts the request at the middle of the grid, (size - 1) / 2
            x0, y0 = round(float(x) - (size - 1) / 2.0), round(float(y) - (size - 1) / 2.0)
            hdus = []
            for hdu, template in zip(hdul[:2], templates, strict=False):
                pixels = _window(hdu.data, x0, y0, size, size)
                if pixels is None:
                    break
                hdus.append(template.render(pixels, x0, y0))
            if len(hdus) < min(len(hdul), 2):
                later.append(obj)
                continue
            cube = b"".join(hdus)
            if galex_cube_is_empty(cube):
                outcomes[obj.id] = NoCoverageError(
                    f"GALEX cube all zeros at ra={obj.ra}, dec={obj.dec} (a gap)"
                )
            else:
                outcomes[obj.id] = Product({".fits": cube})
    outcomes.update(await _each_alone(fetcher, client, later, alone))
    return outcomes
