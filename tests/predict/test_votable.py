"""VOTable in and out: catalogues read by every verb, ``mantis predict --format votable``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from astropy.io.votable import parse_single_table
from astropy.table import Table

from mantis.catalog import read_catalog
from mantis.exceptions import CatalogError
from mantis.predict import predict_catalog, read_predictions
from mantis.predict.testing import StandInPredictor, StandInSource


def _votable_catalog(path, n=7):
    rng = np.random.default_rng(2)
    df = pd.DataFrame({"ID": [f"v{i}" for i in range(n)], "RA": rng.uniform(0, 360, n),
                       "DEC": rng.uniform(-60, 60, n), "mag": rng.uniform(17, 21, n)})  # fmt: skip
    Table.from_pandas(df).write(path, format="votable")
    return df


def test_read_catalog_reads_votable(tmp_path):
    df = _votable_catalog(tmp_path / "cat.xml")
    cat = read_catalog(tmp_path / "cat.xml")
    assert cat.columns[:3].tolist() == ["id", "ra", "dec"]
    assert cat["id"].tolist() == df["ID"].tolist()
    np.testing.assert_allclose(cat["mag"], df["mag"])
    (tmp_path / "broken.vot").write_text("<VOTABLE><RESOURCE>")
    with pytest.raises(CatalogError, match=r"broken\.vot"):
        read_catalog(tmp_path / "broken.vot")


def test_predict_votable_in_and_out_matches_parquet(tmp_path):
    df = _votable_catalog(tmp_path / "cat.vot")
    kw = {"predictor": StandInPredictor(), "source": StandInSource(), "progress": False}
    predict_catalog(tmp_path / "cat.vot", tmp_path / "out.vot", batch_size=3, **kw)
    predict_catalog(tmp_path / "cat.vot", tmp_path / "out.parquet", **kw)
    got, probs, zgrid = read_predictions(tmp_path / "out.vot")
    ref, ref_probs, ref_grid = read_predictions(tmp_path / "out.parquet")
    assert zgrid == ref_grid and got["id"].tolist() == df["ID"].tolist()
    np.testing.assert_allclose(probs, ref_probs, rtol=1e-6)
    np.testing.assert_allclose(got["z_median"], ref["z_median"])
    fields = {f.name: f for f in parse_single_table(str(tmp_path / "out.vot")).fields}
    assert fields["ra"].unit == "deg" and fields["dec"].ucd == "pos.eq.dec;meta.main"
    assert fields["density"].arraysize == str(zgrid.n_bins)


def test_cli_format_votable(tmp_path, capsys):
    from mantis.cli import main

    _votable_catalog(tmp_path / "cat.vot")
    # the CLI loads a checkpoint; a missing one is refused in one line before anything is read
    assert main(["predict", str(tmp_path / "cat.vot"), "--checkpoint", "none.ckpt",
                 "--out", str(tmp_path / "o.dat"), "--format", "votable"]) == 2  # fmt: skip
    assert "none.ckpt" in capsys.readouterr().err
    assert not (tmp_path / "o.dat").exists()
