"""Survey fetchers against the scriptable fake services: requests, coverage, resume."""

from __future__ import annotations

import gzip
import io
import tarfile
from collections import Counter
from urllib.parse import parse_qs, urlparse

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits

from mantis.exceptions import CatalogError, ConfigError
from mantis.fetch import (
    CutoutCache,
    GalexFetcher,
    PanStarrsFetcher,
    SkyObject,
    UnwiseFetcher,
    cutout_pixels,
    make_fetchers,
)

ENDPOINTS = {
    "ps1": {
        "base_url": "https://ps1.example",
        "filenames_path": "/cgi-bin/ps1filenames.py",
        "cutout_path": "/cgi-bin/fitscut.cgi",
    },
    "unwise": {
        "base_url": "https://unwise.example",
        "cutout_path": "/cutout_fits",
        "version": "neo7",
    },
    "galex": {
        "base_url": "https://ls.example",
        "cutout_path": "/viewer/fits-cutout",
        "layer": "galex",
    },
}


def _config():
    return {"ps1": {"lookup_chunk": 3}, "galex": {"min_pixels": 32}, "unwise": {"min_pixels": 32}}


def test_default_cutout_sizes_in_native_pixels():
    assert cutout_pixels("ps1", 42.5) == 170
    assert cutout_pixels("galex", 42.5, 32) == 32  # 28.3 px rounds up to 29, then the floor
    assert cutout_pixels("unwise", 42.5, 32) == 32
    assert cutout_pixels("galex", 60.0, 32) == 40
    assert cutout_pixels("unwise", 100.0, 32) == 37  # 36.4 px rounded up
    with pytest.raises(ConfigError, match="positive number of arcsec, got -3"):
        cutout_pixels("ps1", -3)


def test_requests_are_built_without_sending():
    objects = [SkyObject(f"o{i}", 10.0 + i, 20.0) for i in range(7)]
    ps1 = PanStarrsFetcher(ENDPOINTS["ps1"], size_arcsec=42.5, options={"lookup_chunk": 3})
    lookups = ps1.build_requests(objects)
    assert [len(r.object_ids) for r in lookups] == [3, 3, 1]
    first = lookups[0]
    assert first.method == "POST" and first.url == "https://ps1.example/cgi-bin/ps1filenames.py"
    assert first.form["filters"] == "grizy" and first.form["type"] == "stack"
    assert [tuple(map(float, line.split())) for line in first.form["file"].splitlines()] == [
        (10.0, 20.0),
        (11.0, 20.0),
        (12.0, 20.0),
    ]
    rows = [{"filter": "g", "filename": "/rings.v3.skycell/1/051/x.stk.g.unconv.fits"}]
    (cut,) = ps1.cutout_requests(objects[0], rows)
    assert cut.params["red"] == rows[0]["filename"] and cut.params["size"] == "170"
    assert cut.params["format"] == "fits"

    (unwise,) = UnwiseFetcher(
        ENDPOINTS["unwise"], size_arcsec=42.5, options={"min_pixels": 32}
    ).build_requests(objects[:1])
    assert unwise.url == "https://unwise.example/cutout_fits"
    assert unwise.params == {
        "version": "neo7",
        "ra": "10.00000000",
        "dec": "20.00000000",
        "size": "32",
        "bands": "12",
    }
    assert not any(k.startswith("file_") for k in unwise.params)  # all four products

    (galex,) = GalexFetcher(
        ENDPOINTS["galex"], size_arcsec=42.5, options={"min_pixels": 32}
    ).build_requests(objects[:1])
    assert galex.params["layer"] == "galex" and galex.params["pixscale"] == "1.5"
    assert galex.params["size"] == "32" and galex.params["bands"] == "nf"


def test_endpoint_replaces_every_base_url():
    fetchers = make_fetchers(
        ["ps1", "galex", "unwise"],
        config=_config(),
        endpoint="http://127.0.0.1:9",
        endpoints=ENDPOINTS,
    )
    urls = [r.url for f in fetchers for r in f.build_requests([SkyObject("a", 1.0, 2.0)])]
    assert all(u.startswith("http://127.0.0.1:9/") for u in urls)
    with pytest.raises(ConfigError, match="allowed: galex, ps1, unwise"):
        make_fetchers(["sdss"], config=_config(), endpoints=ENDPOINTS)
    with pytest.raises(ConfigError, match="http:// or https:// URL, got 'localhost:9'"):
        make_fetchers(["ps1"], config=_config(), endpoint="localhost:9", endpoints=ENDPOINTS)


def _catalog():
    return pd.DataFrame(
        {
            "id": ["plain", "south", "outside", "gap", "nan-y", "twotile", "plain2"],
            "ra": [10.0, 20.0, 205.0, 215.0, 225.0, 305.0, 11.0],
            "dec": [5.0, -45.0, 5.0, 5.0, 5.0, 5.0, 6.0],
        }
    )


def test_fetch_records_done_and_no_coverage_with_reasons(fake_surveys, fetch_fake, tmp_path):
    summary = fetch_fake(_catalog())
    assert summary.ok
    cache = CutoutCache(tmp_path)
    ps1, galex, unwise = (cache.statuses(s) for s in ("ps1", "galex", "unwise"))
    assert ps1 == {
        **dict.fromkeys(["plain", "outside", "gap", "nan-y", "twotile", "plain2"], "done"),
        "south": "no_coverage",
    }
    assert "dec < -30" in cache.record("south", "ps1")["last_error"]
    assert galex["outside"] == "no_coverage" and galex["gap"] == "no_coverage"
    assert "HTTP 500" in cache.record("outside", "galex")["last_error"]
    assert "all zeros" in cache.record("gap", "galex")["last_error"]
    assert set(unwise.values()) == {"done"}
    # the persistently all-NaN y band is left out and named; the other four are kept
    paths = cache.product_paths("nan-y", "ps1")
    assert [p.name.split(".")[1] for p in paths] == ["g", "r", "i", "z"]
    assert "band(s) y" in cache.record("nan-y", "ps1")["last_error"]
    # a partly NaN (skycell edge) cutout is kept as served
    with fits.open(cache.product_paths("plain", "ps1")[0]) as hdul:
        assert np.isnan(hdul[0].data).any() and np.isfinite(hdul[0].data).any()
        assert hdul[0].data.shape == (170, 170)
    # both unWISE tiles are kept in the archive as served
    with tarfile.open(cache.product_paths("twotile", "unwise")[0]) as tar:
        assert len({n.split("-")[1] for n in tar.getnames()}) == 2
    # PS1 file names were looked up in batches of three positions, never one by one
    lookups = [r for kind, r in fake_surveys.requests if kind == "lookup"]
    assert [r["n"] for r in lookups] == [3, 3, 1] and {r["method"] for r in lookups} == {"POST"}
    assert summary.statuses["ps1"]["no_coverage"] == 1
    assert summary.statuses["galex"] == {"done": 5, "no_coverage": 2}


def test_rerun_fetches_nothing_already_finished(fake_surveys, fetch_fake, tmp_path):
    fake_surveys.script["ps1-r"] = ["http503"] * 4  # every attempt of the r band of "plain"
    first = fetch_fake(_catalog().iloc[:2])
    assert not first.ok and first.failure_reasons == {"ps1": {"HTTP 503": 1}}
    sent_before = fake_surveys.counts.copy()
    second = fetch_fake(_catalog().iloc[:2])
    assert second.ok
    sent = fake_surveys.counts - sent_before
    # only the failed PS1 product is fetched again: one lookup and its five bands
    assert sent == {"lookup": 1, "ps1-g": 1, "ps1-r": 1, "ps1-i": 1, "ps1-z": 1, "ps1-y": 1}
    cache = CutoutCache(tmp_path)
    assert cache.record("plain", "ps1")["attempts"] == 2
    assert cache.record("plain", "galex")["attempts"] == 1
    assert second.skipped == {"galex": 2, "ps1": 1, "unwise": 2}


@pytest.mark.parametrize(
    ("mode", "methods"),
    [("centre", {"POST": 2}), ("scrambled", {"POST": 2, "GET": 3})],
)
def test_lookup_rows_with_skycell_centres_are_matched_by_order_or_looked_up_singly(
    fake_surveys, fetch_fake, tmp_path, mode, methods
):
    fake_surveys.lookup_mode = mode
    catalog = _catalog().iloc[[0, 1, 6, 2]]  # plain, south (no rows), plain2, outside
    summary = fetch_fake(catalog, surveys=["ps1"])
    assert summary.ok
    # lookup chunks of three: two POSTs; unmatchable rows cost one GET per object of the chunk
    assert Counter(r["method"] for kind, r in fake_surveys.requests if kind == "lookup") == methods
    cache = CutoutCache(tmp_path)
    assert cache.statuses("ps1") == {
        "plain": "done",
        "south": "no_coverage",
        "plain2": "done",
        "outside": "done",
    }
    # each object got the skycell of its own position
    for ra in (10.0, 11.0, 205.0):
        (cut,) = [
            r for kind, r in fake_surveys.requests if kind == "ps1-g" and float(r["ra"]) == ra
        ]
        assert f".{int(ra * 10) % 2000:04d}.051." in cut["red"]


def test_stored_files_match_manifest_checksums(fake_surveys, fetch_fake, tmp_path):
    import hashlib

    fetch_fake(_catalog().iloc[:1])
    cache = CutoutCache(tmp_path)
    for survey in ("ps1", "galex", "unwise"):
        paths = cache.product_paths("plain", survey)
        blob = b"".join(p.read_bytes() for p in paths)
        record = cache.record("plain", survey)
        assert record["bytes"] == len(blob)
        assert record["sha256"] == hashlib.sha256(blob).hexdigest()
    gz = cache.product_paths("plain", "unwise")[0].read_bytes()
    assert gzip.decompress(gz)  # a complete gzip stream
    assert not list(tmp_path.rglob("*.part-*"))


def test_invalid_rows_are_rejected_before_anything_is_sent(fake_surveys, fetch_fake, tmp_path):
    bad = pd.DataFrame(
        {"id": ["a", "b", "b", "c"], "ra": [10.0, 400.0, 12.0, "x"], "dec": [0.0, 0.0, 0.0, 0.0]}
    )
    with pytest.raises(CatalogError) as info:
        fetch_fake(bad)
    message = str(info.value)
    assert "row 1: ra outside [0, 360)" in message
    assert "row 2: id is duplicated" in message and "row 3: ra is not a finite number" in message
    assert fake_surveys.counts.total() == 0
    assert not (tmp_path / "manifest.sqlite").exists()


def test_summary_table_counts_reasons(fake_surveys, fetch_fake, tmp_path):
    fake_surveys.script["galex"] = ["stall"] * 4
    summary = fetch_fake(_catalog().iloc[:1], surveys=["galex"])
    text = summary.format()
    assert "galex failed: 1 x timeout" in text
    assert summary.n_failed == 1 and not summary.ok


def test_read_back_fits_is_what_the_service_sent(fake_surveys, fetch_fake, tmp_path):
    fetch_fake(_catalog().iloc[:1], surveys=["galex"])
    (path,) = CutoutCache(tmp_path).product_paths("plain", "galex")
    with fits.open(path) as hdul:
        assert hdul[0].data.shape == (2, 32, 32) and len(hdul) == 2
        np.testing.assert_allclose(hdul[0].data, 0.01, rtol=1e-6)
    query = parse_qs(
        urlparse("?" + "&".join(f"{k}={v}" for k, v in fake_surveys.requests[-1][1].items())).query
    )
    assert query["invvar"] == ["1"]
    buffer = io.BytesIO(path.read_bytes())
    assert buffer.read(9) == b"SIMPLE  ="


def test_unwritable_cache_is_a_clear_error(fake_surveys, fetch_fake, tmp_path):
    from mantis.exceptions import FetchError

    (tmp_path / "ps1").write_text("a file where the ps1 folder should be")
    with pytest.raises(FetchError, match="cannot write to the cache"):
        fetch_fake(_catalog().iloc[:1], surveys=["ps1"])
