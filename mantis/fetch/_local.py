"""Products cut from a local survey mirror (``local:DIR``) instead of fetched: no HTTP at all.

The mirror holds the survey files in their native names and layouts (``mantis sky mirror``
writes one from the simulated sky):

* PS1 stacks ``rings.v3.skycell/PPPP/SSS/rings.v3.skycell.PPPP.SSS.stk.B.unconv.fits`` (image
  in the primary HDU or tile-compressed in HDU 1): the skycell that holds a position is the one
  whose file has it farthest from its edges (the skycell's own area, not a neighbour's
  overlap); the product is fitscut's: the window centred on the pixel holding the position,
  NaN beyond the skycell, header shifted.
* unWISE tiles ``unwise-coadds/fulldepth/XXX/<coadd>/unwise-<coadd>-wN-*.fits[.gz]``: the
  product is unwise.me's tar.gz, every tile the box overlaps clipped to the tile, nearest first.

Files are indexed on first use (headers only) and kept open; cutting runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import gzip
import math
import re
import threading
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mantis.exceptions import ConfigError, NoCoverageError
from mantis.fetch._base import CutoutFetcher, PlannedRequest, Product, SkyObject
from mantis.fetch._client import HttpClient
from mantis.fetch._groups import centred_corner, header_wcs, quiet_fits_open
from mantis.fetch._shared import _tar_bytes, _Template
from mantis.surveys import survey as survey_info

__all__ = ["LOCAL_PREFIX", "LocalPanStarrsFetcher", "LocalUnwiseFetcher", "local_root"]

LOCAL_PREFIX = "local:"
_PS1_NAME = re.compile(r"^rings\.v3\.skycell\.(\d{4})\.(\d{3})\.stk\.([grizy])\.unconv\.fits$")
_UNWISE_NAME = re.compile(r"^unwise-(\w{8})-w(\d)-(img-m\.fits|invvar-m\.fits\.gz|n-m\.fits\.gz|"
                          r"std-m\.fits\.gz)$")  # fmt: skip
_UNWISE_ORDER = ("img-m.fits", "invvar-m.fits.gz", "n-m.fits.gz", "std-m.fits.gz")
_OPEN_FILES = 64  # open mirror files kept per fetcher


def local_root(base_url: str) -> Path:
    """Return the folder of a ``local:DIR`` source.

    Raises
    ------
    ConfigError
        If the folder does not exist.
    """
    root = Path(base_url[len(LOCAL_PREFIX) :]).expanduser()
    if not root.is_dir():
        raise ConfigError(f"local mirror {base_url!r}: {str(root)!r} is not a folder")
    return root


class _OpenFiles:
    """Mirror files kept open (least recently used closed first); thread-safe."""

    def __init__(self) -> None:
        self._open: OrderedDict[Path, tuple[Any, Any]] = OrderedDict()
        self._templates: dict[Path, _Template] = {}
        self._lock = threading.Lock()

    def image_hdu(self, path: Path) -> Any:
        """Return the image HDU of a mirror file (tile-compressed ones are read by sections)."""
        from astropy.io import fits

        with self._lock:
            if path in self._open:
                self._open.move_to_end(path)
                return self._open[path][1]
            if path.suffix == ".gz":
                hdul = quiet_fits_open(gzip.decompress(path.read_bytes()))
            else:
                hdul = fits.open(path, memmap=True)
            hdu = next(h for h in hdul if h.is_image and h.header.get("NAXIS", 0) >= 2)
            self._open[path] = (hdul, hdu)
            while len(self._open) > _OPEN_FILES:
                self._open.popitem(last=False)[1][0].close()
            return hdu

    def template(self, path: Path, pixels: np.ndarray) -> _Template:
        """Return the header template of a file's cutouts (built once per file)."""
        with self._lock:
            cached = self._templates.get(path)
        if cached is None:
            cached = _primary_template(self.image_hdu(path), pixels)
            with self._lock:
                self._templates[path] = cached
        return cached

    def close(self) -> None:
        """Close every open file."""
        with self._lock:
            while self._open:
                self._open.popitem()[1][0].close()


def _window(hdu: Any, x0: int, y0: int, width: int, height: int, fill: float) -> np.ndarray:
    """Pixels ``[y0, y0 + height) x [x0, x0 + width)`` of an image, ``fill`` beyond it."""
    ny, nx = hdu.shape
    out = np.full((height, width), fill, dtype=hdu.section[0:1, 0:1].dtype)
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x0 + width, nx), min(y0 + height, ny)
    if cx1 > cx0 and cy1 > cy0:
        out[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0] = hdu.section[cy0:cy1, cx0:cx1]
    return out


class _LocalFetcher(CutoutFetcher):
    """Base of the mirror readers: nothing is planned or sent."""

    def __init__(self, endpoint: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(endpoint, **kwargs)
        self.root = local_root(self.base_url)
        self.files = _OpenFiles()
        self._index: Any = None
        self._index_lock = threading.Lock()

    def build_requests(self, objects: Sequence[SkyObject]) -> list[PlannedRequest]:
        """None: a local mirror is read, not asked."""
        return []

    def close(self) -> None:
        """Close the mirror files (the fetch calls this when it ends)."""
        self.files.close()

    def index(self) -> Any:
        """Return the mirror's files and their WCS, read once."""
        with self._index_lock:
            if self._index is None:
                self._index = self.build_index()
            return self._index

    def build_index(self) -> Any:
        raise NotImplementedError

    def cut(self, obj: SkyObject) -> Product:
        raise NotImplementedError

    async def fetch_object(self, client: HttpClient, obj: SkyObject) -> Product:
        """Cut the product from the mirror in a worker thread."""
        return await asyncio.to_thread(self.cut, obj)


class LocalPanStarrsFetcher(_LocalFetcher):
    """PS1 fitscut products cut from stack skycell files."""

    survey = "ps1"

    def __init__(self, endpoint: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(endpoint, **kwargs)
        self.bands = tuple(self.options.get("bands", survey_info("ps1").bands))

    def build_index(self) -> list[dict]:
        """One entry per skycell: its WCS, shape and file per band."""
        cells: dict[str, dict] = {}
        for path in sorted(self.root.glob("rings.v3.skycell/*/*/*.fits")):
            match = _PS1_NAME.match(path.name)
            if not match:
                continue
            cell = cells.setdefault(f"{match[1]}.{match[2]}", {"files": {}})
            cell["files"][match[3]] = path
            if "wcs" not in cell:
                hdu = self.files.image_hdu(path)
                cell["wcs"], cell["shape"] = header_wcs(hdu.header), hdu.shape
        return list(cells.values())

    def _skycell(self, obj: SkyObject) -> dict | None:
        best, best_margin = None, -math.inf
        for cell in self.index():
            x, y = cell["wcs"].all_world2pix(obj.ra, obj.dec, 0)
            ny, nx = cell["shape"]
            margin = min(float(x) + 0.5, nx - 0.5 - float(x), float(y) + 0.5, ny - 0.5 - float(y))
            if margin > best_margin:
                best, best_margin = cell, margin
        return best if best_margin > 0 else None

    def cut(self, obj: SkyObject) -> Product:
        """Cut the per-band fitscut FITS files of one object."""
        from mantis.fetch._panstarrs import ALL_NAN

        cell = self._skycell(obj)
        if cell is None or not any(b in cell["files"] for b in self.bands):
            raise NoCoverageError(
                f"no PS1 skycell of the mirror {str(self.root)!r} holds ra={obj.ra}, dec={obj.dec}"
            )
        files = {}
        for band in self.bands:
            if band not in cell["files"]:
                continue
            hdu = self.files.image_hdu(cell["files"][band])
            x0, y0 = centred_corner(cell["wcs"], obj.ra, obj.dec, self.pixels)
            pixels = _window(hdu, x0, y0, self.pixels, self.pixels, np.nan)
            if np.isfinite(pixels).any():
                template = self.files.template(cell["files"][band], pixels)
                files[f".{band}.fits"] = template.render(pixels, x0, y0)
        missing = [b for b in self.bands if f".{b}.fits" not in files]
        note = f"no coverage in band(s) {''.join(missing)}: {ALL_NAN}" if missing else None
        if not files:
            raise NoCoverageError(note)
        return Product(files, note)


class LocalUnwiseFetcher(_LocalFetcher):
    """unwise.me tar.gz products cut from coadd tiles."""

    survey = "unwise"

    def __init__(self, endpoint: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(endpoint, **kwargs)
        self.bands = str(self.options.get("bands", "12"))

    def build_index(self) -> list[dict]:
        """One entry per tile: centre, WCS, shape and files per band."""
        tiles: dict[str, dict] = {}
        for path in sorted(self.root.glob("unwise-coadds/fulldepth/*/*/unwise-*")):
            match = _UNWISE_NAME.match(path.name)
            if not match:
                continue
            tile = tiles.setdefault(match[1], {"coadd_id": match[1], "files": {}})
            tile["files"][(match[2], match[3])] = path
            if match[3] == "img-m.fits":
                hdu = self.files.image_hdu(path)
                tile["wcs"], tile["shape"] = header_wcs(hdu.header), hdu.shape
                tile["centre"] = (float(hdu.header["CRVAL1"]), float(hdu.header["CRVAL2"]))
        return [t for t in tiles.values() if "wcs" in t]

    def cut(self, obj: SkyObject) -> Product:
        """Cut the tar.gz of every tile the object's box overlaps, nearest tile first."""
        size = self.pixels
        kept = []
        for tile in self.index():
            x0, y0 = centred_corner(tile["wcs"], obj.ra, obj.dec, size)
            ny, nx = tile["shape"]
            cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x0 + size, nx), min(y0 + size, ny)
            if cx1 <= cx0 or cy1 <= cy0:
                continue
            members = []
            for band in self.bands:
                for suffix in _UNWISE_ORDER:
                    path = tile["files"].get((band, suffix))
                    if path is None:
                        continue
                    hdu = self.files.image_hdu(path)
                    pixels = hdu.section[cy0:cy1, cx0:cx1]
                    template = self.files.template(path, pixels)
                    encoded = template.render(np.asarray(pixels), cx0, cy0)
                    if suffix.endswith(".gz"):
                        encoded = gzip.compress(encoded, compresslevel=6, mtime=0)
                    members.append((path.name, encoded))
            ra0, dec0 = tile["centre"]
            kept.append((_distance(obj, ra0, dec0), tile["coadd_id"], members))
        if not kept:
            raise NoCoverageError(f"no unWISE tile of the mirror holds ra={obj.ra}, dec={obj.dec}")
        kept.sort(key=lambda item: (item[0], item[1]))
        return Product({".tar.gz": _tar_bytes([m for _, _, ms in kept for m in ms])})


def _primary_template(hdu: Any, pixels: np.ndarray) -> _Template:
    """Header template of a cutout answered as a primary HDU, from a file's image HDU.

    A tile-compressed skycell keeps its image in an extension; fitscut answers a primary HDU.
    """
    from astropy.io import fits

    if not isinstance(hdu, fits.CompImageHDU) and isinstance(hdu, fits.PrimaryHDU):
        return _Template(hdu.header)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        header = fits.PrimaryHDU(pixels[:1, :1], header=hdu.header.copy()).header
    return _Template(header)


def _distance(obj: SkyObject, ra: float, dec: float) -> float:
    r1, d1, r2, d2 = (math.radians(v) for v in (obj.ra, obj.dec, ra, dec))
    cos = math.sin(d1) * math.sin(d2) + math.cos(d1) * math.cos(d2) * math.cos(r1 - r2)
    return math.acos(max(-1.0, min(1.0, cos)))
