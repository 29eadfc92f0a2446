"""`evaluate_run` and `mantis evaluate` end to end on a small synthetic dataset.

The network is a duck-typed stand-in that is over-confident on purpose; the images hold point
sources whose fluxes are kcorrect template mixtures, so the baselines have real work to do.
"""

from __future__ import annotations

import json

import h5py
import numpy as np
import pandas as pd
import pytest
from matplotlib import image as mpimg

from mantis.calibration import calibration_path, file_sha256, read_calibration
from mantis.cli import main
from mantis.evaluate import Calibration, EvaluationError, calibrate_run, evaluate_run
from mantis.evaluate._baselines import template_flux_grid
from mantis.evaluate.testing import gaussian_probs
from mantis.surveys import BANDS, nanomaggies_to_mag
from mantis.zgrid import ZGrid

GRID = ZGrid()
SIZE, SCALE = 32, 1.0
SPLITS = ["train"] * 160 + ["val"] * 60 + ["test"] * 60


class StandInPredictor:
    """Gaussian densities around a noisy guess, reported half as wide as the real scatter."""

    zgrid = GRID

    def __init__(self):
        self.calls = []

    def predict_dataset(self, h5_path, *, split=None, batch_size=256, tta=False):
        self.calls.append(split)
        with h5py.File(h5_path, "r") as h5:
            labels = np.asarray(h5["catalog/split"][:]).astype(str)
            z = np.asarray(h5["catalog/z"][:])[labels == split]
        rng = np.random.default_rng({"val": 1, "test": 2}.get(split, 3))
        sigma = 0.04 * (1 + z)
        return gaussian_probs(GRID, z + sigma * rng.normal(size=z.size), sigma / 2)


class Refuses(StandInPredictor):
    def predict_dataset(self, *args, **kwargs):
        raise AssertionError("a rerun must reuse the stored densities")


def point_source(fwhm: float) -> np.ndarray:
    from scipy.special import erf

    sigma = fwhm / 2.3548 / SCALE
    edges = np.arange(SIZE + 1) - SIZE / 2.0
    per_pixel = 0.5 * np.diff(erf(edges / (np.sqrt(2) * sigma)))
    return np.outer(per_pixel, per_pixel)


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    folder = tmp_path_factory.mktemp("evaluate_run")
    rng = np.random.default_rng(0)
    n = len(SPLITS)
    grid = template_flux_grid(GRID)
    z_index = rng.integers(20, 300, n)
    coeff = rng.gamma(0.5, size=(n, grid.shape[1])) + 0.05
    flux = np.einsum("nt,ntb->nb", coeff, grid[z_index])
    flux *= 60.0 / flux[:, 3:4]  # r about 18 mag
    images = np.empty((n, len(BANDS), SIZE, SIZE), dtype=np.float32)
    for j, b in enumerate(BANDS):
        images[:, j] = flux[:, j, None, None] * point_source(b.psf_fwhm)[None]
    images += rng.normal(0, 0.002, images.shape).astype(np.float32)
    ids = np.array([f"obj{i:04d}" for i in range(n)])
    path = folder / "dataset.h5"
    with h5py.File(path, "w") as h5:
        h5["catalog/id"] = ids.astype("S")
        h5["catalog/z"] = GRID.centres[z_index]
        h5["catalog/split"] = np.array(SPLITS, dtype="S")
        h5["catalog/ebv"] = rng.uniform(0, 0.1, n).astype(np.float32)
        h5["early/image"] = images
        h5["early/valid"] = np.ones(images.shape, dtype=bool)
        h5.attrs["grids"] = json.dumps({"early": {"pixel_scale": SCALE, "size": SIZE}})
    truth = pd.DataFrame({"id": ids})
    for j, b in enumerate(BANDS):
        truth[f"mag_{b.name}"] = nanomaggies_to_mag(flux[:, j])
        truth[f"magerr_{b.name}"] = 0.02
    truth_path = folder / "sky.truth.parquet"
    truth.to_parquet(truth_path)
    ckpt = folder / "best.ckpt"
    ckpt.write_bytes(b"stand-in")
    return folder, ckpt, path, truth_path


@pytest.fixture(scope="module")
def evaluated(sample):
    folder, ckpt, dataset, truth = sample
    predictor = StandInPredictor()
    calibrate_run(ckpt, dataset, predictor=predictor)
    metrics = evaluate_run(
        ckpt, dataset, folder / "out", truth=truth, predictor=predictor, n_boot=20,
        progress=False,
    )  # fmt: skip
    stored = read_calibration(calibration_path(ckpt), checkpoint=ckpt).to_dict()
    return metrics, predictor, [(ckpt, stored)]


def test_recalibration_is_fitted_on_val_stored_and_helps(evaluated):
    metrics, predictor, attached = evaluated
    assert sorted(predictor.calls) == ["test", "val"]
    assert len(attached) == 1 and attached[0][1] == metrics["calibration"]
    assert Calibration.from_dict(attached[0][1]).method in ("temperature", "pit_remap")
    raw, cal = metrics["raw"], metrics["calibrated"]
    assert cal["ks"] < raw["ks"]
    assert abs(cal["coverage_central_68"] - 0.68) < abs(raw["coverage_central_68"] - 0.68)
    assert metrics["n_objects"] == SPLITS.count("test")


def test_baselines_share_the_tables(evaluated, sample):
    metrics, _, _ = evaluated
    names = set(metrics["results"])
    assert names == {"network", "network recalibrated", "template fit", "kNN",
                     "oracle template fit"}  # fmt: skip
    # noiseless template photometry: the template fits find the redshifts
    assert metrics["baselines"]["oracle template fit"]["nmad"] < 0.02
    assert metrics["baselines"]["template fit"]["outlier_rate_015"] < 0.1
    report = (sample[0] / "out" / "report.md").read_text()
    nmad = metrics["baselines"]["template fit"]["nmad"]
    row = next(line for line in report.splitlines() if line.startswith("| template fit |"))
    assert f"{nmad:.4f}" in row
    html = (sample[0] / "out" / "report.html").read_text()
    assert html.count("<table>") >= 2 and "oracle template fit" in html
    # metrics in slices of z, magnitude and E(B-V), counts adding up to the sample
    for label in ("z_spec", "r magnitude", "E(B−V)"):
        heading = f"## network recalibrated in slices of {label}"
        assert heading in report
        table = report.split(heading)[1].split("##")[0]
        rows = [line.split("|") for line in table.splitlines() if line.count("|") > 3]
        counts = [int(row[2]) for row in rows[2:]]  # after the header and the --- line
        assert sum(counts) == metrics["n_objects"]


def test_figures_are_real_images(evaluated, sample):
    metrics, _, _ = evaluated
    out = sample[0] / "out"
    for sliced in metrics["results"]["network"]["slices"].values():
        assert sum("nmad" in s for s in sliced["metrics"]) >= 2  # the slice plots have data
    html = (out / "report.html").read_text()
    names = ["zphot_zspec", "residuals", "pit", "coverage", "metrics_vs_z", "example_densities"]
    for name in names:
        assert f"src='{name}.png'" in html
        pixels = mpimg.imread(out / f"{name}.png")
        assert pixels.shape[0] > 200 and pixels.shape[1] > 200
        assert pixels[..., :3].std() > 0.01  # something is drawn


def test_rerun_reuses_finished_work(evaluated, sample):
    metrics, _, _ = evaluated
    folder, ckpt, dataset, truth = sample
    again = evaluate_run(
        ckpt, dataset, folder / "out", truth=truth, predictor=Refuses(), n_boot=20,
        progress=False, plots=False,
    )  # fmt: skip
    assert again["results"] == metrics["results"]


def test_cli_runs_and_reports_errors(sample, monkeypatch, capsys):
    import mantis.models

    folder, ckpt, dataset, _ = sample
    monkeypatch.setattr(mantis.models, "load_predictor", lambda path: StandInPredictor())
    out = folder / "cli"
    calibration = folder / "cli.calibration.json"
    assert main(["calibrate", "--checkpoint", str(ckpt), "--dataset", str(dataset),
                 "--out", str(calibration)]) == 0  # fmt: skip
    assert "recalibration fitted on 60 val objects" in capsys.readouterr().out
    argv = ["evaluate", "--checkpoint", str(ckpt), "--dataset", str(dataset), "--out", str(out),
            "--calibration", str(calibration)]  # fmt: skip
    assert main([*argv, "--no-plots", "--no-baselines", "--no-progress", "--n-boot", "0"]) == 0
    assert "NMAD" in capsys.readouterr().out
    written = json.loads((out / "metrics.json").read_text())
    stored = [json.loads(calibration.read_text())["calibration"]]
    assert stored == [written["calibration"]]
    assert set(written["results"]) == {"network", "network recalibrated"}
    missing = str(folder / "nope.ckpt")
    assert main(["evaluate", "--checkpoint", missing, "--dataset", str(dataset), "--out",
                 str(out)]) == 2  # fmt: skip
    assert f"checkpoint '{missing}' does not exist" in capsys.readouterr().err
    with pytest.raises(EvaluationError, match="split must be 'train', 'val' or 'test'"):
        evaluate_run(ckpt, dataset, out, split="dev", predictor=StandInPredictor())


def test_a_tiny_validation_split_leaves_densities_uncalibrated(sample, tmp_path):
    from mantis.exceptions import MantisWarning

    _, ckpt, dataset, _ = sample
    small = tmp_path / "small.h5"
    with h5py.File(dataset, "r") as src, h5py.File(small, "w") as dst:
        for key in ("catalog/id", "catalog/z", "catalog/ebv", "early/image", "early/valid"):
            dst[key] = src[key][:]
        labels = np.asarray(src["catalog/split"][:])
        labels[np.flatnonzero(labels == b"val")[10:]] = b"train"  # 10 val objects remain
        dst["catalog/split"] = labels
        dst.attrs["grids"] = src.attrs["grids"]
    calibration = tmp_path / "small.calibration.json"
    with pytest.warns(MantisWarning, match="has 10 objects with a redshift, fewer than the 40"):
        calibrate_run(ckpt, small, calibration, predictor=StandInPredictor())
    metrics = evaluate_run(
        ckpt, small, tmp_path / "out", predictor=StandInPredictor(), n_boot=0,
        calibration=calibration, baselines=False, plots=False, progress=False,
    )  # fmt: skip
    stored = [read_calibration(calibration).to_dict()]
    assert metrics["calibration"]["method"] == "identity" and stored == [metrics["calibration"]]
    assert metrics["calibrated"]["crps"] == pytest.approx(metrics["raw"]["crps"], rel=1e-6)


def test_checkpoint_is_never_modified_even_when_a_stage_fails(sample, tmp_path, capsys):
    import shutil

    folder, _, dataset, _ = sample
    ckpt = tmp_path / "model.ckpt"
    shutil.copy(folder / "best.ckpt", ckpt)
    before = file_sha256(ckpt)
    calibrate_run(ckpt, dataset, predictor=StandInPredictor())
    evaluate_run(ckpt, dataset, tmp_path / "out", predictor=StandInPredictor(), n_boot=0,
                 baselines=False, plots=False, progress=False)  # fmt: skip
    assert file_sha256(ckpt) == before

    class Fails(StandInPredictor):
        def predict_dataset(self, *args, **kwargs):
            raise EvaluationError("network failed")

    calibration = calibration_path(ckpt)
    written = calibration.read_bytes()
    for stage in (calibrate_run, evaluate_run):
        args = (ckpt, dataset) if stage is calibrate_run else (ckpt, dataset, tmp_path / "o2")
        with pytest.raises(EvaluationError, match="network failed"):
            stage(*args, predictor=Fails())
        assert file_sha256(ckpt) == before
        assert calibration.read_bytes() == written  # a failed calibrate leaves the old file
    assert not list(tmp_path.glob(".*.tmp"))


def test_every_argument_is_checked_before_work_starts(sample, tmp_path, capsys):
    _, ckpt, dataset, _ = sample
    predictor = StandInPredictor()
    with pytest.raises(EvaluationError, match="n_boot must be a non-negative integer, got -5"):
        evaluate_run(ckpt, dataset, tmp_path / "out", predictor=predictor, n_boot=-5)
    with pytest.raises(EvaluationError, match="split must be 'train', 'val' or 'test', got 'x'"):
        calibrate_run(ckpt, dataset, predictor=predictor, split="x")
    with pytest.raises(EvaluationError, match=r"calibration file '.*nope\.json' does not exist"):
        evaluate_run(ckpt, dataset, tmp_path / "out", predictor=predictor,
                     calibration=tmp_path / "nope.json")  # fmt: skip
    assert predictor.calls == []  # nothing was predicted
    assert not (tmp_path / "out").exists()
    argv = ["evaluate", "--checkpoint", str(ckpt), "--dataset", str(dataset),
            "--out", str(tmp_path / "cli"), "--n-boot", "-5"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "n_boot must be a non-negative integer, got -5" in err
    assert not (tmp_path / "cli").exists()


def test_a_calibration_of_another_checkpoint_is_refused(sample, tmp_path):
    _, ckpt, dataset, _ = sample
    other = tmp_path / "other.ckpt"
    other.write_bytes(b"another network")
    calibration = tmp_path / "other.calibration.json"
    calibrate_run(other, dataset, calibration, predictor=StandInPredictor())
    with pytest.raises(EvaluationError, match="fitted for another checkpoint"):
        evaluate_run(ckpt, dataset, tmp_path / "out", predictor=StandInPredictor(),
                     calibration=calibration, n_boot=0, baselines=False, plots=False)  # fmt: skip
