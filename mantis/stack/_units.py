"""Raw survey products to AB nanomaggies per pixel, with inverse variances and validity masks.

Each product is converted with its own header keywords through the conversions of
`mantis.surveys`: PS1 fitscut stacks with ``EXPTIME`` and ``FPA.ZP``, unWISE tiles with
``MAGZP`` plus the Vega-to-AB offsets, the viewer's GALEX cube (counts/s) with the GALEX AB zero
points. Every reader returns `Plane` objects, one per band and tile, so that reprojection and
stitching never see a survey's native format.
"""

from __future__ import annotations

import gzip
import io
import re
import tarfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.utils.exceptions import AstropyUserWarning

from mantis.exceptions import MantisError
from mantis.stack._grids import TanProjection
from mantis.surveys import (
    bands_of,
    galex_cps_to_nanomaggies,
    ps1_counts_to_nanomaggies,
    unwise_vega_to_ab_nanomaggies,
)

__all__ = [
    "Plane",
    "ProductError",
    "read_galex",
    "read_product",
    "read_ps1",
    "read_unwise",
]

_ASINH_A = 2.5 * np.log10(np.e)  # PS1 asinh compression scale (IPP wiki)
_UNWISE_MEMBER = re.compile(
    r"^unwise-(?P<coadd>[0-9a-z]+)-w(?P<band>\d)-(?P<kind>img-m|invvar-m|n-m|std-m)\.fits(\.gz)?$"
)
_GALEX_LETTERS = {"n": "NUV", "nuv": "NUV", "f": "FUV", "fuv": "FUV"}


class ProductError(MantisError):
    """A raw survey product is unreadable or lacks a keyword it needs."""


@dataclass
class Plane:
    """One band of one raw image, converted.

    Attributes
    ----------
    band : str
        Band name (``'g'``, ``'W1'``, ...).
    flux : ndarray
        ``(H, W)`` float32, AB nanomaggies per pixel; 0 where not valid.
    valid : ndarray
        ``(H, W)`` bool, True where the pixel holds data.
    ivar : ndarray or None
        ``(H, W)`` float32 inverse variance in nanomaggies^-2, or None if the product has none.
    projection : TanProjection
        Where the pixels lie on the sky.
    source : str
        File (and member) the plane came from, for messages.
    """

    band: str
    flux: np.ndarray
    valid: np.ndarray
    ivar: np.ndarray | None
    projection: TanProjection
    source: str = ""

    @property
    def shape(self) -> tuple[int, int]:
        """Pixel shape ``(H, W)``."""
        return self.flux.shape  # type: ignore[return-value]


def _finish(
    band_name: str,
    flux: np.ndarray,
    valid: np.ndarray,
    ivar: np.ndarray | None,
    header: fits.Header,
    source: str,
) -> Plane:
    try:
        projection = TanProjection.from_header(header)
    except (KeyError, ValueError) as err:
        raise ProductError(f"{source}: unusable WCS ({err})") from None
    valid = valid & np.isfinite(flux)
    if ivar is not None:
        ivar = np.where(valid & np.isfinite(ivar), ivar, 0.0).astype(np.float32)
    flux = np.where(valid, flux, 0.0).astype(np.float32)
    return Plane(band_name, flux, valid, ivar, projection, source)


def _header_float(header: fits.Header, key: str, source: str, default: float | None = None):
    value = header.get(key, default)
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ProductError(f"{source}: header keyword {key} is missing or not a number") from None


def _read_fits(data: bytes | Path, source: str) -> fits.HDUList:
    hdul = None
    try:
        with warnings.catch_warnings():
            # astropy only warns about a truncated file; here that makes the product unusable
            warnings.filterwarnings("error", message="File may have been truncated")
            # read the bytes ourselves: astropy leaks its handle when opening a damaged file
            payload = data if isinstance(data, bytes) else Path(data).read_bytes()
            hdul = fits.open(io.BytesIO(payload), memmap=False)
            # no upfront verify("silentfix"): it parses every card of every header (a fifth of
            # the build's time); the cards read are parsed when used, see `read_product`
            _ = [hdu.data for hdu in hdul]  # force reading so truncation shows up here
        return hdul
    except (OSError, ValueError, TypeError, EOFError, AstropyUserWarning) as err:
        if hdul is not None:
            hdul.close()
        raise ProductError(f"{source}: not a readable FITS file ({err})") from None


def read_ps1(path: str | Path) -> Plane:
    """One PS1 fitscut stack cutout (one band) to a `Plane`.

    Linear counts are scaled with ``FPA.ZP + 2.5 log10(EXPTIME)``; files that carry
    ``BSOFTEN``/``BOFFSET`` (asinh-compressed skycells) are linearised first. NaN pixels (beyond
    the skycell edge, masked) are invalid. The band comes from ``FPA.FILTER`` or, failing that,
    from the cache file name ``<id>.<band>.fits``.
    """
    path = Path(path)
    with _read_fits(path, str(path)) as hdul:
        hdu = next((h for h in hdul if h.data is not None and h.data.ndim == 2), None)
        if hdu is None:
            raise ProductError(f"{path}: no 2-D image HDU")
        header = hdu.header
        counts = np.asarray(hdu.data, dtype=np.float64)
    filt = str(header.get("FPA.FILTER", "")).split(".")[0] or path.name.split(".")[-2]
    if filt not in {b.name for b in bands_of("ps1")}:
        raise ProductError(f"{path}: PS1 band {filt!r} is not one of g, r, i, z, y")
    if "BSOFTEN" in header and "BOFFSET" in header:
        soften = _header_float(header, "BSOFTEN", str(path))
        offset = _header_float(header, "BOFFSET", str(path))
        counts = offset + 2.0 * soften * np.sinh(counts / _ASINH_A)
    exptime = _header_float(header, "EXPTIME", str(path))
    if not exptime > 0:
        raise ProductError(f"{path}: EXPTIME must be positive, got {exptime}")
    fpa_zp = _header_float(header, "FPA.ZP", str(path), default=25.0)
    valid = np.isfinite(counts)
    flux = ps1_counts_to_nanomaggies(np.where(valid, counts, 0.0), exptime, fpa_zp)
    return _finish(filt, flux, valid, None, header, str(path))


def read_unwise(path: str | Path) -> list[Plane]:
    """Convert an unwise.me ``cutout_fits`` tar.gz to one `Plane` per tile and band (W1, W2).

    Pixels are Vega nanomaggies with zero point ``MAGZP``; ``invvar-m`` members give the
    inverse variance, ``n-m`` members mark pixels with no exposure as invalid.
    """
    path = Path(path)
    members: dict[tuple[str, str], dict[str, bytes]] = {}
    try:
        with tarfile.open(path, mode="r:gz") as tar:
            for info in tar.getmembers():
                match = _UNWISE_MEMBER.match(Path(info.name).name)
                if not info.isfile() or match is None:
                    continue
                handle = tar.extractfile(info)
                payload = handle.read() if handle else b""
                if info.name.endswith(".gz"):
                    payload = gzip.decompress(payload)
                key = (match["coadd"], f"W{match['band']}")
                members.setdefault(key, {})[match["kind"]] = payload
    except (tarfile.TarError, OSError, EOFError) as err:
        raise ProductError(f"{path}: not a readable unWISE tar.gz ({err})") from None
    planes = []
    for (coadd, band_name), files in sorted(members.items()):
        if band_name not in {b.name for b in bands_of("unwise")} or "img-m" not in files:
            continue
        source = f"{path}[{coadd} {band_name}]"
        with _read_fits(files["img-m"], source) as hdul:
            header = hdul[0].header
            image = np.asarray(hdul[0].data, dtype=np.float64)
        magzp = _header_float(header, "MAGZP", source, default=22.5)
        to_ab = float(unwise_vega_to_ab_nanomaggies(np.float32(1.0), band_name, magzp))
        valid = np.isfinite(image)
        ivar = None
        if "invvar-m" in files:
            with _read_fits(files["invvar-m"], source) as hdul:
                ivar = np.asarray(hdul[0].data, dtype=np.float64) / to_ab**2
            valid &= np.isfinite(ivar) & (ivar > 0)
        if "n-m" in files:
            with _read_fits(files["n-m"], source) as hdul:
                valid &= np.asarray(hdul[0].data) > 0
        flux = np.where(valid, image, 0.0) * to_ab
        planes.append(_finish(band_name, flux, valid, ivar, header, source))
    return planes


def _galex_band_names(header: fits.Header, n_planes: int, source: str) -> list[str]:
    letters = [str(header.get(f"BAND{i}", "")).strip().lower() for i in range(n_planes)]
    if not all(letters):
        packed = str(header.get("BANDS", "")).strip().lower()
        letters = list(packed) if len(packed) == n_planes else ["n", "f"][:n_planes]
    try:
        return [_GALEX_LETTERS[letter] for letter in letters]
    except KeyError:
        raise ProductError(
            f"{source}: GALEX band letters {letters} not understood; allowed: n (NUV), f (FUV)"
        ) from None


def read_galex(path: str | Path) -> list[Plane]:
    """Convert a Legacy Survey viewer GALEX cutout (counts/s, NUV, FUV) to `Plane` objects.

    The inverse-variance HDU, when present, marks uncovered pixels (zero weight); without it
    pixels that are exactly zero (the viewer's fill in gaps) are invalid.
    """
    path = Path(path)
    with _read_fits(path, str(path)) as hdul:
        header = hdul[0].header
        cube = hdul[0].data
        weights = hdul[1].data if len(hdul) > 1 and hdul[1].data is not None else None
        if cube is None or cube.ndim not in (2, 3):
            raise ProductError(f"{path}: expected a 2-D image or (bands, H, W) cube in HDU0")
        cube = np.asarray(cube, dtype=np.float64).reshape(-1, *cube.shape[-2:])
        if weights is not None:
            weights = np.asarray(weights, dtype=np.float64).reshape(cube.shape)
    planes = []
    for index, band_name in enumerate(_galex_band_names(header, cube.shape[0], str(path))):
        cps = cube[index]
        to_nmgy = float(galex_cps_to_nanomaggies(np.float32(1.0), band_name))
        if weights is not None:
            valid = np.isfinite(weights[index]) & (weights[index] > 0)
            ivar = weights[index] / to_nmgy**2
        else:
            valid = cps != 0
            ivar = None
        flux = np.where(valid & np.isfinite(cps), cps, 0.0) * to_nmgy
        planes.append(_finish(band_name, flux, valid, ivar, header, f"{path}[{band_name}]"))
    return planes


def read_product(survey_name: str, paths: Sequence[str | Path]) -> list[Plane]:
    """Every `Plane` of one survey's cached product (the files `CutoutCache` lists).

    Raises
    ------
    ProductError
        A file that cannot be read, or whose header cards needed here do not parse.
    """
    readers = {"ps1": read_ps1, "unwise": read_unwise, "galex": read_galex}
    if survey_name not in readers:
        raise ProductError(f"unknown survey {survey_name!r}; allowed: galex, ps1, unwise")
    planes = []
    for path in paths:
        try:
            found = readers[survey_name](path)
        except fits.VerifyError as err:
            raise ProductError(f"{path}: a header card does not parse ({err})") from None
        planes += found if isinstance(found, list) else [found]
    return planes
