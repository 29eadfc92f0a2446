"""`mantis build` records why objects lack data and refuses a build with nothing in it."""

import h5py
import pytest
from stack_products import fill_cache

from mantis.cli import main
from mantis.stack import DatasetError, build_dataset

SURVEYS = ("galex", "ps1", "unwise")


def test_each_object_records_which_products_are_missing_and_why(
    tmp_path, small_catalog, test_config
):
    first, second = small_catalog["id"][:2]
    skip = {(first, "galex"): "no_coverage", (second, "ps1"): "failed",
            (second, "unwise"): "failed"}  # fmt: skip
    cache = fill_cache(tmp_path / "cache", small_catalog, skip=skip)
    cache.mark(second, "ps1", "failed", "HTTP 503: service unavailable")
    out = tmp_path / "d.h5"
    build_dataset(small_catalog, cache, out, test_config, progress=False)
    with h5py.File(out) as f:
        missing = f["catalog/missing"][:].astype(str).tolist()
        reasons = f["catalog/missing_reason"][:].astype(str).tolist()
    assert missing == ["galex", "ps1,unwise"] + [""] * 5
    assert reasons[0] == "galex: no_coverage"
    assert reasons[1] == "ps1: failed (HTTP 503); unwise: failed (test)"
    assert reasons[2:] == [""] * 5


def test_a_build_with_every_product_failed_is_refused_and_writes_nothing(
    tmp_path, small_catalog, test_config
):
    skip = {(i, s): "failed" for i in small_catalog["id"] for s in SURVEYS}
    cache = fill_cache(tmp_path / "cache", small_catalog, skip=skip)
    out = tmp_path / "d.h5"
    with pytest.raises(DatasetError, match=r"nothing to build: none of the 7 objects .*failed 7"):
        build_dataset(small_catalog, cache, out, test_config, progress=False)
    assert not out.exists()


def test_cli_build_with_nothing_fetched_says_one_line(tmp_path, small_catalog, capsys):
    skip = {(i, s): "no_coverage" for i in small_catalog["id"] for s in SURVEYS}
    fill_cache(tmp_path / "cache", small_catalog, skip=skip)
    catalog = tmp_path / "cat.csv"
    small_catalog.to_csv(catalog, index=False)
    out = tmp_path / "d.h5"
    code = main(["build", str(catalog), "--cutouts", str(tmp_path / "cache"), "--out", str(out),
                 "--no-progress"])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "nothing to build" in err and "no_coverage 7" in err
    assert not out.exists()


def test_a_build_whose_products_are_all_unreadable_is_refused(tmp_path, small_catalog, test_config):
    cache = fill_cache(tmp_path / "cache", small_catalog)
    for path in (tmp_path / "cache").rglob("*.fits"):
        path.write_bytes(b"not a FITS file")
    for path in (tmp_path / "cache").rglob("*.tar.gz"):
        path.write_bytes(b"not a tar file")
    out = tmp_path / "d.h5"
    with pytest.raises(DatasetError, match=r"nothing could be built.*unreadable: 7"):
        build_dataset(small_catalog, cache, out, test_config, progress=False)
    assert not out.exists()
