"""Training through the CLI entry points, checkpoints, resume, prediction."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch
import yaml

from mantis.data import DatasetError, dihedral
from mantis.exceptions import ConfigError
from mantis.models import attach_calibration, load_predictor, train_model


def _arrays(path, rows, groups):
    with h5py.File(path) as f:
        out = {"catalog/ebv": f["catalog/ebv"][rows]}
        for g in groups:
            for kind in ("image", "valid"):
                out[f"{g}/{kind}"] = f[f"{g}/{kind}"][rows]
    return out


def test_run_folder_layout_and_resolved_config(trained_run, synthetic_h5):
    run_dir, best = trained_run
    assert best == (run_dir / "checkpoints" / "best.ckpt").resolve()
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["data"]["path"] == str(synthetic_h5)
    assert config["model"]["net"] == "early_small"
    assert config["trainer"]["max_epochs"] == 2  # the override, resolved
    metrics = (run_dir / "metrics.csv").read_text().splitlines()
    header = metrics[0].split(",")
    assert {"val/nmad", "val/bias_mean", "val/outlier_rate", "val/cde_loss"} <= set(header)


def test_checkpoint_stores_noise_scales_and_grid(trained_run):
    _, best = trained_run
    ckpt = torch.load(best, weights_only=False)
    sigma = ckpt["state_dict"]["stretch.early.noise_sigma"]
    # the synthetic sky has 0.02 nanomaggies/pixel of noise in every band; on the small 16 px
    # test grid the galaxy's wings push the robust estimate up a little, never down
    assert ((sigma > 0.018) & (sigma < 0.03)).all(), sigma
    assert ckpt["mantis"]["zgrid"] == {"z_min": 0.0, "z_max": 1.6, "n_bins": 400}


def test_finished_run_returns_at_once(trained_run, synthetic_h5):
    run_dir, best = trained_run
    stamp = best.stat().st_mtime_ns
    again = train_model("train/smoke_early", synthetic_h5, run_dir)
    assert again == best
    assert best.stat().st_mtime_ns == stamp


def test_predictions_are_normalised_deterministic_and_reload_identically(trained_run, synthetic_h5):
    _, best = trained_run
    predictor = load_predictor(best)
    assert predictor.bands[0] == "FUV" and predictor.zgrid.n_bins == 400
    assert predictor.grids["early"]["size"] == 16
    rows = np.arange(10)
    arrays = _arrays(synthetic_h5, rows, ["early"])
    probs = predictor.predict_arrays(arrays)
    assert probs.shape == (10, 400)
    assert (probs >= 0).all()
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-12)
    assert np.array_equal(probs, predictor.predict_arrays(arrays))
    assert np.array_equal(probs, load_predictor(best).predict_arrays(arrays))
    assert np.array_equal(probs, predictor.predict_dataset(synthetic_h5)[:10])
    tta = predictor.predict_arrays(arrays, tta=True)
    assert np.array_equal(tta, predictor.predict_arrays(arrays, tta=True))
    np.testing.assert_allclose(tta.sum(1), 1.0, atol=1e-12)


def test_tta_is_invariant_to_rotating_the_input(trained_run, synthetic_h5):
    _, best = trained_run
    predictor = load_predictor(best)
    arrays = _arrays(synthetic_h5, np.arange(4), ["early"])
    turned = dict(arrays)
    for kind in ("image", "valid"):
        turned[f"early/{kind}"] = dihedral(torch.as_tensor(arrays[f"early/{kind}"]), 5).numpy()
    np.testing.assert_allclose(
        predictor.predict_arrays(turned, tta=True),
        predictor.predict_arrays(arrays, tta=True),
        rtol=1e-5,
        atol=1e-9,
    )


def test_predict_split_and_bad_inputs(trained_run, synthetic_h5):
    predictor = load_predictor(trained_run[1])
    with h5py.File(synthetic_h5) as f:
        n_test = int((f["catalog/split"][:] == b"test").sum())
    assert predictor.predict_dataset(synthetic_h5, split="test").shape == (n_test, 400)
    with pytest.raises(DatasetError, match="'holdout'"):
        predictor.predict_dataset(synthetic_h5, split="holdout")
    arrays = _arrays(synthetic_h5, np.arange(3), ["early"])
    with pytest.raises(DatasetError, match=r"early/image has shape .*trained on \(3, 9, 16, 16\)"):
        predictor.predict_arrays({**arrays, "early/image": arrays["early/image"][..., :8]})
    with pytest.raises(DatasetError, match="catalog/ebv"):
        predictor.predict_arrays({k: v for k, v in arrays.items() if k != "catalog/ebv"})


def test_attach_calibration_round_trips(tmp_path, trained_run):
    _, best = trained_run
    copy = tmp_path / "model.ckpt"
    copy.write_bytes(best.read_bytes())
    attach_calibration(copy, {"kind": "pit", "knots": [0.0, 0.5, 1.0]})
    assert load_predictor(copy).calibration == {"kind": "pit", "knots": [0.0, 0.5, 1.0]}
    assert load_predictor(best).calibration is None
    with pytest.raises(ConfigError, match="does not exist"):
        load_predictor(tmp_path / "nothing.ckpt")


def test_calibration_file_beside_the_checkpoint_is_applied(tmp_path, trained_run):
    from mantis.calibration import Calibration, calibration_path, write_calibration
    from mantis.exceptions import MantisWarning
    from mantis.zgrid import ZGrid

    _, best = trained_run
    copy = tmp_path / "model.ckpt"
    copy.write_bytes(best.read_bytes())
    fitted = Calibration("temperature", ZGrid(), temperature=1.5)
    write_calibration(fitted, calibration_path(copy), checkpoint=copy, split="val")
    assert calibration_path(copy).name == "model.calibration.json"
    assert load_predictor(copy).calibration == fitted.to_dict()
    # an explicit file must belong to this checkpoint; a stale one beside it is ignored
    retrained = tmp_path / "retrained.ckpt"  # other bytes: another network as far as we know
    retrained.write_bytes(best.read_bytes())
    attach_calibration(retrained, {"kind": "old"})
    with pytest.raises(ConfigError, match="fitted for another checkpoint"):
        load_predictor(retrained, calibration=calibration_path(copy))
    calibration_path(copy).replace(calibration_path(retrained))
    with pytest.warns(MantisWarning, match="another checkpoint"):
        assert load_predictor(retrained).calibration == {"kind": "old"}


def test_interrupted_run_resumes_from_last(tmp_path, synthetic_h5):
    run_dir = tmp_path / "run"
    quiet = {"trainer.enable_progress_bar": False}
    train_model(
        "train/smoke_early",
        synthetic_h5,
        run_dir,
        overrides={**quiet, "trainer.max_epochs": 1},
    )
    (run_dir / "finished.json").unlink()  # as if the process had died after epoch one
    best = train_model(
        "train/smoke_early",
        synthetic_h5,
        run_dir,
        overrides={**quiet, "trainer.max_epochs": 2},
    )
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert last["global_step"] == 2  # one batch per epoch: the first epoch was not redone
    assert json.loads((run_dir / "finished.json").read_text())["best"] == str(best)
    rows = [r for r in (run_dir / "metrics.csv").read_text().splitlines()[1:] if r]
    assert sorted({int(r.split(",")[0]) for r in rows}) == [0, 1]


def test_missing_config_is_a_clear_error(tmp_path, synthetic_h5):
    with pytest.raises(ConfigError, match="does not exist"):
        train_model(tmp_path / "nope.yaml", synthetic_h5, tmp_path / "run")


def test_late_fusion_smoke_fit_with_balanced_sampler(tmp_path, synthetic_h5):
    best = train_model(
        "train/smoke_late",
        synthetic_h5,
        tmp_path / "late",
        overrides={
            "trainer.max_epochs": 1,
            "trainer.enable_progress_bar": False,
            "data.balance_redshift": True,
        },
    )
    ckpt = torch.load(best, weights_only=False)
    correction = ckpt["state_dict"]["log_prior_correction"].numpy()
    # training n(z) is uniform on 0.02..1.2 and empty above, so the restored prior is at its
    # floor (the pseudo-count) above z = 1.2 and higher on average where the objects lie
    centres = np.linspace(0.002, 1.598, 400)
    high = correction[centres > 1.25]
    np.testing.assert_allclose(high, correction.min())
    assert correction[centres < 1.15].mean() > high.max() + 0.3
    probs = load_predictor(best).predict_dataset(synthetic_h5, split="val")
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-12)


@pytest.mark.parametrize("name", ["early", "late"])
def test_default_training_configs_fit_and_validate(tmp_path, synthetic_h5, name):
    # the configs `make train` uses (smoothed targets, modality dropout, cosine schedule)
    best = train_model(
        f"train/{name}",
        synthetic_h5,
        tmp_path / name,
        overrides={
            "trainer.max_epochs": 1,
            "trainer.limit_train_batches": 1,
            "trainer.enable_progress_bar": False,
            "data.num_workers": 0,
        },
    )
    rows = (tmp_path / name / "metrics.csv").read_text().splitlines()
    header, first = rows[0].split(","), rows[1].split(",")
    val_loss = float(first[header.index("val/loss")])
    assert np.isfinite(val_loss) and val_loss > 0
    probs = load_predictor(best).predict_dataset(synthetic_h5, split="val")
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-12)
