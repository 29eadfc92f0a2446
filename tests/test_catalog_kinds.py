"""One catalogue reader: every stage accepts the same kinds with the same column rules."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from astropy.table import Table

from mantis.catalog import CATALOG_EXTENSIONS, count_rows, iter_table_chunks, read_catalog
from mantis.exceptions import CatalogError
from mantis.predict._catalog_stream import iter_catalog_chunks
from mantis.sky import Universe
from mantis.surveys import BANDS

TABLE = pd.DataFrame({"ID": ["a", "b", "c", "d", "e"], "RA": [10.0, 11, 12, 13, 14],
                      "Dec": [-1.0, 0, 1, 2, 3], "mag": [20.0, 21, 22, 23, 24]})  # fmt: skip


def write(table: pd.DataFrame, path) -> None:
    name = str(path)
    plain = name[:-3] if name.endswith(".gz") else name
    if plain.endswith(".csv"):
        table.to_csv(plain, index=False)
    elif plain.endswith(".parquet"):
        table.to_parquet(plain)
    elif plain.endswith(".fits"):
        Table.from_pandas(table).write(plain, format="fits")
    else:
        Table.from_pandas(table).write(plain, format="votable")
    if name.endswith(".gz"):
        with Path(plain).open("rb") as src, gzip.open(name, "wb") as dst:
            shutil.copyfileobj(src, dst)


KINDS = ["t.csv", "t.csv.gz", "t.parquet", "t.fits", "t.fits.gz", "t.vot"]


def test_every_kind_is_listed_once():
    assert {name[1:] for name in KINDS} <= set(CATALOG_EXTENSIONS)


@pytest.mark.parametrize("name", KINDS)
def test_every_stage_reads_every_kind_alike(tmp_path, name):
    path = tmp_path / name
    write(TABLE, path)
    whole = read_catalog(path)
    assert whole["id"].tolist() == ["a", "b", "c", "d", "e"]
    np.testing.assert_allclose(whole["ra"], TABLE["RA"])
    assert count_rows(path) == 5
    chunks = list(iter_catalog_chunks(path, 2))
    assert [len(c) for c in chunks] == [2, 2, 1]
    streamed = pd.concat(chunks)
    assert streamed["id"].tolist() == whole["id"].tolist()
    assert streamed["_row"].tolist() == [0, 1, 2, 3, 4]
    np.testing.assert_allclose(streamed["dec"], whole["dec"])
    assert sum(len(c) for c in iter_table_chunks(path, 3)) == 5


@pytest.mark.parametrize("name", ["s.csv.gz", "s.vot"])
def test_the_sky_reads_user_sources_of_the_same_kinds(tmp_path, name):
    table = TABLE.copy()
    for band in BANDS:
        table[f"mag_{band.name}"] = 21.0
    path = tmp_path / name
    write(table, path)
    sources = Universe.from_catalog(path).sources
    assert sorted(sources["id"]) == ["a", "b", "c", "d", "e"]  # RA/Dec/ID in any case
    np.testing.assert_allclose(np.sort(sources["dec"]), TABLE["Dec"])


def test_errors_name_the_file_and_what_is_allowed(tmp_path):
    with pytest.raises(CatalogError, match=r"unsupported extension '\.txt'; allowed: .*\.csv\.gz"):
        count_rows(tmp_path / "t.txt")
    with pytest.raises(CatalogError, match="does not exist"):
        list(iter_table_chunks(tmp_path / "none.vot", 10))
    with pytest.raises(CatalogError, match="chunk_rows must be an integer >= 1, got 0"):
        list(iter_table_chunks(tmp_path / "none.csv", 0))
    (tmp_path / "bad.vot").write_text("<not a votable")
    with pytest.raises(CatalogError, match=r"cannot read catalogue .* as votable"):
        read_catalog(tmp_path / "bad.vot")
