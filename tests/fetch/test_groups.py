"""Shared cutouts for neighbours: grouped fetching gives the products of per-object fetching."""

from __future__ import annotations

import gzip
import io
import tarfile

import h5py
import numpy as np
import pandas as pd
import pytest
from astropy.io import fits

from mantis.exceptions import ConfigError
from mantis.fetch import CutoutCache, SkyObject, fetch_catalog
from mantis.fetch._groups import GroupSettings, choose_cell, group_window, plan_groups
from mantis.sky import Universe
from mantis.sky.testing import serving_in_thread
from mantis.stack import build_dataset

DENSE_FIELD = (150.10, 2.20)


def dense_catalog(n: int = 36) -> pd.DataFrame:
    """``n`` positions in a 0.06 deg box (10 000 per square degree), and two without data."""
    rng = np.random.default_rng(7)
    ra = DENSE_FIELD[0] + rng.uniform(-0.03, 0.03, n)
    dec = DENSE_FIELD[1] + rng.uniform(-0.03, 0.03, n)
    ids = [f"dense{i:03d}" for i in range(n)]
    # south of the PS1 footprint: no_coverage there, whichever way it is fetched
    south = pd.DataFrame({"id": ["south0", "south1"], "ra": [53.10, 53.11], "dec": [-40.0, -40.0]})
    return pd.concat([pd.DataFrame({"id": ids, "ra": ra, "dec": dec}), south], ignore_index=True)


def _config(fast_config, enabled: bool) -> dict:
    # large group cutouts take seconds to draw on a busy machine: no timeouts in the way
    config = fast_config(connect_timeout_s=30.0, read_timeout_s=120.0, total_timeout_s=300.0)
    config["ps1"]["lookup_chunk"] = 50
    config["groups"] = {"enabled": enabled, "cells_arcsec": [120, 240]}
    return config


def _tar_images(body: bytes) -> list[tuple[str, np.ndarray, dict]]:
    out = []
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(body))) as tar:
        for member in tar:
            raw = tar.extractfile(member).read()
            raw = gzip.decompress(raw) if member.name.endswith(".gz") else raw
            with fits.open(io.BytesIO(raw)) as hdul:
                out.append((member.name, hdul[0].data.copy(), dict(hdul[0].header)))
    return out


@pytest.fixture(scope="module")
def fetched_both_ways(tmp_path_factory):
    from tests.fetch.conftest import fast_config

    root = tmp_path_factory.mktemp("groups")
    catalog = dense_catalog()
    universe = Universe.from_config("test", seed=0)
    summaries = {}
    with serving_in_thread(universe) as url:
        for name, enabled in (("single", False), ("grouped", True)):
            summaries[name] = fetch_catalog(
                catalog, cache_dir=root / name, endpoint=url, progress=False,
                config=_config(fast_config, enabled),
            )  # fmt: skip
    return root, catalog, summaries


def test_grouped_fetch_sends_fewer_requests(fetched_both_ways):
    _, catalog, summaries = fetched_both_ways
    single, grouped = summaries["single"], summaries["grouped"]
    assert single.ok and grouped.ok
    for survey in ("ps1", "unwise", "galex"):
        assert dict(grouped.statuses[survey]) == dict(single.statuses[survey])
    n = len(catalog)
    assert single.requests["ps1"] > 5 * (n - 2)  # five bands per object north of dec -30
    # at most one request per object over the three services (first attempts; a slow answer
    # from the busy test server may be retried)
    assert sum(grouped.requests.values()) - sum(grouped.retries.values()) <= n


def test_grouped_ps1_products_equal_per_object_ones(fetched_both_ways):
    root, catalog, _ = fetched_both_ways
    with CutoutCache(root / "single") as a, CutoutCache(root / "grouped") as b:
        compared = 0
        for object_id in catalog["id"]:
            assert a.status(object_id, "ps1") == b.status(object_id, "ps1")
            paths_a, paths_b = a.product_paths(object_id, "ps1"), b.product_paths(object_id, "ps1")
            assert [p.name for p in paths_a] == [p.name for p in paths_b]
            for pa, pb in zip(paths_a, paths_b, strict=True):
                with fits.open(pa) as ha, fits.open(pb) as hb:
                    assert ha[0].header.tostring() == hb[0].header.tostring(), pa.name
                    # equal but for rounding where a source is drawn by FFT: sub-pixel offsets
                    # computed through CRPIX values an integer apart (1e-5 of the noise)
                    np.testing.assert_allclose(ha[0].data, hb[0].data, rtol=1e-5, atol=1e-3,
                                               err_msg=pa.name)  # fmt: skip
                    assert (np.isnan(ha[0].data) == np.isnan(hb[0].data)).all()
                compared += 1
        assert compared == 5 * (len(catalog) - 2)
        # the group answers are kept beside the per-object cache
        assert list((root / "grouped" / "groups" / "ps1").glob("*.bin"))


def test_grouped_unwise_tiles_equal_pixel_for_pixel(fetched_both_ways):
    root, catalog, _ = fetched_both_ways
    with CutoutCache(root / "single") as a, CutoutCache(root / "grouped") as b:
        for object_id in catalog["id"]:
            (pa,) = a.product_paths(object_id, "unwise")
            (pb,) = b.product_paths(object_id, "unwise")
            members_a, members_b = _tar_images(pa.read_bytes()), _tar_images(pb.read_bytes())
            assert [m[0] for m in members_a] == [m[0] for m in members_b]
            for (name, data_a, head_a), (_, data_b, head_b) in zip(
                members_a, members_b, strict=True
            ):
                np.testing.assert_allclose(data_a, data_b, rtol=1e-6, atol=1e-6, err_msg=name)
                assert head_a == head_b


def test_grouped_galex_windows_are_centred_on_their_objects(fetched_both_ways):
    root, catalog, _ = fetched_both_ways
    from astropy.wcs import WCS

    with CutoutCache(root / "grouped") as b:
        for row in catalog.itertuples():
            (path,) = b.product_paths(row.id, "galex")
            with fits.open(path) as hdul:
                assert hdul[0].data.shape == (2, 32, 32) and hdul[1].data.shape == (2, 32, 32)
                x, y = WCS(hdul[0].header, naxis=2).all_world2pix(row.ra, row.dec, 0)
            assert abs(float(x) - 15.5) <= 0.5 + 1e-6 and abs(float(y) - 15.5) <= 0.5 + 1e-6


def test_build_sees_the_same_ps1_and_unwise_pixels(fetched_both_ways):
    root, catalog, _ = fetched_both_ways
    arrays = {}
    for name in ("single", "grouped"):
        build_dataset(catalog, root / name, root / f"{name}.h5", progress=False)
        with h5py.File(root / f"{name}.h5") as f:
            arrays[name] = {k: f[k][()] for k in ("ps1/image", "unwise/image", "ps1/valid")}
    for key, single in arrays["single"].items():
        np.testing.assert_allclose(single, arrays["grouped"][key], rtol=1e-5, atol=1e-6,
                                   err_msg=key)  # fmt: skip


def test_resume_after_a_grouped_run_sends_nothing(fetched_both_ways, fast_config):
    root, catalog, _ = fetched_both_ways
    again = fetch_catalog(catalog, cache_dir=root / "grouped", endpoint="http://127.0.0.1:9",
                          progress=False, config=_config(fast_config, True))  # fmt: skip
    assert again.ok and sum(again.requests.values()) == 0


def test_sparse_objects_stay_one_per_request():
    objects = [SkyObject(f"s{i}", 10.0 * i, 0.0) for i in range(20)]
    assert choose_cell(objects, [120 / 3600, 240 / 3600], 0.25, 170, 1600) == 0.0
    assert all(len(g) == 1 for g in plan_groups(objects, 240 / 3600))


def test_dense_objects_choose_the_cheapest_cell():
    rng = np.random.default_rng(1)
    objects = [SkyObject(f"d{i}", 150 + x, 2 + y) for i, (x, y) in
               enumerate(rng.uniform(-0.05, 0.05, (400, 2)))]  # fmt: skip
    cells = [60 / 3600, 120 / 3600, 240 / 3600]
    chosen = choose_cell(objects, cells, 0.25, 170, 1600)
    assert chosen > 0

    def cost(cell):
        groups = plan_groups(objects, cell)
        return len(groups) * sum(group_window(g, 0.25, 170).side ** 2 for g in groups)

    assert cost(chosen) == min(cost(c) for c in cells)
    groups = plan_groups(objects, chosen)
    assert sorted(o.id for g in groups for o in g) == sorted(o.id for o in objects)


def test_group_window_holds_every_member_window():
    members = [SkyObject("a", 150.0, 2.0), SkyObject("b", 150.02, 2.01)]
    window = group_window(members, 0.25, 170)
    extent = 0.02 * np.cos(np.radians(2.005)) * 3600 / 0.25
    assert window.side >= extent + 170 and window.side <= 1.05 * extent + 170 + 8


@pytest.mark.parametrize(
    ("config", "named"),
    [({"cells_arcsec": [-1]}, "cells_arcsec"), ({"max_pixels": {"ps1": 0}}, "max_pixels.ps1"),
     ({"size": 3}, "unknown groups setting")],
)  # fmt: skip
def test_bad_group_settings_are_named(config, named):
    with pytest.raises(ConfigError, match=named):
        GroupSettings.from_config(config)


def test_stale_group_temporaries_are_removed(tmp_path):
    stale = tmp_path / "groups" / "ps1" / "abc.bin.part-999999999"
    kept = tmp_path / "groups" / "ps1" / "def.bin"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"half")
    kept.write_bytes(b"whole")
    with CutoutCache(tmp_path) as cache:
        assert cache.remove_stale_temporaries() == [stale]
    assert kept.exists() and not stale.exists()
