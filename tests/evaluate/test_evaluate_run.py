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

from mantis.cli import main
from mantis.evaluate import Calibration, EvaluationError, evaluate_run
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
    predictor, attached = StandInPredictor(), []
    metrics = evaluate_run(
        ckpt, dataset, folder / "out", truth=truth, predictor=predictor,
        attach=lambda path, cal: attached.append((path, cal)), n_boot=20, progress=False,
    )  # fmt: skip
    return metrics, predictor, attached


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
        ckpt, dataset, folder / "out", truth=truth, predictor=Refuses(),
        attach=lambda *a: None, n_boot=20, progress=False, plots=False,
    )  # fmt: skip
    assert again["results"] == metrics["results"]


def test_cli_runs_and_reports_errors(sample, monkeypatch, capsys):
    import mantis.models

    folder, ckpt, dataset, _ = sample
    stored = []
    monkeypatch.setattr(mantis.models, "load_predictor", lambda path: StandInPredictor())
    monkeypatch.setattr(mantis.models, "attach_calibration", lambda p, c: stored.append(c))
    out = folder / "cli"
    argv = ["evaluate", "--checkpoint", str(ckpt), "--dataset", str(dataset), "--out", str(out)]
    assert main([*argv, "--no-plots", "--no-baselines", "--no-progress", "--n-boot", "0"]) == 0
    assert "NMAD" in capsys.readouterr().out
    written = json.loads((out / "metrics.json").read_text())
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
    stored = []
    with pytest.warns(MantisWarning, match="has 10 objects with a redshift, fewer than the 40"):
        metrics = evaluate_run(
            ckpt, small, tmp_path / "out", predictor=StandInPredictor(), n_boot=0,
            attach=lambda p, c: stored.append(c), baselines=False, plots=False, progress=False,
        )  # fmt: skip
    assert metrics["calibration"]["method"] == "identity" and stored == [metrics["calibration"]]
    assert metrics["calibrated"]["crps"] == pytest.approx(metrics["raw"]["crps"], rel=1e-6)
