"""``mantis serve``: predictions over HTTP (JSON, asynchronous jobs, IVOA cone search) and a page.

Heavy imports (FastAPI, torch) happen when this package is imported, never by ``import mantis``.
"""

from mantis.serve._app import create_app as create_app
from mantis.serve._engine import PredictionEngine as PredictionEngine
from mantis.serve._engine import ServeError as ServeError
from mantis.serve._engine import position_ids as position_ids
from mantis.serve._jobs import RESULT_FORMATS as RESULT_FORMATS
from mantis.serve._run import serve as serve
from mantis.serve._settings import ServeSettings as ServeSettings

__all__ = [
    "RESULT_FORMATS",
    "PredictionEngine",
    "ServeError",
    "ServeSettings",
    "create_app",
    "position_ids",
    "serve",
]
