"""A local survey mirror (``local:DIR``) gives the products of the services, without HTTP."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits

from mantis.exceptions import ConfigError
from mantis.fetch import CutoutCache, fetch_catalog
from mantis.sky import Universe
from mantis.sky._mirror import parse_field, write_mirror
from mantis.sky.testing import serving_in_thread
from tests.fetch.test_groups import _tar_images

# one field across a PS1 skycell boundary (dec 2.399), one across an unWISE tile edge (the
# top edge of tile 1500p015 at dec 2.282, inside tile 1500p030)
FIELDS = [(150.10, 2.399, 0.02), (150.10, 2.282, 0.02)]


def _catalog() -> pd.DataFrame:
    rows = [("skyedge_lo", 150.100, 2.3985), ("skyedge_hi", 150.100, 2.3995),
            ("skycell_exact", 150.1023, 2.3990), ("tile_in", 150.095, 2.2780),
            ("tile_edge", 150.104, 2.2815), ("tile_out", 150.098, 2.2850),
            ("field_a", 150.106, 2.405), ("field_b", 150.092, 2.276)]  # fmt: skip
    return pd.DataFrame(rows, columns=["id", "ra", "dec"])


def _config(fast_config) -> dict:
    # large group cutouts take seconds to draw on a busy machine: no timeouts in the way
    config = fast_config(connect_timeout_s=30.0, read_timeout_s=120.0, total_timeout_s=300.0)
    config["ps1"]["bands"] = "r"
    return config


@pytest.fixture(scope="module")
def mirror_and_served(tmp_path_factory):
    from tests.fetch.conftest import fast_config

    root = tmp_path_factory.mktemp("mirror")
    write_mirror(root / "mirror", FIELDS, config="test", seed=0, ps1_bands="r")
    catalog = _catalog()
    config = _config(fast_config)
    local = fetch_catalog(catalog, cache_dir=root / "local", endpoint=f"local:{root / 'mirror'}",
                          surveys=("ps1", "unwise"), progress=False, config=config)  # fmt: skip
    with serving_in_thread(Universe.from_config("test", seed=0)) as url:
        served = fetch_catalog(catalog, cache_dir=root / "served", endpoint=url,
                               surveys=("ps1", "unwise"), progress=False,
                               config=config)  # fmt: skip
    return root, catalog, local, served


def test_mirror_uses_native_names_and_layouts(mirror_and_served):
    root = mirror_and_served[0] / "mirror"
    names = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.fits*"))
    assert "rings.v3.skycell/1384/059/rings.v3.skycell.1384.059.stk.r.unconv.fits" in names
    assert "rings.v3.skycell/1384/069/rings.v3.skycell.1384.069.stk.r.unconv.fits" in names
    for tile in ("1500p015", "1500p030"):
        for kind in ("img-m.fits", "invvar-m.fits.gz", "n-m.fits.gz", "std-m.fits.gz"):
            assert f"unwise-coadds/fulldepth/150/{tile}/unwise-{tile}-w1-{kind}" in names
    with fits.open(root / names[0]) as hdul:  # whole skycells, tile-compressed
        assert isinstance(hdul[1], fits.CompImageHDU) and hdul[1].shape == (6240, 6240)


def test_local_source_sends_no_request(mirror_and_served):
    _, _, local, _ = mirror_and_served
    assert local.ok and sum(local.requests.values()) == 0 and local.bytes_received == 0


def test_local_products_equal_served_products(mirror_and_served):
    root, catalog, local, served = mirror_and_served
    for survey in ("ps1", "unwise"):
        assert dict(local.statuses[survey]) == dict(served.statuses[survey])
    n_tiles = []
    with CutoutCache(root / "local") as a, CutoutCache(root / "served") as b:
        for object_id in catalog["id"]:
            (pa,), (pb,) = a.product_paths(object_id, "ps1"), b.product_paths(object_id, "ps1")
            with fits.open(pa) as ha, fits.open(pb) as hb:
                assert ha[0].header.tostring() == hb[0].header.tostring(), object_id
                np.testing.assert_allclose(ha[0].data, hb[0].data, rtol=1e-5, atol=1e-3)
            (pa,) = a.product_paths(object_id, "unwise")
            (pb,) = b.product_paths(object_id, "unwise")
            members_a, members_b = _tar_images(pa.read_bytes()), _tar_images(pb.read_bytes())
            assert [m[0] for m in members_a] == [m[0] for m in members_b], object_id
            for (name, data_a, head_a), (_, data_b, head_b) in zip(
                members_a, members_b, strict=True
            ):
                np.testing.assert_allclose(data_a, data_b, rtol=1e-6, atol=1e-6, err_msg=name)
                assert head_a == head_b
            n_tiles.append(len({m[0].split("-")[1] for m in members_a}))
    # the edge objects really met the edges: two tiles for some, skycells on both sides
    assert max(n_tiles) == 2
    with CutoutCache(root / "local") as a:
        cells = {fits.getheader(a.product_paths(i, "ps1")[0])["SKYCELL"] for i in catalog["id"]}
    assert cells == {"skycell.1384.059", "skycell.1384.069"}


def test_local_mirror_cannot_give_galex(tmp_path, fast_config):
    with pytest.raises(ConfigError, match="not galex"):
        fetch_catalog(_catalog(), cache_dir=tmp_path / "c", endpoint=f"local:{tmp_path}",
                      surveys=("galex",), progress=False, config=fast_config())  # fmt: skip


def test_missing_mirror_folder_is_named(tmp_path, fast_config):
    with pytest.raises(ConfigError, match="is not a folder"):
        fetch_catalog(_catalog(), cache_dir=tmp_path / "c", endpoint=f"local:{tmp_path}/none",
                      surveys=("ps1",), progress=False, config=fast_config())  # fmt: skip


@pytest.mark.parametrize("text", ["150,2", "150,2,0", "400,2,0.1", "a,b,c"])
def test_bad_field_is_named(text):
    with pytest.raises(ConfigError, match="--field"):
        parse_field(text)


def test_cli_bad_field_exits_2(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "mantis", "sky", "mirror", "--out", str(tmp_path),
         "--field", "1,2"], capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 2 and "--field" in done.stderr and "Traceback" not in done.stderr


def test_cli_missing_mirror_exits_2(tmp_path):
    catalog = tmp_path / "cat.csv"
    _catalog().to_csv(catalog, index=False)
    done = subprocess.run(
        [sys.executable, "-m", "mantis", "fetch", str(catalog), "--out", str(tmp_path / "c"),
         "--source", f"local:{tmp_path}/none", "--surveys", "ps1", "--groups", "--no-progress"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "is not a folder" in done.stderr and "Traceback" not in done.stderr
