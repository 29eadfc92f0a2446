"""`--out` is written once, whole: existing outputs of other inputs are refused, not reported."""

from dataclasses import dataclass

import pandas as pd
import pytest
from test_pipeline import EXTENSIONS, run, sha

from mantis.cli import main
from mantis.predict import PredictionError, read_predictions
from mantis.predict.testing import StandInPredictor, StandInSource


@pytest.mark.parametrize("ext", EXTENSIONS)
def test_an_output_of_the_same_inputs_is_recognised_in_every_format(catalog, tmp_path, ext):
    out = tmp_path / f"out.{ext}"
    run(catalog, out)
    before = sha(out)
    summary = run(catalog, out)
    assert summary.up_to_date and summary.n_predicted == 0
    assert sha(out) == before


@pytest.mark.parametrize("ext", EXTENSIONS)
def test_an_output_of_another_catalogue_is_refused(catalog, tmp_path, ext):
    out = tmp_path / f"out.{ext}"
    other = tmp_path / "other.csv"
    shifted = pd.read_csv(catalog)
    shifted.loc[0, "ra"] += 1.0
    shifted.to_csv(other, index=False)
    run(other, out)
    before = sha(out)
    with pytest.raises(PredictionError, match=r"made with a different catalog_sha256.*--overwrite"):
        run(catalog, out)
    assert sha(out) == before
    run(catalog, out, overwrite=True)
    assert read_predictions(out)[0]["id"].tolist()[:2] == ["gal00000", "gal00001"]


def test_an_output_of_another_checkpoint_is_refused(catalog, tmp_path):
    out = tmp_path / "out.parquet"
    run(catalog, out, predictor=StandInPredictor(fingerprint="another-model"))
    with pytest.raises(PredictionError, match="made with a different checkpoint"):
        run(catalog, out)


def test_a_file_not_written_by_predict_is_refused(catalog, tmp_path, capsys):
    out = tmp_path / "out.csv"
    out.write_text("my notes\n")
    with pytest.raises(PredictionError, match=r"out\.csv exists and is not a csv output"):
        run(catalog, out)
    assert out.read_text() == "my notes\n"


@pytest.mark.parametrize(("fmt", "name"), [("csv", "out.parquet"), ("parquet", "out.fits"),
                                           ("qp", "out.csv")])  # fmt: skip
def test_a_format_contradicting_the_extension_is_an_error(catalog, tmp_path, capsys, fmt, name):
    status = main(["predict", str(catalog), "--checkpoint", str(catalog), "--out",
                   str(tmp_path / name), "--format", fmt])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert status == 2 and len(err.splitlines()) == 1
    assert f"--format {fmt} contradicts the extension of" in err and name in err
    assert list(tmp_path.iterdir()) == [tmp_path / "cat.csv"]


def test_a_format_with_an_unknown_extension_is_taken_as_given(catalog, tmp_path):
    run(catalog, tmp_path / "out.txt", fmt="csv")
    assert len(pd.read_csv(tmp_path / "out.txt", comment="#")) == 300


class FailsAtOnce(StandInSource):
    def arrays(self, chunk):
        raise RuntimeError("service went away")


def test_a_run_failing_before_writing_anything_leaves_no_parts(catalog, tmp_path):
    out = tmp_path / "out.parquet"
    with pytest.raises(RuntimeError, match="service went away"):
        run(catalog, out, source=FailsAtOnce())
    assert not out.exists() and not (tmp_path / "out.parquet.parts").exists()


@pytest.mark.parametrize("ext", ["parquet", "csv"])
def test_the_bytes_do_not_depend_on_the_chunk_size(catalog, tmp_path, ext):
    run(catalog, tmp_path / f"a.{ext}", batch_size=50)
    run(catalog, tmp_path / f"b.{ext}", batch_size=37)
    assert sha(tmp_path / f"a.{ext}") == sha(tmp_path / f"b.{ext}")
    df = read_predictions(tmp_path / f"a.{ext}")[0]
    assert df["id"].tolist() == pd.read_csv(catalog)["id"].tolist()


def test_rerunning_the_cli_says_there_is_nothing_to_do(catalog, tmp_path, capsys, monkeypatch):
    import mantis.predict

    out = tmp_path / "out.parquet"
    run(catalog, out)
    monkeypatch.setattr(mantis.predict, "predict_catalog",
                        lambda *a, **k: run(catalog, out))  # fmt: skip
    assert main(["predict", str(catalog), "--checkpoint", str(catalog), "--out", str(out)]) == 0
    assert "already holds the predictions" in capsys.readouterr().out


class NothingInTheSouth(StandInSource):
    """No survey has data below dec -30 (every product there is outside the footprint)."""

    def arrays(self, chunk):
        out = super().arrays(chunk)
        south = chunk["dec"].to_numpy() < -30.0
        for name in ("galex", "ps1", "unwise"):
            out[f"catalog/has_{name}"] = out[f"catalog/has_{name}"] & ~south
            out[f"fetch/{name}"] = [("no_coverage" if s else "done") for s in south]
        return out


def test_rows_without_data_in_any_survey_are_invalid_and_not_retried(catalog, tmp_path):
    out = tmp_path / "out.parquet"
    summary = run(catalog, out, source=NothingInTheSouth())
    df = read_predictions(out)[0]
    south = df["dec"] < -30
    assert south.sum() > 10
    assert not df.loc[south, "valid"].any() and df.loc[south, "z_mean"].isna().all()
    assert (
        df.loc[south, "flag"]
        .str.fullmatch(
            r"no data in any survey \(galex: no_coverage, ps1: no_coverage, unwise: no_coverage\)"
        )
        .all()
    )
    assert df.loc[~south, "valid"].sum() == (~south).sum() - 2  # the two bad catalogue rows
    assert summary.n_failed == 0 and summary.fetch.statuses["ps1"]["no_coverage"] == south.sum()
    assert not (tmp_path / "out.parquet.parts").exists()  # nothing left to retry


@dataclass(frozen=True)
class FlakySource(StandInSource):
    """Reports a failed PS1 product for every fifth row while ``broken``."""

    broken: bool = True

    def arrays(self, chunk):
        out = super().arrays(chunk)
        hit = (chunk["_row"].to_numpy() % 5 == 0) & self.broken
        out["fetch/ps1"] = ["failed: HTTP 503" if h else "done" for h in hit]
        return out


@pytest.mark.parametrize("devices", [1, pytest.param(2, marks=pytest.mark.slow)])
def test_failed_rows_are_redone_by_the_next_run_whatever_the_processes(catalog, tmp_path, devices):
    clean = tmp_path / "clean.parquet"
    run(catalog, clean, source=FlakySource(broken=False))
    out = tmp_path / "out.parquet"
    first = run(catalog, out, source=FlakySource(), devices=devices, batch_size=40)
    df = read_predictions(out)[0]
    hit = df.index % 5 == 0
    assert first.n_failed == hit.sum() == 60
    assert not df.loc[hit, "valid"].any()
    assert (
        df.loc[hit, "flag"].str.fullmatch(r"fetch failed: ps1 \(HTTP 503\); rerun to retry").all()
    )
    assert df.loc[~hit, "valid"].sum() == (~hit).sum() - 2  # rows 3 and 11 are bad catalogue rows
    second = run(catalog, out, source=FlakySource(broken=False), devices=devices, batch_size=40)
    assert (second.n_predicted, second.n_failed) == (first.n_failed, 0)
    assert sha(out) == sha(clean)
