"""Redshift-density networks: registry, presets, the LightningModule, training, prediction."""

from mantis.models import _nets  # noqa: F401  (registers the presets)
from mantis.models._checkpoint import UnsafeCheckpointError, read_checkpoint
from mantis.models._module import RedshiftModule
from mantis.models._predict import Predictor, attach_calibration, load_predictor
from mantis.models._refit import HeadRefit, refit_head
from mantis.models._registry import create_model, list_models, register_model
from mantis.models._train import MantisCLI, train_model

__all__ = [
    "HeadRefit",
    "MantisCLI",
    "Predictor",
    "RedshiftModule",
    "UnsafeCheckpointError",
    "attach_calibration",
    "create_model",
    "list_models",
    "load_predictor",
    "read_checkpoint",
    "refit_head",
    "register_model",
    "train_model",
]
