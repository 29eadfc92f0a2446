"""Survey-native products built from the simulated sky, byte for byte as the services send them.

* `ps1_filenames_table`: the text table of ``/cgi-bin/ps1filenames.py``.
* `ps1_cutout`: a ``fitscut.cgi`` FITS cutout (linear counts, legacy AIPS ``PC00i00j`` WCS,
  ``EXPTIME`` and ``FPA.ZP``), NaN beyond the skycell edge.
* `unwise_tar`: the ``/cutout_fits`` tar.gz of unWISE tiles (Vega nanomaggies, ``MAGZP``).
* `galex_cutout`: the Legacy Survey viewer ``fits-cutout?layer=galex`` cube (counts/s).

Every builder takes a universe (anything with ``render(band, wcs, shape, noise=True)``) and is
deterministic for (universe, seed, request).
"""

from __future__ import annotations

import gzip
import io
import math
import tarfile
import warnings
from collections.abc import Iterable, Sequence
from functools import lru_cache

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning

from mantis.exceptions import NoCoverageError
from mantis.sky._coverage import (
    PS1_CDELT,
    Skycell,
    UnwiseTile,
    galex_coverage_mask,
    ps1_skycell_at,
    stable_uniform,
    unwise_tiles_near,
)
from mantis.sky._render import NativeFrame, frame_from_wcs
from mantis.surveys import (
    band,
    bands_of,
    galex_cps_to_nanomaggies,
    mag_to_nanomaggies,
    ps1_counts_to_nanomaggies,
    survey,
    unwise_vega_to_ab_nanomaggies,
)

__all__ = [
    "GALEX_BAND_LETTERS",
    "PS1_FILENAMES_HEADER",
    "UNWISE_FILE_TYPES",
    "fits_to_picture",
    "galex_cutout",
    "pixel_noise_sigma",
    "ps1_cutout",
    "ps1_exptime",
    "ps1_filenames_table",
    "ps1_header_wcs",
    "unwise_tar",
]

PS1_FILENAMES_HEADER = "projcell subcell ra dec filter mjd type filename shortname badflag"
PS1_TYPE_SUFFIX = {"stack": "", "stack.wt": ".wt"}
# nominal single-warp exposure times of the 3pi survey, seconds
PS1_WARP_EXPTIME = {"g": 43.0, "r": 40.0, "i": 45.0, "z": 30.0, "y": 30.0}
UNWISE_FILE_TYPES = ("img_m", "invvar_m", "n_m", "std_m")
UNWISE_FILE_SUFFIX = {
    "img_m": "img-m.fits",
    "invvar_m": "invvar-m.fits.gz",
    "n_m": "n-m.fits.gz",
    "std_m": "std-m.fits.gz",
}
GALEX_BAND_LETTERS = {"n": "NUV", "f": "FUV"}


def _framed(universe: object, frame: NativeFrame | None) -> dict:
    """Keyword arguments passing ``frame`` to a universe that understands frames."""
    return (
        {"frame": frame}
        if frame is not None and getattr(universe, "supports_frames", False)
        else {}
    )


@lru_cache(maxsize=1024)
def _ps1_anchor(skycell: Skycell) -> NativeFrame:
    shape = (skycell.y1 - skycell.y0, skycell.x1 - skycell.x0)
    wcs = skycell.projcell_wcs()[skycell.y0 : skycell.y1, skycell.x0 : skycell.x1]
    return frame_from_wcs(skycell.name, 0, 0, wcs, shape)


def ps1_frame(skycell: Skycell, x0: int, y0: int) -> NativeFrame:
    """Frame of a window at projection-cell pixel (x0, y0), anchored at the skycell centre."""
    anchor = _ps1_anchor(skycell)
    return NativeFrame(anchor.key, int(x0), int(y0), anchor.jac, anchor.ra, anchor.dec)


@lru_cache(maxsize=1024)
def _unwise_anchor(tile: UnwiseTile) -> NativeFrame:
    wcs = tile.wcs()
    return frame_from_wcs(tile.coadd_id, 0, 0, wcs, wcs.pixel_shape[::-1])


def unwise_frame(tile: UnwiseTile, x0: int, y0: int) -> NativeFrame:
    """Frame of a window at tile pixel (x0, y0), anchored at the tile centre."""
    anchor = _unwise_anchor(tile)
    return NativeFrame(anchor.key, int(x0), int(y0), anchor.jac, anchor.ra, anchor.dec)


def pixel_noise_sigma(
    universe: object,
    band_name: str,
    wcs: WCS,
    shape: tuple[int, int],
    frame: NativeFrame | None = None,
) -> float:
    """Sky noise per pixel, AB nanomaggies, that ``universe.render`` adds for this request.

    Uses ``universe.noise_sigma(band, wcs, shape)`` when the universe provides it, else the
    background-limited relation for the band's 5-sigma point-source depth,
    sigma_pix = F_5 / (5 sqrt(4 pi s^2 / p^2)), s the PSF's Gaussian sigma and p the pixel
    scale (arcsec).
    """
    if hasattr(universe, "noise_sigma"):
        return float(universe.noise_sigma(band_name, wcs, shape, **_framed(universe, frame)))
    info = band(band_name)
    pixel_scale = float(np.sqrt(abs(np.linalg.det(wcs.celestial.pixel_scale_matrix)))) * 3600.0
    psf_sigma = info.psf_fwhm / (2.0 * math.sqrt(2.0 * math.log(2.0)))
    n_eff = 4.0 * math.pi * psf_sigma**2 / pixel_scale**2
    return float(mag_to_nanomaggies(info.depth_5sigma)) / 5.0 / math.sqrt(max(n_eff, 1.0))


def _tan_cd_header(
    ra0: float, dec0: float, crpix1: float, crpix2: float, scale_deg: float, width: int, height: int
) -> fits.Header:
    """Header of a north-up TAN WCS written with a CD matrix, as the unWISE and viewer files."""
    header = fits.Header()
    header["WCSAXES"] = 2
    header["CTYPE1"] = "RA---TAN"
    header["CTYPE2"] = "DEC--TAN"
    header["EQUINOX"] = 2000.0
    header["CRVAL1"] = ra0
    header["CRVAL2"] = dec0
    header["CRPIX1"] = crpix1
    header["CRPIX2"] = crpix2
    header["CUNIT1"] = "deg"
    header["CUNIT2"] = "deg"
    header["CD1_1"] = -scale_deg
    header["CD1_2"] = 0.0
    header["CD2_1"] = 0.0
    header["CD2_2"] = scale_deg
    header["IMAGEW"] = width
    header["IMAGEH"] = height
    return header


def _fits_bytes(hdus: Sequence[fits.hdu.base.ExtensionHDU | fits.PrimaryHDU]) -> bytes:
    buffer = io.BytesIO()
    fits.HDUList(list(hdus)).writeto(buffer)
    return buffer.getvalue()


# ------------------------------------------------------------------------------------- PS1


def ps1_exptime(skycell: Skycell, band_name: str, *, seed: int = 0) -> float:
    """Stack EXPTIME: the band's warp time times a per-skycell number of warps (8-19)."""
    n_warps = 8 + int(12 * stable_uniform("ps1-warps", seed, skycell.name, band_name))
    return PS1_WARP_EXPTIME[band_name] * n_warps


def _ps1_mjd(skycell: Skycell, band_name: str, seed: int) -> float:
    return round(55000.0 + 1500.0 * stable_uniform("ps1-mjd", seed, skycell.name, band_name), 5)


def ps1_filenames_table(
    positions: Iterable[tuple[float, float]], filters: str, types: Sequence[str]
) -> str:
    """Text answer of ``ps1filenames.py``: one row per position, type and filter.

    Positions south of dec -30 add no rows; with none left only the header line remains.
    ``filters`` must hold only g r i z y and ``types`` only keys of ``PS1_TYPE_SUFFIX``.
    """
    lines = [PS1_FILENAMES_HEADER]
    for ra, dec in positions:
        skycell = ps1_skycell_at(ra, dec)
        if skycell is None:
            continue
        ra_c, dec_c = skycell.centre()
        for type_name in types:
            for band_name in filters:
                name = skycell.filename(band_name).replace(
                    ".unconv.fits", f".unconv{PS1_TYPE_SUFFIX[type_name]}.fits"
                )
                lines.append(
                    f"{skycell.projcell} {skycell.subcell} {ra_c:.6f} {dec_c:.6f} {band_name} "
                    f"0.0 {type_name} {name} {name.rsplit('/', 1)[1]} 0"
                )
    return "\n".join(lines) + "\n"


def ps1_header_wcs(header: fits.Header) -> WCS:
    """Celestial WCS of a PS1 cutout header, reading its legacy ``PC00i00j`` keywords quietly.

    wcslib understands the AIPS-era ``PC001001`` form and warns that it is deprecated; the
    warning says nothing about this file's correctness, so only that one is silenced.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"PC00\d00\d=", category=FITSFixedWarning)
        return WCS(header, naxis=2)


def _ps1_header(
    skycell: Skycell, band_name: str, x0: int, y0: int, exptime: float, seed: int, seeing: float
) -> fits.Header:
    header = fits.Header()
    header["CTYPE1"] = "RA---TAN"
    header["CTYPE2"] = "DEC--TAN"
    header["CRVAL1"] = skycell.ra0
    header["CRVAL2"] = skycell.dec0
    header["CRPIX1"] = (skycell.crpix - x0, "Reference pixel shifted for cutout")
    header["CRPIX2"] = (skycell.crpix - y0, "Reference pixel shifted for cutout")
    header["CDELT1"] = PS1_CDELT
    header["CDELT2"] = PS1_CDELT
    header["PC001001"] = -1.0
    header["PC001002"] = 0.0
    header["PC002001"] = 0.0
    header["PC002002"] = 1.0
    header["RADESYS"] = "FK5"
    header["EQUINOX"] = 2000.0
    header["EXPTIME"] = (exptime, "Unweighted sum of input warp exposure times")
    header["MJD-OBS"] = _ps1_mjd(skycell, band_name, seed)
    header["HIERARCH FPA.ZP"] = 25.0
    header["HIERARCH FPA.FILTER"] = f"{band_name}.00000"
    header["HIERARCH CHIP.SEEING"] = (seeing, "PSF FWHM, pixels")
    header["HIERARCH CELL.GAIN"] = 1.0
    header["SKYCELL"] = skycell.name
    header["TESS_ID"] = "RINGS.V3"
    header["PSCAMERA"] = "GPC1"
    header["IMAGEID"] = int(1e6 * stable_uniform("ps1-imageid", seed, skycell.name, band_name))
    header["STK_ID"] = int(1e6 * stable_uniform("ps1-stkid", seed, skycell.name, band_name))
    return header


def ps1_cutout(
    universe: object,
    skycell: Skycell,
    band_name: str,
    ra: float,
    dec: float,
    size: int,
    *,
    seed: int = 0,
    product: str = "stack",
    all_nan: bool = False,
) -> bytes:
    """FITS bytes of a ``fitscut.cgi`` cutout of one skycell stack.

    The cutout is a ``size`` x ``size`` window of the skycell's pixel grid centred on the pixel
    that holds (ra, dec), in linear counts (zero point 25 + 2.5 log10 EXPTIME), NaN where it
    extends beyond the skycell. ``product='stack.wt'`` gives the variance image instead.
    """
    x, y = skycell.projcell_wcs().all_world2pix(ra, dec, 0)
    x0 = round(float(x)) - size // 2
    y0 = round(float(y)) - size // 2
    exptime = ps1_exptime(skycell, band_name, seed=seed)
    frame = ps1_frame(skycell, x0, y0)
    framed = _framed(universe, frame)
    # a stack has one PSF: that of its skycell (where the frame anchors it)
    seeing_at = (frame.ra, frame.dec) if framed else (ra, dec)
    seeing = universe.psf_fwhm(band_name, *seeing_at) / survey("ps1").pixel_scale
    header = _ps1_header(skycell, band_name, x0, y0, exptime, seed, round(float(seeing), 4))
    nmgy_per_count = float(ps1_counts_to_nanomaggies(np.float32(1.0), exptime))
    shape = (size, size)
    wcs = ps1_header_wcs(header)
    if product == "stack.wt":
        sigma = pixel_noise_sigma(universe, band_name, wcs, shape, frame)
        data = np.full(shape, (sigma / nmgy_per_count) ** 2, dtype=np.float32)
    else:
        pixels = universe.render(band_name, wcs, shape, **framed)
        data = (pixels / nmgy_per_count).astype(np.float32)
    cols = np.arange(x0, x0 + size)
    rows = np.arange(y0, y0 + size)
    outside = ~(
        ((rows >= skycell.y0) & (rows < skycell.y1))[:, None]
        & ((cols >= skycell.x0) & (cols < skycell.x1))[None, :]
    )
    data[outside] = np.nan
    if all_nan:
        data[:] = np.nan
    return _fits_bytes([fits.PrimaryHDU(data, header)])


def fits_to_picture(fits_bytes: bytes, picture_format: str) -> bytes:
    """JPEG or PNG of a cutout, asinh-stretched: what fitscut sends without ``format=fits``."""
    from PIL import Image

    data = fits.getdata(io.BytesIO(fits_bytes)).astype(float)
    finite = np.isfinite(data)
    scale = float(np.nanpercentile(np.abs(data), 90)) if finite.any() else 1.0
    stretched = np.arcsinh(np.where(finite, data, 0.0) / max(scale, 1e-12))
    low, high = np.percentile(stretched, [1, 99.5]) if finite.any() else (0.0, 1.0)
    grey = np.clip((stretched - low) / max(high - low, 1e-12) * 255.0, 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(grey[::-1]).save(buffer, format="PNG" if picture_format == "png" else "JPEG")
    return buffer.getvalue()


# ---------------------------------------------------------------------------------- unWISE


def _unwise_header(coadd_id: str, band_number: int, wcs_header: fits.Header, extname: str):
    header = wcs_header.copy()
    header["MAGZP"] = (22.5, "Magnitude zeropoint (in Vega mag)")
    header["BAND"] = (band_number, "WISE band")
    header["COADDID"] = coadd_id
    header["EPOCH"] = (-1, "Full-depth coadd")
    header["UNW_VER"] = "neo7"
    header["UNW_DVER"] = 3.3
    header["UNW_URL"] = "https://github.com/dstndstn/unwise-coadds"
    header["MJDMIN"] = 55203.0
    header["MJDMAX"] = 59198.0
    header["EXTNAME"] = extname
    return header


def _gzip_fits(hdu: fits.PrimaryHDU) -> bytes:
    return gzip.compress(_fits_bytes([hdu]), compresslevel=6, mtime=0)


def unwise_tar(
    universe: object,
    ra: float,
    dec: float,
    size: int,
    bands: Sequence[int],
    file_types: Sequence[str],
    *,
    seed: int = 0,
    all_nan: bool = False,
) -> bytes:
    """tar.gz bytes answering ``/cutout_fits``: one member per tile, band and file type.

    Mirrors the unwise.me server: every tile near (ra, dec) gives the box of ``size`` pixels
    around the position, clipped to the tile (no padding); tiles the box misses are skipped.
    ``bands`` are WISE band numbers (1, 2; others have no data and are dropped).
    """
    pixel_scale = survey("unwise").pixel_scale
    members: list[tuple[str, bytes]] = []
    for tile in unwise_tiles_near(ra, dec, size / 2.0 * pixel_scale / 3600.0):
        tile_wcs = tile.wcs()
        width, height = tile_wcs.pixel_shape
        x, y = tile_wcs.all_world2pix(ra, dec, 0)
        x0, y0 = round(float(x)) - size // 2, round(float(y)) - size // 2
        x1, y1 = x0 + size, y0 + size
        if x1 <= 0 or y1 <= 0 or x0 >= width or y0 >= height:
            continue
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
        crpix = tile_wcs.wcs.crpix
        wcs_header = _tan_cd_header(
            tile.ra0,
            tile.dec0,
            crpix[0] - x0,
            crpix[1] - y0,
            pixel_scale / 3600.0,
            x1 - x0,
            y1 - y0,
        )
        sub_wcs = WCS(wcs_header)
        shape = (y1 - y0, x1 - x0)
        frame = unwise_frame(tile, x0, y0)
        framed = _framed(universe, frame)
        for number in bands:
            band_name = f"W{number}"
            if band_name not in survey("unwise").bands:
                continue
            vega_per_ab = 1.0 / float(unwise_vega_to_ab_nanomaggies(np.float32(1.0), band_name))
            sigma = pixel_noise_sigma(universe, band_name, sub_wcs, shape, frame) * vega_per_ab
            n_exposures = 60 + int(120 * stable_uniform("unwise-n", seed, tile.coadd_id, number))
            for file_type in file_types:
                if file_type == "img_m":
                    data = universe.render(band_name, sub_wcs, shape, **framed) * vega_per_ab
                    if all_nan:
                        data[...] = np.nan
                    extname = "coadded image, outliers removed"
                elif file_type == "invvar_m":
                    data = np.full(shape, 1.0 / sigma**2)
                    extname = "inverse variance, outliers removed"
                elif file_type == "n_m":
                    data = np.full(shape, n_exposures, dtype=np.int32)
                    extname = "number of exposures, outliers removed"
                else:
                    data = np.full(shape, sigma * math.sqrt(n_exposures))
                    extname = "sample standard deviation, outliers removed"
                if data.dtype.kind == "f":
                    data = data.astype(np.float32)
                header = _unwise_header(tile.coadd_id, number, wcs_header, extname)
                hdu = fits.PrimaryHDU(data, header)
                name = f"unwise-{tile.coadd_id}-w{number}-{UNWISE_FILE_SUFFIX[file_type]}"
                payload = _fits_bytes([hdu]) if file_type == "img_m" else _gzip_fits(hdu)
                members.append((name, payload))
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


# ----------------------------------------------------------------------------------- GALEX


def galex_cutout(
    universe: object,
    ra: float,
    dec: float,
    width: int,
    height: int,
    pixscale: float,
    band_letters: str,
    *,
    invvar: bool = False,
    seed: int = 0,
    all_nan: bool = False,
) -> bytes:
    """FITS bytes of a Legacy Survey viewer ``layer=galex`` cutout.

    HDU0 holds counts/s per pixel, a cube ``(n_bands, height, width)`` in the order of
    ``band_letters`` (``'n'`` NUV, ``'f'`` FUV) or a 2-D image for a single band; with
    ``invvar`` HDU1 holds the inverse variance. Pixels outside every GALEX pointing are zero
    with zero inverse variance.

    Raises
    ------
    NoCoverageError
        If no pixel of the cutout falls inside a pointing (the viewer's NoOverlapError).
    """
    header = _tan_cd_header(
        ra, dec, (width + 1) / 2.0, (height + 1) / 2.0, pixscale / 3600.0, width, height
    )
    wcs = WCS(header)
    covered = galex_coverage_mask(wcs, (height, width))
    if not covered.any():
        raise NoCoverageError(f"no GALEX pointing overlaps the cutout at ra={ra}, dec={dec}")
    images, weights = [], []
    for letter in band_letters:
        band_name = GALEX_BAND_LETTERS[letter]
        nmgy_per_cps = float(galex_cps_to_nanomaggies(np.float32(1.0), band_name))
        cps = universe.render(band_name, wcs, (height, width)) / nmgy_per_cps
        images.append(np.where(covered, cps, 0.0).astype(np.float32))
        sigma = pixel_noise_sigma(universe, band_name, wcs, (height, width)) / nmgy_per_cps
        weights.append(np.where(covered, 1.0 / sigma**2, 0.0).astype(np.float32))
    cube = np.stack(images) if len(images) > 1 else images[0]
    if all_nan:
        cube[...] = np.nan
    header["SURVEY"] = "GALEX"
    header["VERSION"] = "GR6/7"
    header["IMAGETYP"] = "image"
    header["BANDS"] = band_letters
    for index, letter in enumerate(band_letters):
        header[f"BAND{index}"] = letter
    hdus: list = [fits.PrimaryHDU(cube, header)]
    if invvar:
        weight_cube = np.stack(weights) if len(weights) > 1 else weights[0]
        inv_header = header.copy()
        inv_header["IMAGETYP"] = "invvar"
        hdus.append(fits.ImageHDU(weight_cube, inv_header))
    return _fits_bytes(hdus)


def _check_band_tables() -> None:
    """Guard: the builders' per-band tables cover exactly the survey bands."""
    ps1 = {b.name for b in bands_of("ps1")}
    galex = {b.name for b in bands_of("galex")}
    if set(PS1_WARP_EXPTIME) != ps1 or set(GALEX_BAND_LETTERS.values()) != galex:
        raise RuntimeError("formats band tables disagree with mantis.surveys")


_check_band_tables()
