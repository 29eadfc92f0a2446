"""Catalogue reading: formats, default ids, and errors that name the rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from astropy.table import Table

from mantis.catalog import read_catalog, validate_rows
from mantis.exceptions import CatalogError


def _frame():
    return pd.DataFrame(
        {
            "id": ["a", "b", "c"],
            "ra": [0.0, 359.5, 150.25],
            "dec": [-90.0, 90.0, 2.5],
            "z": [0.1, 0.5, 1.2],
            "mag": [20, 21, 22],
        }
    )


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".fits"])
def test_every_format_reads_to_the_same_table(tmp_path, suffix):
    path = tmp_path / f"cat{suffix}"
    frame = _frame()
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    elif suffix == ".parquet":
        frame.to_parquet(path)
    else:
        Table.from_pandas(frame).write(path)
    df = read_catalog(path, require_z=True)
    assert list(df.columns[:3]) == ["id", "ra", "dec"] and {"z", "mag"} <= set(df.columns)
    assert df["id"].tolist() == ["a", "b", "c"]  # str, not bytes, even from FITS
    assert df["ra"].dtype == np.float64 and df["dec"].dtype == np.float64
    np.testing.assert_array_equal(df["ra"], frame["ra"])


def test_default_ids_are_iau_style_names(tmp_path):
    path = tmp_path / "noid.csv"
    pd.DataFrame({"RA": [1.5, 210.123456], "Dec": [-2.25, 45.0]}).to_csv(path, index=False)
    df = read_catalog(path)
    assert df["id"].tolist() == ["J001.50000-02.25000", "J210.12346+45.00000"]


def test_integer_ids_become_strings(tmp_path):
    path = tmp_path / "intid.csv"
    pd.DataFrame({"id": [7, 8], "ra": [1.0, 2.0], "dec": [0.0, 0.0]}).to_csv(path, index=False)
    assert read_catalog(path)["id"].tolist() == ["7", "8"]


def test_missing_columns_are_named(tmp_path):
    path = tmp_path / "bad.csv"
    pd.DataFrame({"ra": [1.0], "declination": [0.0]}).to_csv(path, index=False)
    with pytest.raises(CatalogError, match=r"lacks column\(s\) dec.*found: ra, declination"):
        read_catalog(path)
    with pytest.raises(CatalogError, match=r"lacks column\(s\) z"):
        read_catalog(_write(tmp_path, {"ra": [1.0], "dec": [0.0]}), require_z=True)


def _write(tmp_path, columns):
    path = tmp_path / "c.csv"
    pd.DataFrame(columns).to_csv(path, index=False)
    return path


def test_invalid_rows_are_named_with_what_is_allowed(tmp_path):
    path = _write(
        tmp_path,
        {
            "id": ["a", "b", "c", "c", "e"],
            "ra": [10.0, 360.0, -1.0, 5.0, "ten"],
            "dec": [91.0, 0.0, 0.0, 0.0, 0.0],
        },
    )
    with pytest.raises(CatalogError) as info:
        read_catalog(path)
    message = str(info.value)
    assert "5 invalid row(s)" in message
    assert "dec outside [-90, 90] degrees: row 0" in message
    assert "ra outside [0, 360) degrees: rows 1, 2" in message
    assert "id is duplicated: rows 2, 3" in message
    assert "ra is not a finite number: row 4" in message


def test_only_the_first_ten_rows_are_listed(tmp_path):
    path = _write(tmp_path, {"ra": [400.0] * 25, "dec": [0.0] * 25})
    with pytest.raises(CatalogError, match=r"rows 0, 1, 2, 3, 4, 5, 6, 7, 8, 9 and 15 more"):
        read_catalog(path)


def test_validate_rows_flags_without_failing():
    df = pd.DataFrame(
        {
            "id": ["a", "b", "c"],
            "ra": [1.0, np.nan, 3.0],
            "dec": [0.0, 0.0, -91.0],
            "z": [0.1, 0.2, -0.5],
        }
    )
    valid, reasons = validate_rows(df, require_z=True)
    assert valid.tolist() == [True, False, False]
    assert reasons == [
        "",
        "ra is not a finite number",
        "dec outside [-90, 90] degrees; z is not a finite number >= 0",
    ]


def test_unreadable_files_get_a_clear_error(tmp_path):
    with pytest.raises(CatalogError, match="does not exist"):
        read_catalog(tmp_path / "nope.csv")
    (tmp_path / "cat.txt").write_text("ra dec\n1 2\n")
    with pytest.raises(CatalogError, match=r"unsupported extension '.txt'; allowed: .csv"):
        read_catalog(tmp_path / "cat.txt")
    (tmp_path / "broken.parquet").write_bytes(b"not parquet")
    with pytest.raises(CatalogError, match=r"cannot read catalogue .* as parquet"):
        read_catalog(tmp_path / "broken.parquet")
