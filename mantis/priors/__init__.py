"""Redshift priors for stellar-population-synthesis fits (Prospector, Bagpipes, plain tables)."""

from mantis.priors._export import PRIOR_FORMATS as PRIOR_FORMATS
from mantis.priors._export import export_priors as export_priors
from mantis.priors._prospector import load_prospector_priors as load_prospector_priors
from mantis.priors._prospector import prospector_prior_class as prospector_prior_class
from mantis.priors._tabulated import TabulatedRedshiftPrior as TabulatedRedshiftPrior
from mantis.priors._tabulated import soften_density as soften_density

__all__ = [
    "PRIOR_FORMATS",
    "TabulatedRedshiftPrior",
    "export_priors",
    "load_prospector_priors",
    "prospector_prior_class",
    "soften_density",
]
