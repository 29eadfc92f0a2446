import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from mantis.cli import main
from mantis.predict import PredictionError, predict_catalog, read_predictions
from mantis.predict.testing import StandInPredictor, StandInSource
from mantis.priors import export_priors, load_prospector_priors, soften_density


@pytest.fixture(scope="module")
def predictions(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("priors")
    rng = np.random.default_rng(4)
    n = 120
    cat = pd.DataFrame({"id": [f"o{i}" for i in range(n)], "ra": rng.uniform(0, 360, n),
                        "dec": rng.uniform(-50, 50, n)})  # fmt: skip
    cat.loc[7, "dec"] = 95.0  # invalid: no prior may be written for it
    cat.to_csv(tmp / "cat.csv", index=False)
    out = tmp / "pred.parquet"
    predict_catalog(tmp / "cat.csv", out, predictor=StandInPredictor(), source=StandInSource(),
                    progress=False)  # fmt: skip
    return out


@pytest.mark.parametrize(("broaden", "floor"), [(1.0, 0.0), (2.0, 0.01)])
def test_prospector_file_round_trips_the_softened_densities(predictions, tmp_path, broaden, floor):
    n = export_priors(predictions, tmp_path / "p.h5", "prospector", broaden=broaden, floor=floor)
    df, probs, _ = read_predictions(predictions)
    valid = df["valid"].to_numpy(dtype=bool)
    assert n == valid.sum() == len(df) - 1
    priors = load_prospector_priors(tmp_path / "p.h5")
    assert "o7" not in priors and list(priors) == df["id"][valid].tolist()
    want = soften_density(probs[valid], broaden=broaden, floor=floor)
    got = np.array([p.params["probs"] for p in priors.values()])
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9)
    # a subset loads alone, in the order asked
    some = load_prospector_priors(tmp_path / "p.h5", ids=["o9", "o2"])
    assert list(some) == ["o9", "o2"]
    np.testing.assert_allclose(some["o2"].params["probs"], priors["o2"].params["probs"])
    with pytest.raises(KeyError, match="o7"):
        load_prospector_priors(tmp_path / "p.h5", ids=["o7"])


def test_bagpipes_gaussian_matches_a_gaussian_density(tmp_path):
    from mantis.zgrid import ZGrid

    grid = ZGrid()
    probs = np.diff(stats.norm.cdf(grid.edges, 0.62, 0.05))
    df = pd.DataFrame({"id": ["g"], "valid": [True]})
    from mantis.priors._export import _bagpipes_rows

    rows = _bagpipes_rows(df["id"].to_numpy(), probs[None, :] / probs.sum(), grid)
    assert rows["redshift"][0] == pytest.approx(0.62, abs=1e-4)
    assert rows["redshift_sigma"][0] == pytest.approx(0.05, rel=1e-2)
    assert rows["redshift_min"][0] == pytest.approx(0.62 - 0.15, abs=1e-3)


def test_bagpipes_export_and_snippet(predictions, tmp_path):
    export_priors(predictions, tmp_path / "b.csv", "bagpipes")
    rows = pd.read_csv(tmp_path / "b.csv")
    df = read_predictions(predictions)[0]
    valid = df[df["valid"]].reset_index(drop=True)
    assert rows["id"].tolist() == valid["id"].tolist()
    np.testing.assert_allclose(rows["redshift"], valid["z_median"], atol=2e-6)
    np.testing.assert_allclose(rows["redshift_sigma"], (valid["z_hi68"] - valid["z_lo68"]) / 2,
                               atol=2e-6)  # fmt: skip
    assert (rows["redshift_min"] >= 0).all() and (rows["redshift_max"] <= 1.6).all()
    snippet = json.loads((tmp_path / "b.fit_instructions.json").read_text())
    assert snippet["fit_instructions_per_object"]["redshift_prior"] == "Gaussian"


@pytest.mark.parametrize("name", ["t.csv", "t.parquet"])
def test_table_densities_integrate_to_one(predictions, tmp_path, name):
    export_priors(predictions, tmp_path / name, "table", floor=0.02)
    table = (
        pd.read_csv(tmp_path / name) if name.endswith("csv") else pd.read_parquet(tmp_path / name)
    )
    centres = np.array([float(c[len("pdf_z") :]) for c in table.columns[1:]])
    width = np.diff(centres).mean()
    np.testing.assert_allclose(table.iloc[:, 1:].sum(axis=1) * width, 1.0, rtol=1e-5)
    assert np.all(table.iloc[:, 1:].to_numpy() >= 0.02 / 1.6 * 0.999)


def test_cli_writes_priors_and_names_bad_values(predictions, tmp_path, capsys):
    assert main(["priors", str(predictions), "--format", "prospector", "--out",
                 str(tmp_path / "p.h5"), "--broaden", "1.5"]) == 0  # fmt: skip
    assert "wrote 119 prospector priors" in capsys.readouterr().out
    assert main(["priors", str(predictions), "--format", "table", "--out",
                 str(tmp_path / "t.csv"), "--floor", "1.5"]) == 2  # fmt: skip
    assert "floor (EPS) must lie in [0, 1), got 1.5" in capsys.readouterr().err
    assert main(["priors", str(tmp_path / "nope.parquet"), "--format", "table", "--out",
                 str(tmp_path / "t.csv")]) == 2  # fmt: skip
    assert "does not exist" in capsys.readouterr().err


def test_unknown_format_is_named(predictions, tmp_path):
    with pytest.raises(PredictionError, match="allowed: prospector, bagpipes, table"):
        export_priors(predictions, tmp_path / "x", "beagle")
