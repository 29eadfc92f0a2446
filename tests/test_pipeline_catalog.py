"""`mantis pipeline` on a user's own spec-z table, fetched from the loopback imitation services."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from mantis.cli import main
from mantis.exceptions import MantisWarning

FRACTIONS = {"train": 0.6, "val": 0.2, "test": 0.2}
SPLIT = {"nside": 4096, "fractions": FRACTIONS, "seed": 3}
# the user's own column names; the pipeline file maps them to id, ra, dec, z
COLUMNS = {"id": "OBJID", "ra": "RAJ2000", "dec": "DEJ2000", "z": "zspec"}
TINY_EARLY = {
    "model": {"net": "early_small", "net_kwargs": {"widths": [8, 16, 32]}, "n_z": 100},
    "data": {"fusion": "early", "batch_size": 16, "num_workers": 0, "augment": False},
    "trainer": {"max_epochs": 1, "accelerator": "cpu", "devices": 1,
                "enable_progress_bar": False, "enable_model_summary": False},
}  # fmt: skip


def _spec_table() -> pd.DataFrame:
    """The test sky's spec-z galaxies under the column names of a user's file."""
    from mantis.sky import Universe

    spec = Universe.from_config("test", seed=0).spec_catalog().reset_index(drop=True)
    return pd.DataFrame(
        {
            COLUMNS["id"]: [f"gal{i:04d}" for i in range(len(spec))],
            COLUMNS["ra"]: spec["ra"].to_numpy(),
            COLUMNS["dec"]: spec["dec"].to_numpy(),
            COLUMNS["z"]: spec["z"].to_numpy(),
            "mag_r": np.linspace(17, 22, len(spec)),  # a column the run does not need
        }
    )


def _write_config(root, table_name: str, **changes) -> str:
    from mantis.serve.testing import SMALL_BUILD

    (root / "build_small.yaml").write_text(yaml.safe_dump({"grids": SMALL_BUILD["grids"]}))
    (root / "tiny_early.yaml").write_text(yaml.safe_dump(TINY_EARLY))
    config = {
        "name": "mine",
        "catalog": {"path": table_name, "columns": COLUMNS, "split": SPLIT},
        "build": {"config": str(root / "build_small.yaml")},
        "models": {"early": "tiny_early.yaml"},
        "fetch": {"progress": False},
        "paths": {"runs": str(root / "runs"), "cache": str(root / "cutouts")},
    } | changes
    path = root / "mine.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


@pytest.fixture(scope="module")
def catalog_run(sky_server, tmp_path_factory):
    root = tmp_path_factory.mktemp("catalog-pipeline")
    table = _spec_table()
    table.to_csv(root / "specz.csv.gz", index=False)
    config = _write_config(root, "specz.csv.gz", endpoints=sky_server)
    with warnings.catch_warnings():
        # a tiny validation split is left uncalibrated, and says so
        warnings.simplefilter("ignore", MantisWarning)
        status = main(["pipeline", "--config", config])
    return table, config, root / "runs" / "mine", status


def test_the_run_splits_the_catalogue_as_configured(catalog_run):
    from mantis.stack import DatasetReader, assign_splits

    table, _, run_dir, status = catalog_run
    assert status == 0
    kept = pd.read_parquet(run_dir / "catalog.parquet")
    assert list(kept.columns) == ["id", "ra", "dec", "z", "split"]
    assert kept["id"].tolist() == table[COLUMNS["id"]].tolist()
    np.testing.assert_array_equal(kept["z"], table[COLUMNS["z"]])
    expected = assign_splits(
        table[COLUMNS["ra"]].to_numpy(), table[COLUMNS["dec"]].to_numpy(), **SPLIT
    ).astype(str)
    np.testing.assert_array_equal(kept["split"], expected)
    assert set(kept["split"]) == {"train", "val", "test"}
    with DatasetReader(run_dir / "dataset.h5") as reader:
        stored = reader.catalog(["id", "split"])
    np.testing.assert_array_equal(stored["id"], kept["id"])
    np.testing.assert_array_equal(stored["split"], kept["split"])


def test_the_test_split_is_predicted_and_scored(catalog_run):
    from mantis.predict import read_predictions

    table, _, run_dir, _ = catalog_run
    kept = pd.read_parquet(run_dir / "catalog.parquet")
    test_ids = set(kept.loc[kept["split"] == "test", "id"])
    rows, probs, zgrid = read_predictions(run_dir / "early" / "predictions_test.parquet")
    assert set(rows["id"]) == test_ids and len(rows) == len(test_ids)
    assert rows["valid"].all()
    assert zgrid.n_bins == TINY_EARLY["model"]["n_z"]
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-4)
    assert (probs >= 0).all()
    truth = table.set_index(COLUMNS["id"])[COLUMNS["z"]]
    np.testing.assert_allclose(rows["z"], truth.loc[rows["id"]].to_numpy())
    assert ((rows["z_lo68"] <= rows["z_median"]) & (rows["z_median"] <= rows["z_hi68"])).all()
    metrics = json.loads((run_dir / "metrics.json").read_text())["early"]
    assert metrics["n_objects"] == len(test_ids)
    assert np.isfinite(metrics["calibrated"]["nmad"]) and metrics["calibrated"]["nmad"] > 0
    assert "early fusion" in (run_dir / "summary.md").read_text()


def test_a_second_run_reuses_everything(catalog_run):
    _, config, run_dir, _ = catalog_run
    predictions = run_dir / "early" / "predictions_test.parquet"
    written = predictions.stat().st_mtime_ns
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MantisWarning)
        assert main(["pipeline", "--config", config]) == 0
    steps = json.loads((run_dir / "steps.json").read_text())
    assert steps["fetch"]["requests"] == 0 and steps["fetch"]["products_skipped"] > 0
    assert steps["build"]["built"] == 0
    assert predictions.stat().st_mtime_ns == written


# -- bad pipeline files: one line, exit status 2, nothing run ------------------------------------
def _refused(capsys, config: str) -> str:
    assert main(["pipeline", "--config", config]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("mantis: error: ")
    return err


@pytest.fixture
def table_root(tmp_path):
    _spec_table().to_csv(tmp_path / "specz.csv", index=False)
    return tmp_path


def test_a_typo_in_the_catalog_section_is_named(capsys, table_root):
    config = Path(_write_config(table_root, "specz.csv"))
    config.write_text(config.read_text().replace("columns:", "colums:"))
    assert "did you mean 'catalog.columns'?" in _refused(capsys, str(config))
    assert not (table_root / "runs").exists()


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"sky": {"config": "test", "seed": 0}}, "give exactly one of 'sky'"),
        ({"catalog": None}, "give exactly one of 'sky'"),
        ({"server": {"latency_ms": 5}}, "'server' applies to a 'sky' run"),
        ({"endpoints": {"ps1": {"bse_url": "x"}}}, "did you mean 'ps1.base_url'?"),
    ],
)
def test_sources_and_endpoints_are_checked(capsys, table_root, changes, expected):
    assert expected in _refused(capsys, _write_config(table_root, "specz.csv", **changes))
    assert not (table_root / "runs").exists()


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda t: t.drop(columns=COLUMNS["z"]), "lacks column(s) 'zspec' (for z)"),
        (lambda t: t.assign(zspec=t["zspec"].where(t.index != 3, -0.5)), "z is not a finite"),
        (lambda t: t.assign(zspec=t["zspec"].where(t.index != 4, np.nan)), "row 4"),
        (lambda t: t.iloc[:3], "the train split holds"),
    ],
)
def test_bad_tables_are_refused_before_anything_runs(capsys, table_root, edit, expected):
    edit(_spec_table()).to_csv(table_root / "bad.csv", index=False)
    assert expected in _refused(capsys, _write_config(table_root, "bad.csv"))
    assert not (table_root / "runs").exists()


def test_the_readme_example_is_a_valid_pipeline_file(tmp_path):
    from mantis.pipeline import PipelineConfig

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Your own spec-z catalogue", 1)[1]
    example = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "my.yaml").write_text(example)
    (tmp_path / "specz.fits").touch()  # only its existence is checked before the run
    config = PipelineConfig.load(tmp_path / "my.yaml")
    assert config["catalog"]["columns"]["z"] == "ZSPEC"
    assert config["catalog"]["path"] == str(tmp_path / "specz.fits")
    assert config.endpoint is None  # the real services
    assert config.endpoints["ps1"]["base_url"] == "https://ps1images.stsci.edu"


def test_columns_match_in_any_case_and_a_null_id_names_objects_by_position(table_root):
    from mantis.pipeline_catalog import read_run_catalog

    section = {
        "columns": {"id": None, "ra": "raj2000", "dec": "dej2000", "z": "ZSPEC"},
        "split": SPLIT,
    }
    kept = read_run_catalog(section, table_root / "specz.csv")
    table = _spec_table()
    assert list(kept.columns) == ["id", "ra", "dec", "z", "split"]
    first = f"J{table[COLUMNS['ra']][0]:09.5f}{table[COLUMNS['dec']][0]:+09.5f}"
    assert kept["id"][0] == first
    np.testing.assert_array_equal(kept["z"], table[COLUMNS["z"]])
