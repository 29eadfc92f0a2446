"""Refitting the density head on frozen encoder features after training (`model.head_refit`)."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from mantis.data.testing import write_synthetic_dataset
from mantis.exceptions import ConfigError
from mantis.models import load_predictor, read_checkpoint, train_model
from mantis.models._refit import check_head_refit

N_Z, Z_MAX = 400, 1.6


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """200 objects: enough for the head to learn something from frozen features."""
    return write_synthetic_dataset(tmp_path_factory.mktemp("refit") / "synthetic.h5", 200, seed=0)


def _tempered_val_log_score(checkpoint, path) -> float:
    """Mean log density at the true bin over the validation split, at its best temperature."""
    with h5py.File(path) as f:
        val = np.flatnonzero(f["catalog/split"][:].astype(str) == "val")
        arrays = {k: f[k][:][val] for k in ("early/image", "early/valid", "catalog/ebv")}
        z = f["catalog/z"][:][val]
    log_p = np.log(load_predictor(checkpoint).predict_arrays(arrays).astype(np.float64))
    at_truth = np.minimum((z / (Z_MAX / N_Z)).astype(int), N_Z - 1)
    scores = []
    for beta in np.exp(np.linspace(-np.log(4), np.log(4), 49)):
        tempered = beta * log_p
        tempered -= np.logaddexp.reduce(tempered, axis=1, keepdims=True)
        scores.append(tempered[np.arange(len(z)), at_truth].mean())
    return max(scores)


def _train(run_dir, dataset, refit):
    return train_model(
        "train/smoke_early",
        dataset,
        run_dir,
        overrides={"trainer.max_epochs": 1, "trainer.enable_progress_bar": False,
                   "model.net_kwargs": {"widths": [16, 32, 64], "head_depth": 2},
                   "model.head_refit": refit},
    )  # fmt: skip


def _changed(best, last) -> set[str]:
    refit, trained = read_checkpoint(best)["state_dict"], read_checkpoint(last)["state_dict"]
    return {k for k, v in refit.items() if not torch.equal(v, trained[k])}


def test_refit_head_replaces_only_the_head_and_improves_validation(tmp_path, dataset):
    best = _train(tmp_path / "early", dataset, {"epochs": 20, "lr": 0.01})
    last = tmp_path / "early" / "checkpoints" / "last.ckpt"
    summary = read_checkpoint(best)["mantis"]["head_refit"]
    assert summary["kept"] and 1 <= summary["best_epoch"] <= 20
    assert "head_refit" not in read_checkpoint(last)["mantis"]
    # one epoch: the best checkpoint is the last one, so everything but the head is identical
    changed = _changed(best, last)
    assert changed and all(k.startswith("net.head.") for k in changed)
    # judged independently of the refit's own bookkeeping, through the predictor: the
    # tempered density at the true redshift of validation objects is higher after the refit
    gain = _tempered_val_log_score(best, dataset) - _tempered_val_log_score(last, dataset)
    assert gain == pytest.approx(
        summary["val_log_score_before"] - summary["val_log_score_after"], rel=1e-3
    )
    assert gain > 0


def test_a_refit_that_does_not_help_is_not_kept(tmp_path, dataset):
    best = _train(tmp_path / "early", dataset, {"epochs": 2, "lr": 1e-12})
    summary = read_checkpoint(best)["mantis"]["head_refit"]
    assert not summary["kept"] and summary["best_epoch"] == 0
    assert not _changed(best, tmp_path / "early" / "checkpoints" / "last.ckpt")


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"epochs": -1}, "head_refit.epochs must be an integer >= 0, got -1"),
        ({"epochs": 2.5}, "head_refit.epochs must be an integer >= 0, got 2.5"),
        ({"lr": 0}, "head_refit.lr must be > 0, got 0"),
        ({"epoch": 3}, r"head_refit has unknown keys \['epoch'\]"),
    ],
)
def test_bad_refit_settings_name_the_value(settings, message):
    with pytest.raises(ConfigError, match=message):
        check_head_refit(settings)


def test_no_refit_unless_asked():
    assert check_head_refit(None)["epochs"] == 0
