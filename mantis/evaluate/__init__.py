"""Evaluation: metrics, fitting the recalibration, survey ablations, baselines and the report.

Heavy pieces (plots, baselines, the report) are imported from their modules on demand, so
``import mantis.evaluate`` stays light.
"""

from mantis.evaluate._ablations import evaluate_ablations, read_split_arrays, withhold_survey
from mantis.evaluate._calibrate import MIN_VALIDATION_OBJECTS, calibrate_run
from mantis.evaluate._calibration import Calibration, fit_calibration
from mantis.evaluate._metrics import (
    cdf_quantiles,
    coverage,
    density_metrics,
    pit_statistics,
    pit_values,
    point_estimates,
    point_metrics,
    residuals,
    score_densities,
)
from mantis.evaluate._run import evaluate_run
from mantis.evaluate._summary import evaluate_densities, summarise_scores
from mantis.evaluate._validate import EvaluationError

__all__ = [
    "MIN_VALIDATION_OBJECTS",
    "Calibration",
    "EvaluationError",
    "calibrate_run",
    "cdf_quantiles",
    "coverage",
    "density_metrics",
    "evaluate_ablations",
    "evaluate_densities",
    "evaluate_run",
    "fit_calibration",
    "pit_statistics",
    "pit_values",
    "point_estimates",
    "point_metrics",
    "read_split_arrays",
    "residuals",
    "score_densities",
    "summarise_scores",
    "withhold_survey",
]
