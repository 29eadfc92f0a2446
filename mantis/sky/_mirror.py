"""A local survey mirror of the simulated sky: PS1 stack skycells and unWISE tiles on disk.

Files keep the native names and directory layouts, so the reader (`mantis fetch --source
local:DIR`) is the one a centre with real mirrors uses:

* PS1: ``<DIR>/rings.v3.skycell/PPPP/SSS/rings.v3.skycell.PPPP.SSS.stk.{g,r,i,z,y}.unconv.fits``,
  the whole skycell (6240 pixels a side) tile-compressed in HDU 1 (lossless GZIP_1), linear
  counts with the header a fitscut cutout of the whole skycell carries.
* unWISE: ``<DIR>/unwise-coadds/fulldepth/XXX/XXXXsYYY/unwise-XXXXsYYY-w{1,2}-{img-m.fits,
  invvar-m.fits.gz, n-m.fits.gz, std-m.fits.gz}``, whole 2048-pixel tiles, Vega nanomaggies.

Only the part of each skycell or tile within the field (plus one cutout's margin) is drawn;
pixels beyond it are NaN (unobserved), which keeps a mirror of a small field small. Inside it,
pixels are those the imitation services answer (the same native frames), so a product cut from
the mirror equals the product fetched from ``mantis sky serve``. GALEX is not mirrored: the
viewer resamples per request, and the service stays the source of GALEX products.
"""

from __future__ import annotations

import gzip
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from mantis.exceptions import ConfigError
from mantis.sky._coverage import ps1_skycell_at, stable_uniform, unwise_tiles_near
from mantis.sky._formats import (
    UNWISE_FILE_SUFFIX,
    _framed,
    _ps1_header,
    _tan_cd_header,
    _unwise_header,
    pixel_noise_sigma,
    ps1_exptime,
    ps1_frame,
    ps1_header_wcs,
    unwise_frame,
)
from mantis.surveys import (
    ps1_counts_to_nanomaggies,
    survey,
    unwise_vega_to_ab_nanomaggies,
)

__all__ = ["MIRROR_MARGIN_ARCSEC", "parse_field", "write_mirror"]

MIRROR_MARGIN_ARCSEC = 120.0  # drawn beyond the field: a cutout of an object on its edge


def parse_field(text: str) -> tuple[float, float, float]:
    """``'RA,DEC,SIZE'`` (degrees) as three floats.

    Raises
    ------
    ConfigError
        Naming the value and the allowed form.
    """
    try:
        ra, dec, size = (float(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(
            f"--field must be RA,DEC,SIZE in degrees (e.g. 150.1,2.2,0.1), got {text!r}"
        ) from None
    if not (0.0 <= ra < 360.0 and -90.0 <= dec <= 90.0 and 0.0 < size <= 2.0):
        raise ConfigError(
            f"--field {text!r}: ra must lie in [0, 360), dec in [-90, 90], size in (0, 2] degrees"
        )
    return ra, dec, size


def _box_in(wcs: WCS, field: tuple[float, float, float], shape: tuple[int, int]):
    """Pixel box (x0, y0, x1, y1) of the field plus margin in an image, clipped; None if empty."""
    ra, dec, size = field
    half = size / 2.0 + MIRROR_MARGIN_ARCSEC / 3600.0
    cosd = max(math.cos(math.radians(dec)), 1e-3)
    corners_ra = ra + np.array([-1, 1, 1, -1]) * half / cosd
    corners_dec = dec + np.array([-1, -1, 1, 1]) * half
    x, y = wcs.all_world2pix(corners_ra, np.clip(corners_dec, -90, 90), 0)
    x0, x1 = max(int(np.floor(x.min())), 0), min(int(np.ceil(x.max())) + 1, shape[1])
    y0, y1 = max(int(np.floor(y.min())), 0), min(int(np.ceil(y.max())) + 1, shape[0])
    return None if x1 <= x0 or y1 <= y0 else (x0, y0, x1, y1)


def _sample_positions(field: tuple[float, float, float], step: float):
    ra, dec, size = field
    half = size / 2.0 + MIRROR_MARGIN_ARCSEC / 3600.0
    cosd = max(math.cos(math.radians(dec)), 1e-3)
    for d in np.arange(dec - half, dec + half + step, step):
        for r in np.arange(ra - half / cosd, ra + (half + step) / cosd, step / cosd):
            yield float(r) % 360.0, float(np.clip(d, -90, 90))


def _write_atomic(path: Path, hdus: list, *, gz: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    if gz:
        import io

        buffer = io.BytesIO()
        fits.HDUList(hdus).writeto(buffer)
        tmp.write_bytes(gzip.compress(buffer.getvalue(), compresslevel=6, mtime=0))
    else:
        fits.HDUList(hdus).writeto(tmp, overwrite=True)
    tmp.replace(path)


def _write_ps1(universe, root: Path, fields, seed: int, bands: str) -> list[Path]:
    skycells = {}
    for field in fields:
        for ra, dec in _sample_positions(field, 0.01):
            cell = ps1_skycell_at(ra, dec)
            if cell is not None:
                skycells[cell.name] = cell
    written = []
    for cell in skycells.values():
        shape = (cell.y1 - cell.y0, cell.x1 - cell.x0)
        for band_name in bands:
            exptime = ps1_exptime(cell, band_name, seed=seed)
            frame = ps1_frame(cell, cell.x0, cell.y0)
            seeing = universe.psf_fwhm(band_name, frame.ra, frame.dec) / survey("ps1").pixel_scale
            header = _ps1_header(cell, band_name, cell.x0, cell.y0, exptime, seed,
                                 round(float(seeing), 4))  # fmt: skip
            wcs = ps1_header_wcs(header)
            data = np.full(shape, np.nan, dtype=np.float32)
            for field in fields:
                box = _box_in(wcs, field, shape)
                if box is None:
                    continue
                x0, y0, x1, y1 = box
                sub = wcs[y0:y1, x0:x1]
                framed = _framed(universe, ps1_frame(cell, cell.x0 + x0, cell.y0 + y0))
                pixels = universe.render(band_name, sub, (y1 - y0, x1 - x0), **framed)
                per_count = float(ps1_counts_to_nanomaggies(np.float32(1.0), exptime))
                data[y0:y1, x0:x1] = (pixels / per_count).astype(np.float32)
            path = root / cell.filename(band_name).lstrip("/")
            hdu = fits.CompImageHDU(data, header, compression_type="GZIP_1", quantize_level=0.0,
                                    tile_shape=(256, 256))  # fmt: skip
            _write_atomic(path, [fits.PrimaryHDU(), hdu])
            written.append(path)
    return written


def _write_unwise(universe, root: Path, fields, seed: int, bands: Sequence[int]) -> list[Path]:
    pixel_scale = survey("unwise").pixel_scale
    written = []
    tiles = {}
    for field in fields:
        radius = field[2] / math.sqrt(2.0) + MIRROR_MARGIN_ARCSEC / 3600.0
        for tile in unwise_tiles_near(field[0], field[1], radius):
            tiles[tile.coadd_id] = tile
    for tile in tiles.values():
        tile_wcs = tile.wcs()
        width, height = tile_wcs.pixel_shape
        boxes = [b for f in fields if (b := _box_in(tile_wcs, f, (height, width))) is not None]
        if not boxes:
            continue
        crpix = tile_wcs.wcs.crpix
        wcs_header = _tan_cd_header(tile.ra0, tile.dec0, crpix[0], crpix[1],
                                    pixel_scale / 3600.0, width, height)  # fmt: skip
        full_wcs = WCS(wcs_header)
        folder = root / "unwise-coadds" / "fulldepth" / tile.coadd_id[:3] / tile.coadd_id
        for number in bands:
            band_name = f"W{number}"
            vega_per_ab = 1.0 / float(unwise_vega_to_ab_nanomaggies(np.float32(1.0), band_name))
            # the noise level of the tile (its frame's anchor), whichever box is drawn
            frame = unwise_frame(tile, 0, 0)
            sigma = pixel_noise_sigma(universe, band_name, full_wcs, (height, width), frame)
            sigma *= vega_per_ab
            n_exposures = 60 + int(120 * stable_uniform("unwise-n", seed, tile.coadd_id, number))
            image = np.full((height, width), np.nan, dtype=np.float32)
            for x0, y0, x1, y1 in boxes:
                framed = _framed(universe, unwise_frame(tile, x0, y0))
                pixels = universe.render(band_name, full_wcs[y0:y1, x0:x1], (y1 - y0, x1 - x0),
                                         **framed)  # fmt: skip
                image[y0:y1, x0:x1] = (pixels * vega_per_ab).astype(np.float32)
            arrays = {
                "img_m": (image, "coadded image, outliers removed"),
                "invvar_m": (np.full((height, width), 1.0 / sigma**2, dtype=np.float32),
                             "inverse variance, outliers removed"),
                "n_m": (np.full((height, width), n_exposures, dtype=np.int32),
                        "number of exposures, outliers removed"),
                "std_m": (np.full((height, width), sigma * math.sqrt(n_exposures),
                                  dtype=np.float32), "sample standard deviation, outliers removed"),
            }  # fmt: skip
            for file_type, (data, extname) in arrays.items():
                header = _unwise_header(tile.coadd_id, number, wcs_header, extname)
                name = f"unwise-{tile.coadd_id}-w{number}-{UNWISE_FILE_SUFFIX[file_type]}"
                path = folder / name
                _write_atomic(path, [fits.PrimaryHDU(data, header)], gz=name.endswith(".gz"))
                written.append(path)
    return written


def write_mirror(
    out: str | os.PathLike,
    fields: Sequence[tuple[float, float, float]],
    *,
    config: str = "default",
    seed: int = 0,
    surveys: Sequence[str] = ("ps1", "unwise"),
    ps1_bands: str = "grizy",
) -> list[Path]:
    """Write the PS1 skycells and unWISE tiles that hold the ``fields`` (ra, dec, size degrees).

    Every file is written whole; pixels farther than `MIRROR_MARGIN_ARCSEC` from all fields are
    NaN. ``ps1_bands`` limits the PS1 bands written.

    Returns
    -------
    list of Path
        Files written.

    Raises
    ------
    ConfigError
        For a survey that is not mirrored (``galex``) or a bad field.
    """
    from mantis.sky._server import load_universe

    unknown = [s for s in surveys if s not in ("ps1", "unwise")]
    if unknown:
        raise ConfigError(
            f"cannot mirror survey(s) {', '.join(unknown)}; allowed: ps1, unwise (GALEX products "
            "come from the viewer, which resamples per request)"
        )
    universe = load_universe(config, seed)
    root = Path(out)
    written: list[Path] = []
    if "ps1" in surveys:
        written += _write_ps1(universe, root, fields, seed, ps1_bands)
    if "unwise" in surveys:
        written += _write_unwise(universe, root, fields, seed, (1, 2))
    return written
