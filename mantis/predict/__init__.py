"""Streaming prediction of redshift densities for whole catalogues, and its output files."""

from mantis.predict._dataset_source import DatasetSource as DatasetSource
from mantis.predict._parts import PredictionError as PredictionError
from mantis.predict._pipeline import PredictSummary as PredictSummary
from mantis.predict._pipeline import predict_catalog as predict_catalog
from mantis.predict._ranks import LaunchedRank as LaunchedRank
from mantis.predict._ranks import launcher_rank as launcher_rank
from mantis.predict._readers import iter_predictions as iter_predictions
from mantis.predict._readers import read_predictions as read_predictions
from mantis.predict._sources import CutoutSource as CutoutSource
from mantis.predict._summary import SUMMARY_COLUMNS as SUMMARY_COLUMNS
from mantis.predict._summary import summarise_densities as summarise_densities
from mantis.predict._writers import COLUMN_UCDS as COLUMN_UCDS
from mantis.predict._writers import FORMATS as FORMATS
from mantis.predict._writers import convert_predictions as convert_predictions

__all__ = [
    "COLUMN_UCDS",
    "FORMATS",
    "SUMMARY_COLUMNS",
    "CutoutSource",
    "DatasetSource",
    "LaunchedRank",
    "PredictSummary",
    "PredictionError",
    "convert_predictions",
    "iter_predictions",
    "launcher_rank",
    "predict_catalog",
    "read_predictions",
    "summarise_densities",
]
