import hashlib
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from mantis.exceptions import CatalogError
from mantis.predict import PredictionError, predict_catalog, read_predictions
from mantis.predict.testing import StandInPredictor, StandInSource
from mantis.zgrid import ZGrid

EXTENSIONS = ("parquet", "fits", "csv", "hdf5")


def run(catalog, out, **kwargs):
    kwargs.setdefault("predictor", StandInPredictor())
    kwargs.setdefault("source", StandInSource())
    kwargs.setdefault("batch_size", 64)
    return predict_catalog(catalog, out, progress=False, **kwargs)


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def expected_probs(catalog_path):
    """What the stand-in network gives for the valid rows, computed directly."""
    df = pd.read_csv(catalog_path)
    ok = df["ra"].between(0, 360, inclusive="left") & df["dec"].between(-90, 90)
    arrays = StandInSource().arrays(df[ok].reset_index(drop=True))
    return ok.to_numpy(), StandInPredictor().predict_arrays(arrays)


@pytest.mark.parametrize("ext", EXTENSIONS)
def test_every_format_holds_the_network_densities(catalog, tmp_path, ext):
    summary = run(catalog, tmp_path / f"out.{ext}")
    assert (summary.n_rows, summary.n_invalid) == (300, 2)
    df, probs, zgrid = read_predictions(tmp_path / f"out.{ext}")
    ok, want = expected_probs(catalog)
    assert zgrid == ZGrid()
    if ext == "hdf5":  # the qp ensemble keeps valid rows only
        np.testing.assert_allclose(probs, want, atol=1e-6)
        return
    np.testing.assert_array_equal(df["valid"].to_numpy(dtype=bool), ok)
    np.testing.assert_allclose(probs[ok], want, rtol=1e-6 if ext != "csv" else 1e-5, atol=1e-12)
    assert np.isnan(probs[~ok]).all()
    assert df["id"].tolist()[:3] == ["gal00000", "gal00001", "gal00002"]
    # catalogue columns pass through; point estimates agree with the density
    cat = pd.read_csv(catalog)
    np.testing.assert_allclose(df["r_mag"], cat["r_mag"])
    assert df["field"].tolist() == cat["field"].tolist()
    np.testing.assert_allclose(df["z_mean"][ok], probs[ok] @ zgrid.centres, rtol=1e-5)


def test_invalid_rows_are_flagged_with_reasons_and_empty_densities(catalog, tmp_path):
    import pyarrow.parquet as pq

    run(catalog, tmp_path / "out.parquet")
    table = pq.read_table(tmp_path / "out.parquet")
    flags = dict(zip(table.column("id").to_pylist(), table.column("flag").to_pylist(), strict=True))
    assert "ra outside [0, 360)" in flags["gal00003"]
    assert "dec is not a finite number" in flags["gal00011"]
    assert flags["gal00000"] == ""
    lengths = table.column("density").combine_chunks().value_lengths().to_numpy()
    assert lengths[3] == 0 and lengths[11] == 0 and lengths[0] == 400
    assert np.isnan(table.column("z_median").to_numpy()[[3, 11]]).all()


def test_grid_is_in_the_parquet_metadata(catalog, tmp_path):
    import json

    import pyarrow.parquet as pq

    run(catalog, tmp_path / "out.parquet")
    meta = json.loads(pq.read_schema(tmp_path / "out.parquet").metadata[b"mantis.predictions"])
    assert ZGrid.from_dict(json.loads(meta["zgrid"])) == ZGrid()
    assert pq.read_schema(tmp_path / "out.parquet").field("density").type.value_type == "float"


@pytest.mark.parametrize("ext", EXTENSIONS)
def test_output_is_byte_identical_between_runs(catalog, tmp_path, ext):
    run(catalog, tmp_path / f"a.{ext}")
    run(catalog, tmp_path / f"b.{ext}")
    assert sha(tmp_path / f"a.{ext}") == sha(tmp_path / f"b.{ext}")


def test_qp_file_read_back_by_qp_gives_the_same_densities(catalog, tmp_path):
    import qp

    run(catalog, tmp_path / "out.parquet")
    run(catalog, tmp_path / "out.hdf5")
    df, probs, zgrid = read_predictions(tmp_path / "out.parquet")
    valid = df["valid"].to_numpy(dtype=bool)
    ens = qp.read(str(tmp_path / "out.hdf5"))
    assert ens.npdf == valid.sum()
    np.testing.assert_allclose(ens.pdf(zgrid.centres) * zgrid.width, probs[valid], rtol=1e-5)
    np.testing.assert_allclose(ens.ancil["zmode"], df["z_mode"][valid])
    np.testing.assert_allclose(ens.ancil["zmedian"], df["z_median"][valid])
    assert list(ens.ancil["id"]) == df["id"][valid].tolist()
    # the ensemble's own median agrees with ours to a bin
    np.testing.assert_allclose(ens.median().ravel(), df["z_median"][valid], atol=zgrid.width)


KILL_SCRIPT = """
import sys
from mantis.predict import predict_catalog
from mantis.predict.testing import StandInPredictor, StandInSource
predict_catalog(sys.argv[1], sys.argv[2], predictor=StandInPredictor(),
                source=StandInSource(delay_s=0.25), batch_size=20, progress=False)
"""


def test_resume_after_kill_loses_nothing_and_duplicates_nothing(catalog, tmp_path):
    reference = tmp_path / "ref.parquet"
    run(catalog, reference, batch_size=20)
    out = tmp_path / "out.parquet"
    parts = tmp_path / "out.parquet.parts"
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(catalog), str(out)])
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(parts.glob("part-*.parquet"))) < 4:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = list(parts.glob("part-*.parquet"))
    assert 4 <= len(finished) < 15 and not out.exists()
    summary = run(catalog, out, batch_size=20)
    assert summary.n_predicted == 300 - 20 * len(finished)
    df = read_predictions(out)[0]
    assert df["id"].is_unique and len(df) == 300
    assert sha(out) == sha(reference)
    assert not parts.exists()


class CrashingSource(StandInSource):
    """Fails on its third chunk, like a run that dies part way."""

    def arrays(self, chunk):
        if chunk["_row"].iloc[0] >= 100:
            raise RuntimeError("service went away")
        return super().arrays(chunk)


def test_resume_with_a_different_chunk_size_fills_only_the_gaps(catalog, tmp_path):
    reference = tmp_path / "ref.parquet"
    run(catalog, reference, batch_size=50)
    out = tmp_path / "out.parquet"
    with pytest.raises(RuntimeError, match="service went away"):
        run(catalog, out, batch_size=50, source=CrashingSource())
    assert len(list((tmp_path / "out.parquet.parts").glob("part-*"))) == 2
    summary = run(catalog, out, batch_size=70)
    assert summary.n_predicted == 200
    pd.testing.assert_frame_equal(read_predictions(out)[0], read_predictions(reference)[0])


def test_rerun_after_completion_does_nothing(catalog, tmp_path):
    out = tmp_path / "out.parquet"
    run(catalog, out)
    before = sha(out)
    assert run(catalog, out).n_predicted == 0
    assert sha(out) == before


def test_parts_from_another_catalogue_are_refused(catalog, tmp_path):
    from mantis.predict._parts import PartStore

    out = tmp_path / "out.parquet"
    PartStore(out).open({"catalog_sha256": "0" * 64, "checkpoint": "stand-in-v1", "tta": False})
    with pytest.raises(PredictionError, match=r"different catalog_sha256.*delete"):
        run(catalog, out)


def test_catalogue_without_dec_names_what_is_missing(tmp_path):
    path = tmp_path / "nodec.csv"
    pd.DataFrame({"id": ["a"], "ra": [10.0], "declination": [5.0]}).to_csv(path, index=False)
    with pytest.raises(CatalogError, match=r"lacks column\(s\) dec.*found: id, ra, declination"):
        run(path, tmp_path / "out.parquet")


def test_checkpoint_bands_missing_from_the_data_are_named(catalog, tmp_path):
    class NoUnwise(StandInSource):
        def arrays(self, chunk):
            return {k: v for k, v in super().arrays(chunk).items() if not k.startswith("unwise")}

    with pytest.raises(PredictionError, match="missing: W1, W2"):
        run(catalog, tmp_path / "out.parquet", source=NoUnwise())


def test_checkpoint_grid_differing_from_the_data_is_named(catalog, tmp_path):
    predictor = StandInPredictor(grids={"ps1": {"pixel_scale": 0.25, "size": 128}})
    with pytest.raises(PredictionError, match="ps1 cutouts of 128x128 pixels but the data has 8x8"):
        run(catalog, tmp_path / "out.parquet", predictor=predictor)


def test_density_grid_differing_from_the_checkpoint_is_named(catalog, tmp_path):
    class WrongGrid(StandInPredictor):
        def predict_arrays(self, arrays, *, tta=False):
            return super().predict_arrays(arrays)[:, :300]

    with pytest.raises(PredictionError, match=r"shape \(\d+, 300\), expected \(\d+, 400\)"):
        run(catalog, tmp_path / "out.parquet", predictor=WrongGrid())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_size": 0}, "batch_size must be an integer >= 1, got 0"),
        ({"fmt": "xlsx"}, "unknown output format 'xlsx'; allowed: parquet, fits, csv, qp"),
    ],
)
def test_bad_arguments_are_named(catalog, tmp_path, kwargs, message):
    with pytest.raises(PredictionError, match=message.replace("(", r"\(").replace(")", r"\)")):
        run(catalog, tmp_path / "out.parquet", **kwargs)


def test_unknown_output_extension_is_named(catalog, tmp_path):
    with pytest.raises(PredictionError, match=r"'\.xlsx'.*--format"):
        run(catalog, tmp_path / "out.xlsx")


def test_recalibration_from_the_checkpoint_is_applied_and_flagged(catalog, tmp_path):
    from mantis.evaluate._calibration import Calibration, fit_calibration

    ok, raw = expected_probs(catalog)
    truth = StandInPredictor().zgrid.centres[np.argmax(raw, axis=1)] + 0.05  # biased network
    calibration = fit_calibration(raw, truth, ZGrid(), methods=("pit_remap",)).to_dict()
    run(catalog, tmp_path / "out.parquet", predictor=StandInPredictor(calibration=calibration))
    df, probs, _ = read_predictions(tmp_path / "out.parquet")
    want = Calibration.from_dict(calibration).apply(raw)
    np.testing.assert_allclose(probs[ok], want, rtol=1e-5, atol=1e-7)
    assert not np.allclose(want, raw, atol=1e-3)
    np.testing.assert_array_equal(df["calibrated"].to_numpy(dtype=bool), ok)


def test_recalibration_on_another_grid_is_refused(catalog, tmp_path):
    from mantis.evaluate._calibration import fit_calibration

    grid = ZGrid(0.0, 1.6, 200)
    probs = np.full((50, 200), 1 / 200)
    calibration = fit_calibration(probs, np.linspace(0.1, 1.5, 50), grid).to_dict()
    with pytest.raises(PredictionError, match="recalibration was fitted on grid"):
        run(catalog, tmp_path / "out.parquet", predictor=StandInPredictor(calibration=calibration))
