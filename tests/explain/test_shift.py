"""The per-object shift score: reference file, kNN and Mahalanobis scores, input features,
the combined score and its conformal p-values."""

from __future__ import annotations

import numpy as np
import pytest

from mantis.exceptions import ConfigError
from mantis.explain import (
    ShiftReference,
    ShiftScorer,
    embed_arrays,
    reference_path,
    shift_calibration,
)
from mantis.explain._shift_run import read_rows


def _fit(draw, n_train, n_val, *, score="embedding", **kwargs):
    """A reference whose embeddings and input features are both drawn by ``draw``."""
    train, val = draw(n_train), draw(n_val)
    noise = np.ones((2, 9))
    return ShiftReference.fit(train, val, train, val, noise=noise, score=score, **kwargs)


def _gaussian_sets(seed=0, d=16):
    """Correlated Gaussian embeddings around a mean; ``shifted`` moves the mean's direction."""
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(d, d)) / np.sqrt(d)
    mean = np.full(d, 3.0)
    flipped = mean * np.where(np.arange(d) % 2, -1.0, 1.0)
    return lambda n, shifted=False: (
        rng.normal(size=(n, d)) @ mixing + (flipped if shifted else mean)
    )


@pytest.mark.parametrize(
    ("method", "score"),
    [
        ("knn", "embedding"),
        ("mahalanobis", "embedding"),
        ("knn", "input"),
        ("knn", "combined"),
        ("mahalanobis", "sum"),
    ],
)
def test_pvalues_are_uniform_in_distribution_and_small_for_shifted_objects(method, score):
    draw = _gaussian_sets()
    ref = _fit(draw, 2000, 1000, k=10, method=method, score=score)
    probe = draw(4000)
    p_in = ref.pvalue(ref.shift_scores(probe, probe))
    # conformal p-values of exchangeable objects are uniform on {1/1001, ..., 1}; given one
    # validation draw the flag rate also carries that draw's own sampling error
    for alpha in (0.01, 0.05, 0.2, 0.5):
        sigma = np.sqrt(alpha * (1 - alpha) * (1 / len(p_in) + 1 / 1000))
        assert abs(np.mean(p_in < alpha) - alpha) < 4 * sigma + 1e-3
    shifted = draw(200, shifted=True)
    p_out = ref.pvalue(ref.shift_scores(shifted, shifted))
    assert np.mean(p_out < 0.01) > 0.9


def test_pvalue_counts_validation_scores_at_least_as_high():
    ref = _fit(lambda n: np.eye(4)[np.arange(n) % 4] * 1.0, 6, 2, k=1, method="knn")
    ref.val_scores["knn"] = np.array([1.0, 2.0, 3.0])
    np.testing.assert_allclose(
        ref.pvalue(np.array([0.5, 2.0, 2.5, 9.0])), [4 / 4, 3 / 4, 2 / 4, 1 / 4]
    )


def test_reference_file_round_trips_without_pickle(tmp_path):
    draw = _gaussian_sets(1)
    ref = _fit(draw, 300, 100, k=5, method="knn", score="combined", layer="x")
    path = ref.save(tmp_path / "m.shift.npz")
    with np.load(path, allow_pickle=False) as data:  # raises if anything needs unpickling
        assert data["reference"].dtype == np.float32
    back = ShiftReference.load(path)
    probe = draw(50)
    scores = ref.shift_scores(probe, probe)
    np.testing.assert_array_equal(back.shift_scores(probe, probe), scores)
    np.testing.assert_array_equal(back.pvalue(scores), ref.pvalue(scores))
    assert back.meta["layer"] == "x" and back.meta["k"] == 5
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ConfigError, match=r"bad\.npz"):
        ShiftReference.load(tmp_path / "bad.npz")


def test_training_stores_a_reference_that_scores_shifted_inputs_higher(explain_model):
    from mantis.models import load_predictor

    dataset, checkpoint = explain_model
    path = reference_path(checkpoint)
    assert path.is_file()  # written by train_model
    predictor = load_predictor(checkpoint)
    scorer = ShiftScorer.for_checkpoint(checkpoint, predictor)
    with np.load(path, allow_pickle=False) as data:
        n_ref = len(data["reference"])
    arrays = read_rows(dataset, ["early", "ps1"], np.arange(n_ref))
    columns = scorer.columns(arrays, n_ref)
    shifted = dict(arrays)
    rng = np.random.default_rng(0)  # a bright, structureless image in every band
    shifted["early/image"] = rng.normal(200.0, 50.0, arrays["early/image"].shape).astype("f4")
    out = scorer.columns(shifted, n_ref)
    assert np.median(out["shift_score"]) > np.percentile(columns["shift_score"], 99)
    # beyond every validation score: the smallest p-value 24 validation objects allow
    assert np.mean(out["shift_pvalue"] == 1 / 25) > 0.9
    assert np.mean(columns["shift_pvalue"] == 1 / 25) < 0.2
    assert out["shifted"].dtype == bool
    np.testing.assert_array_equal(out["shifted"], out["shift_pvalue"] < scorer.alpha)
    # the embeddings are the network's own: deterministic and batch-independent
    one = embed_arrays(predictor.module, {k: v[:1] for k, v in arrays.items()})
    np.testing.assert_array_equal(one[0], embed_arrays(predictor.module, arrays)[0])


def test_shift_calibration_reports_the_flag_rate(explain_model):
    dataset, checkpoint = explain_model
    result = shift_calibration(checkpoint, dataset, "test")
    assert result["n"] == 24 and result["alpha"] == 0.01
    assert result["flag_rate"] == result["n_flagged"] / 24
    assert result["sigma"] == pytest.approx(np.sqrt(0.01 * 0.99 / 24))


def test_a_reference_of_other_weights_is_refused(explain_model, tmp_path):
    import shutil

    import torch

    from mantis.models import load_predictor

    _, checkpoint = explain_model
    copy = tmp_path / "best.ckpt"
    shutil.copy(checkpoint, copy)
    shutil.copy(reference_path(checkpoint), reference_path(copy))
    predictor = load_predictor(copy)
    with torch.no_grad():
        next(predictor.module.net.parameters()).add_(1.0)
    with pytest.raises(ConfigError, match="other weights"):
        ShiftScorer.for_checkpoint(copy, predictor)
    assert ShiftScorer.for_checkpoint(None, predictor).columns(None, 3)["shifted"].tolist() == [
        False,
        False,
        False,
    ]


def test_evaluate_reports_the_shift_calibration(explain_model, tmp_path):
    from mantis.evaluate import evaluate_run
    from mantis.exceptions import MantisWarning

    dataset, checkpoint = explain_model
    with pytest.warns(MantisWarning, match="no calibration file"):
        metrics = evaluate_run(checkpoint, dataset, tmp_path / "eval", n_boot=0,
                               baselines=False, plots=False, progress=False)  # fmt: skip
    assert metrics["shift"] == shift_calibration(checkpoint, dataset, "test")
    assert (
        f"{metrics['shift']['n_flagged']} of 24 test objects flagged"
        in (tmp_path / "eval" / "report.md").read_text()
    )
