"""``mantis sky preview``: a grid of objects x nine bands, exactly as the imitation server sends.

The products are fetched over HTTP from an in-process server, linearised with their own header
keywords (`mantis.surveys` conversions) and drawn with an asinh stretch, one row per object.
"""

from __future__ import annotations

import asyncio
import io
import os
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from mantis.exceptions import ConfigError
from mantis.surveys import (
    BANDS,
    galex_cps_to_nanomaggies,
    ps1_counts_to_nanomaggies,
    unwise_vega_to_ab_nanomaggies,
)

__all__ = ["PREVIEW_SIZES", "draw_preview", "fetch_object_images", "pick_objects"]

PREVIEW_SIZES = {"ps1": 120, "unwise": 20, "galex": 32}  # pixels: 30, 55 and 48 arcsec


def pick_objects(universe: Any, n_objects: int):
    """Pick ``n_objects`` spectroscopic objects spread evenly in redshift."""
    spec = universe.spec_catalog().sort_values("z").reset_index(drop=True)
    if len(spec) == 0:
        raise ConfigError("the sky has no spectroscopic objects to preview")
    rows = np.unique(np.linspace(0, len(spec) - 1, min(n_objects, len(spec))).round().astype(int))
    return spec.iloc[rows].reset_index(drop=True)


async def fetch_object_images(
    session: Any, base_url: str, ra: float, dec: float
) -> dict[str, np.ndarray | None]:
    """Nine AB-nanomaggy images of one position, fetched from the server; None where no data."""
    from astropy.io import fits

    images: dict[str, np.ndarray | None] = {b.name: None for b in BANDS}
    pos = {"ra": f"{ra:.7f}", "dec": f"{dec:.7f}"}
    async with session.get(f"{base_url}/cgi-bin/ps1filenames.py", params=pos) as response:
        lines = (await response.text()).splitlines()
    for line in lines[1:]:
        row = dict(zip(lines[0].split(), line.split(), strict=True))
        params = {**pos, "red": row["filename"], "size": PREVIEW_SIZES["ps1"], "format": "fits"}
        async with session.get(f"{base_url}/cgi-bin/fitscut.cgi", params=params) as response:
            hdu = fits.open(io.BytesIO(await response.read()))[0]
        images[row["filter"]] = ps1_counts_to_nanomaggies(
            hdu.data, hdu.header["EXPTIME"], hdu.header["FPA.ZP"]
        )
    params = {**pos, "size": PREVIEW_SIZES["unwise"], "file_img_m": "1"}
    async with session.get(f"{base_url}/cutout_fits", params=params) as response:
        body = await response.read()
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as tar:
        for member in tar.getmembers():  # nearest tile first; keep the first per band
            hdu = fits.open(io.BytesIO(tar.extractfile(member).read()))[0]
            name = f"W{hdu.header['BAND']}"
            if images[name] is None:
                images[name] = unwise_vega_to_ab_nanomaggies(hdu.data, name, hdu.header["MAGZP"])
    params = {**pos, "layer": "galex", "size": PREVIEW_SIZES["galex"], "bands": "nf"}
    async with session.get(f"{base_url}/viewer/fits-cutout", params=params) as response:
        if response.status == 200:
            hdu = fits.open(io.BytesIO(await response.read()))[0]
            for plane, letter in enumerate(hdu.header["BANDS"]):
                name = {"n": "NUV", "f": "FUV"}[letter]
                if np.any(hdu.data[plane] != 0):  # all zeros: a GALEX hole
                    images[name] = galex_cps_to_nanomaggies(hdu.data[plane], name)
    return images


async def _fetch_all(universe: Any, objects) -> list[dict[str, np.ndarray | None]]:
    import aiohttp

    from mantis.sky._runner import serving_in_process

    async with serving_in_process(universe) as url, aiohttp.ClientSession() as session:
        return [await fetch_object_images(session, url, o.ra, o.dec) for o in objects.itertuples()]


def _stretch(image: np.ndarray) -> np.ndarray:
    finite = np.isfinite(image)
    if not finite.any():
        return np.zeros_like(image)
    noise = 1.4826 * np.median(np.abs(image[finite] - np.median(image[finite])))
    return np.arcsinh(np.where(finite, image, np.nan) / max(3.0 * noise, 1e-6))


def draw_preview(
    out: str | os.PathLike, *, config: str = "default", seed: int = 0, n_objects: int = 6
) -> Path:
    """Draw ``n_objects`` spectroscopic objects x nine bands as served; write a PNG.

    Beside it, ``<stem>.structure.png`` shows the g - z colour map of a large bulge + disk
    galaxy and a noisy r-band cutout of the galaxy with the most close neighbours.

    Raises
    ------
    ConfigError
        If ``n_objects`` is not positive or ``out`` does not end in ``.png``.
    """
    out = Path(out)
    if out.suffix.lower() != ".png":
        raise ConfigError(f"--out must be a .png file, got {str(out)!r}")
    if n_objects < 1:
        raise ConfigError(f"--n must be a positive number of objects, got {n_objects!r}")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mantis.sky._server import load_universe
    from mantis.sky._structure_preview import draw_structure

    universe = load_universe(config, seed)
    objects = pick_objects(universe, n_objects)
    images = asyncio.run(_fetch_all(universe, objects))
    fig, axes = plt.subplots(
        len(objects), len(BANDS), figsize=(1.3 * len(BANDS), 1.4 * len(objects)), squeeze=False
    )
    for row, (obj, bands) in enumerate(zip(objects.itertuples(), images, strict=True)):
        for col, band in enumerate(BANDS):
            ax = axes[row, col]
            ax.set_xticks([])
            ax.set_yticks([])
            image = bands[band.name]
            if image is None:
                ax.set_facecolor("0.85")
                ax.text(0.5, 0.5, "no data", ha="center", va="center", fontsize=7,
                        transform=ax.transAxes)  # fmt: skip
            else:
                ax.imshow(_stretch(image), origin="lower", cmap="gray_r", interpolation="nearest")
            if row == 0:
                ax.set_title(band.name, fontsize=9)
            if col == 0:
                ax.set_ylabel(f"{obj.id}\nz={obj.z:.2f}", fontsize=7)
    fig.suptitle(f"mantis sky '{config}' (seed {seed}) as served: asinh stretch", fontsize=9)
    fig.tight_layout()
    _save_atomic(fig, out)
    structure = plt.figure(figsize=(10.0, 3.6))
    draw_structure(universe, structure)
    structure.suptitle(f"mantis sky '{config}' (seed {seed}): colour gradient and neighbours",
                       fontsize=9)  # fmt: skip
    structure.tight_layout()
    _save_atomic(structure, out.with_name(f"{out.stem}.structure.png"))
    return out


def _save_atomic(fig, out: Path) -> None:
    """Write ``fig`` as a PNG to a temporary name beside ``out``, rename it, close ``fig``."""
    import matplotlib.pyplot as plt

    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=out.parent, suffix=".png", delete=False) as handle:
        partial = Path(handle.name)
    try:
        fig.savefig(partial, dpi=110)
        partial.replace(out)
    finally:
        plt.close(fig)
        partial.unlink(missing_ok=True)
