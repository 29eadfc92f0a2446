"""mantis inside RAIL: `MantisEstimator`, a ``CatEstimator`` that predicts from images.

Needs the optional extra ``rail`` (``pip install 'mantis[rail]'``, i.e. pz-rail-base).
"""

from mantis.rail._estimator import MantisEstimator as MantisEstimator

__all__ = ["MantisEstimator"]
