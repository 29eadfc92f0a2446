"""Live tests against the real services (ps1images, unwise.me, the Legacy Survey viewer).

Skipped by default; run with ``pytest -m remote tests/fetch/test_remote.py``.
"""

from __future__ import annotations

import pandas as pd
import pytest
from astropy.io import fits

from mantis.fetch import CutoutCache, fetch_catalog

pytestmark = pytest.mark.remote

# M101 field (PS1, GALEX and unWISE all cover it) and one position south of the PS1 footprint
OBJECTS = pd.DataFrame({"id": ["m101", "south"], "ra": [210.80227, 53.1], "dec": [54.34895, -45.0]})


@pytest.fixture(scope="module")
def live_cache(tmp_path_factory):
    path = tmp_path_factory.mktemp("live")
    summary = fetch_catalog(OBJECTS, cache_dir=path, progress=False, concurrency=2)
    return summary, CutoutCache(path)


def test_live_fetch_finishes_without_failures(live_cache):
    summary, cache = live_cache
    assert summary.ok, summary.format()
    assert cache.status("south", "ps1") == "no_coverage"
    for survey in ("ps1", "galex", "unwise"):
        assert cache.status("m101", survey) == "done"


def test_live_ps1_cutout_is_centred_at_native_scale(live_cache):
    _, cache = live_cache
    from astropy.wcs import WCS

    paths = cache.product_paths("m101", "ps1")
    assert len(paths) == 5
    with fits.open(paths[0]) as hdul:
        header = hdul[0].header
        assert header["NAXIS1"] == header["NAXIS2"] == 170
        x, y = WCS(header).all_world2pix(210.80227, 54.34895, 0)
        assert abs(x - 84.5) < 1.5 and abs(y - 84.5) < 1.5
        assert header["EXPTIME"] > 0


def test_live_galex_cube_has_both_bands(live_cache):
    _, cache = live_cache
    (path,) = cache.product_paths("m101", "galex")
    with fits.open(path) as hdul:
        assert hdul[0].data.shape == (2, 32, 32)
