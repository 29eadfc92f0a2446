"""Recalibration: it fixes mis-calibrated synthetic models and round-trips through JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mantis.evaluate import EvaluationError, density_metrics, point_metrics
from mantis.evaluate._calibration import Calibration, fit_calibration
from mantis.evaluate._metrics import point_estimates
from mantis.evaluate.testing import synthetic_model
from mantis.zgrid import ZGrid

GRID = ZGrid()
N = 6000


@pytest.fixture(scope="module")
def overconfident():
    val = synthetic_model(GRID, N, seed=11, overconfidence=2.5)
    test = synthetic_model(GRID, N, seed=12, overconfidence=2.5)
    return val, test, fit_calibration(*val, GRID)


def test_calibration_repairs_an_overconfident_model(overconfident):
    _, (probs, z), calibration = overconfident
    assert calibration.method in ("temperature", "pit_remap")
    before = density_metrics(probs, z, GRID)
    after = density_metrics(calibration.apply(probs), z, GRID)
    assert before["ks"] > 0.15  # a U-shaped PIT histogram
    assert after["ks"] < 0.3 * before["ks"]
    for level in (68, 90, 95):
        expected = level / 100
        assert abs(before[f"coverage_central_{level}"] - expected) > 0.1
        assert abs(after[f"coverage_central_{level}"] - expected) < 0.04
        assert abs(after[f"coverage_hpd_{level}"] - expected) < 0.04
    assert after["crps"] < before["crps"]
    # recalibration must not damage the point estimates
    nmad_before = point_metrics(point_estimates(probs, GRID)["mean"], z)["nmad"]
    nmad_after = point_metrics(point_estimates(calibration.apply(probs), GRID)["mean"], z)["nmad"]
    assert nmad_after == pytest.approx(nmad_before, rel=0.02)


def test_temperature_widens_overconfident_densities(overconfident):
    val, _, _ = overconfident
    calibration = fit_calibration(*val, GRID, methods=("temperature",))
    assert calibration.method == "temperature"
    # p^(1/T) of a Gaussian is a Gaussian √T wider: 2.5x too narrow wants T near 6.25
    assert 5.5 < calibration.temperature < 7.0


def test_underconfident_model_is_sharpened():
    val = synthetic_model(GRID, N, seed=21, overconfidence=0.5)
    calibration = fit_calibration(*val, GRID, methods=("temperature",))
    assert 0.2 < calibration.temperature < 0.3  # 2x too wide wants T near 1/4


def test_a_biased_model_is_remapped():
    val = synthetic_model(GRID, N, seed=31, bias=0.03)
    probs, z = synthetic_model(GRID, N, seed=32, bias=0.03)
    calibration = fit_calibration(*val, GRID)
    # scaling a width cannot move a biased PIT histogram; the remapping can
    assert calibration.method == "pit_remap"
    held_out = calibration.diagnostics["held_out"]
    assert held_out["pit_remap"]["ks"] < held_out["temperature"]["ks"]
    after = density_metrics(calibration.apply(probs), z, GRID)
    assert after["ks"] < 0.05 < density_metrics(probs, z, GRID)["ks"]


def test_a_calibrated_model_is_not_made_worse():
    val = synthetic_model(GRID, N, seed=41)
    probs, z = synthetic_model(GRID, N, seed=42)
    calibration = fit_calibration(*val, GRID)
    before = density_metrics(probs, z, GRID)
    after = density_metrics(calibration.apply(probs), z, GRID)
    assert after["crps"] <= before["crps"] * 1.01
    assert after["ks"] < 0.03


def test_apply_returns_normalised_float32_densities(overconfident):
    _, (probs, _), calibration = overconfident
    out = calibration.apply(probs.astype(np.float64))
    assert out.dtype == np.float32
    assert np.all(out >= 0)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-5)


def test_neutral_settings_leave_densities_unchanged(overconfident):
    _, (probs, _), _ = overconfident
    for calibration in (
        Calibration("identity", GRID),
        Calibration("temperature", GRID, temperature=1.0),
        Calibration("pit_remap", GRID, remap=np.linspace(0.0, 1.0, 201)),
    ):
        np.testing.assert_allclose(calibration.apply(probs), probs, atol=2e-6)


def test_json_round_trip_applies_identically(overconfident):
    _, (probs, _), calibration = overconfident
    for method in ("temperature", "pit_remap"):
        fitted = fit_calibration(*overconfident[0], GRID, methods=(method,))
        restored = Calibration.from_dict(json.loads(json.dumps(fitted.to_dict())))
        assert restored.method == method
        np.testing.assert_array_equal(restored.apply(probs[:100]), fitted.apply(probs[:100]))
    assert calibration.to_dict()["zgrid"] == GRID.to_dict()


def test_bad_calibrations_raise_clear_errors(overconfident):
    (probs, z), _, calibration = overconfident
    with pytest.raises(EvaluationError, match=r"must be one of .*'platt'"):
        Calibration.from_dict({**calibration.to_dict(), "method": "platt"})
    with pytest.raises(EvaluationError, match="non-decreasing table"):
        Calibration("pit_remap", GRID, remap=np.array([0.0, 0.7, 0.5, 1.0]))
    with pytest.raises(EvaluationError, match="temperature must be positive, got -2"):
        Calibration("temperature", GRID, temperature=-2.0)
    with pytest.raises(EvaluationError, match=r"missing \['zgrid'\]"):
        Calibration.from_dict({"method": "identity"})
    with pytest.raises(EvaluationError, match="format_version 9"):
        Calibration.from_dict({**calibration.to_dict(), "format_version": 9})
    with pytest.raises(EvaluationError, match=r"shape \(n_objects, 400\)"):
        calibration.apply(probs[:, :200])
    with pytest.raises(EvaluationError, match="at least 40 validation objects, got 10"):
        fit_calibration(probs[:10], z[:10], GRID)
    with pytest.raises(EvaluationError, match=r"subset of .*'isotonic'"):
        fit_calibration(probs, z, GRID, methods=("isotonic",))
