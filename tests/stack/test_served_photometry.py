"""Sources of known AB magnitude, served by the imitation services, fetched and built.

The whole chain a user runs: `mantis sky serve` renders the products in each service's own
format, `mantis.fetch.fetch_catalog` downloads them into a cache, `mantis.stack.build_dataset`
writes the HDF5 dataset, and aperture photometry on the stored grids (each survey's native
grid and the nine-band early stack) must give back the injected magnitudes.
"""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from astropy.io import fits
from stack_products import ISOLATED_POSITIONS, isolated_point_sources

from mantis.fetch import CutoutCache, fetch_catalog
from mantis.sky import Universe
from mantis.sky.testing import running_server, serving_in_thread
from mantis.stack._build import build_dataset, resolve_build_config
from mantis.stack._grids import EARLY
from mantis.surveys import BAND_INDEX, BANDS, SURVEYS, band, nanomaggies_to_mag

APERTURE_ARCSEC = 14.0  # > 5 sigma of the widest PSF (W2), inside the smallest grid (32")
SKY_SEED = 4


def fetch_and_build(catalog: pd.DataFrame, url: str, root) -> dict[str, np.ndarray]:
    """Fetch every survey for ``catalog`` from ``url`` and build; return the stored arrays."""
    summary = fetch_catalog(catalog, cache_dir=root / "cache", endpoint=url, progress=False)
    assert summary.ok, summary.failure_reasons
    build_dataset(catalog, root / "cache", root / "dataset.h5", progress=False)
    with h5py.File(root / "dataset.h5") as f:
        return {
            name: f[name][()]
            for name in (
                *(f"{s}/{part}" for s in (*SURVEYS, EARLY) for part in ("image", "valid")),
                *(f"catalog/has_{s}" for s in SURVEYS),
            )
        }


def aperture_photometry(images: np.ndarray, pixel_scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Magnitudes and centroid offsets (pixels) in a circle centred on the grid centre.

    ``images`` is ``(N, n_bands, H, W)``; returns ``mag (N, n_bands)`` and
    ``offset (N, n_bands, 2)`` (x, y of the light-weighted centroid minus the grid centre).
    """
    size = images.shape[-1]
    centre = (size - 1) / 2.0
    y, x = np.mgrid[:size, :size] - centre
    inside = np.hypot(x, y) * pixel_scale <= APERTURE_ARCSEC
    flux = (images * inside).sum(axis=(2, 3))
    with np.errstate(divide="ignore", invalid="ignore"):
        offset = (
            np.stack(
                [(images * inside * x).sum(axis=(2, 3)), (images * inside * y).sum(axis=(2, 3))],
                axis=-1,
            )
            / flux[..., None]
        )
        return nanomaggies_to_mag(flux), offset


@pytest.fixture(scope="module")
def served_point_sources(tmp_path_factory):
    """Isolated point sources served by a ``mantis sky serve`` subprocess, fetched and built."""
    catalog = pd.DataFrame(
        {
            "id": list(ISOLATED_POSITIONS),
            "ra": [ra for ra, _ in ISOLATED_POSITIONS.values()],
            "dec": [dec for _, dec in ISOLATED_POSITIONS.values()],
        }
    )
    sky = isolated_point_sources(seed=SKY_SEED)
    truth = np.array([[mags[b.name] for b in BANDS] for _, _, mags in sky.sources])
    root = tmp_path_factory.mktemp("served_point_sources")
    with pytest.MonkeyPatch.context() as patch:
        # the server subprocess imports the stand-in sky's factory from this folder
        here = str(Path(__file__).parent)
        patch.setenv(
            "PYTHONPATH", os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")]))
        )
        with running_server(
            config="stack_products:isolated_point_sources", seed=SKY_SEED, threads=True
        ) as url:
            arrays = fetch_and_build(catalog, url, root)
    return arrays, truth, CutoutCache(root / "cache")


def test_injected_magnitudes_come_back_on_every_grid(served_point_sources):
    arrays, truth, _ = served_point_sources
    grids = resolve_build_config("build")["grids"]
    for name in (*SURVEYS, EARLY):
        band_names = [b.name for b in BANDS] if name == EARLY else SURVEYS[name].bands
        mags, offsets = aperture_photometry(arrays[f"{name}/image"], grids[name]["pixel_scale"])
        measured = arrays[f"{name}/valid"].all(axis=(2, 3))  # (objects, bands)
        # everything is measured but PS1 in the south (checked to be masked below)
        in_ps1 = np.array([band(n).survey == "ps1" for n in band_names])
        np.testing.assert_array_equal(measured, arrays["catalog/has_ps1"][:, None] | ~in_ps1)
        expected = truth[:, [BAND_INDEX[n] for n in band_names]]
        # a noise-free sky: what is left is the reprojection's error and the aperture's
        np.testing.assert_allclose(mags[measured], expected[measured], atol=0.01, err_msg=name)
        assert np.abs(offsets[measured]).max() < 0.1, name  # each object at its grid centre


def test_tile_boundary_source_was_stitched_from_two_tiles(served_point_sources):
    arrays, _, cache = served_point_sources
    (path,) = cache.product_paths("tile_edge", "unwise")
    with tarfile.open(path) as tar:
        shapes = [
            fits.getdata(io.BytesIO(tar.extractfile(member).read())).shape
            for member in tar.getmembers()
            if member.name.endswith("-w1-img-m.fits")
        ]
    # the precondition that makes the magnitude check above a stitching check
    assert len(shapes) == 2 and len(set(shapes)) == 2
    assert arrays["unwise/valid"][1].all() and arrays["early/valid"][1, 7:].all()


def test_no_ps1_south_of_its_footprint_is_masked_not_zero(served_point_sources):
    arrays, _, _ = served_point_sources
    assert list(arrays["catalog/has_ps1"]) == [True, True, False, False]
    assert arrays["catalog/has_galex"].all() and arrays["catalog/has_unwise"].all()
    assert not arrays["ps1/valid"][2:].any() and not arrays["early/valid"][2:, 2:7].any()
    assert arrays["early/valid"][2:, [0, 1, 7, 8]].all()
    assert arrays["early/valid"][:2].all()


def test_stars_of_the_real_renderer_within_0_05_mag(tmp_path):
    """GalSim-rendered stars with sky noise (Moffat PS1 PSF, position-dependent seeing)."""
    stars = pd.DataFrame(
        {
            "id": ["bright", "mid", "faint"],
            "ra": [150.10, 150.00, 150.15],
            "dec": [2.200, 2.277, 2.100],
            "kind": "star",
            "size_arcsec": 0.0,
            **{f"mag_{b.name}": [15.0, 15.5, 16.0] for b in BANDS},
        }
    )
    stars.to_parquet(tmp_path / "stars.parquet")
    universe = Universe.from_catalog(tmp_path / "stars.parquet", seed=1)
    with serving_in_thread(universe) as url:
        arrays = fetch_and_build(stars[["id", "ra", "dec"]], url, tmp_path)
    truth = stars[[f"mag_{b.name}" for b in BANDS]].to_numpy()
    grids = resolve_build_config("build")["grids"]
    for name, survey in SURVEYS.items():
        mags, _ = aperture_photometry(arrays[f"{name}/image"], grids[name]["pixel_scale"])
        columns = [f"mag_{band_name}" for band_name in survey.bands]
        np.testing.assert_allclose(mags, stars[columns].to_numpy(), atol=0.05, err_msg=name)
    mags, _ = aperture_photometry(arrays["early/image"], grids["early"]["pixel_scale"])
    np.testing.assert_allclose(mags, truth, atol=0.05)
    assert arrays["early/valid"].all()
