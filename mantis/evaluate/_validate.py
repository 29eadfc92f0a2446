"""The error evaluation raises, and the input checks it shares with every density user."""

from __future__ import annotations

from mantis.densities import check_probs, check_redshifts
from mantis.exceptions import DensityError

__all__ = ["EvaluationError", "check_probs", "check_redshifts"]

EvaluationError = DensityError
"""Densities, redshifts or evaluation settings that cannot be scored (`DensityError`)."""
