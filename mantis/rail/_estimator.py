"""`MantisEstimator`: ids and positions in, a qp ensemble of mantis densities out, chunk by chunk.

RAIL's estimators read a "model" file that is usually a pickle; this one never unpickles: the
model is a mantis checkpoint, loaded with the prediction code of ``mantis predict`` (through
`mantis.serve.PredictionEngine`), and every chunk of the input table goes through
`mantis.predict.predict_catalog` as one small catalogue.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import qp
from ceci.config import StageParameter as Param
from rail.estimation.estimator import CatEstimator

__all__ = ["MantisEstimator"]


class MantisEstimator(CatEstimator):
    """Redshift densities from GALEX, Pan-STARRS1 and unWISE cutouts at each input position.

    Configuration (besides `CatEstimator`'s ``chunk_size``, ``id_col``, ...): ``checkpoint``
    (a ``mantis train`` checkpoint), ``calibration`` (optional recalibration file),
    ``cache_dir`` (cutout cache), ``endpoint`` (base URL replacing the survey services, e.g.
    ``mantis sky serve``), ``ra_col`` and ``dec_col`` (degrees). The output ensemble is a
    ``qp.hist`` on the checkpoint's grid; ancillary ``mantis_valid`` is False for rows that
    could not be predicted (bad coordinates, repeated positions), whose density is then flat.
    """

    name = "MantisEstimator"
    config_options = CatEstimator.config_options.copy()
    config_options.update(
        checkpoint=Param(str, None, required=True, msg="mantis checkpoint (.ckpt)"),
        calibration=Param(str, "", msg="recalibration file applied to every density"),
        cache_dir=Param(str, "data/cutouts", msg="raw cutout cache folder"),
        endpoint=Param(str, "", msg="base URL replacing every survey service"),
        ra_col=Param(str, "ra", msg="right ascension column, degrees"),
        dec_col=Param(str, "dec", msg="declination column, degrees"),
        batch_size=Param(int, 256, msg="objects per prediction chunk"),
    )

    def __init__(self, args: Any, **kwargs: Any) -> None:
        super().__init__(args, **kwargs)
        self.engine = None

    def open_model(self, **kwargs: Any) -> Any:
        """Load the checkpoint (once); RAIL's pickled model files are not used."""
        if self.engine is None:
            from mantis.serve import PredictionEngine

            self.engine = PredictionEngine.from_checkpoint(
                self.config.checkpoint,
                calibration=self.config.calibration or None,
                cache_dir=self.config.cache_dir,
                endpoint=self.config.endpoint or None,
                batch_size=self.config.batch_size,
            )
        self.model = self.engine
        return self.engine

    def _positions(self, data: Any) -> pd.DataFrame:
        columns = {self.config.ra_col: "ra", self.config.dec_col: "dec"}
        missing = [c for c in columns if c not in data]
        if missing:
            raise KeyError(f"input lacks column(s) {', '.join(missing)} (set ra_col/dec_col)")
        frame = pd.DataFrame({new: np.asarray(data[old], dtype=float)
                              for old, new in columns.items()})  # fmt: skip
        from mantis.serve import position_ids

        if self.config.id_col in data:
            ids = [i.decode() if isinstance(i, bytes) else str(i) for i in data[self.config.id_col]]
        else:
            ids = list(position_ids(frame["ra"], frame["dec"]))
        frame.insert(0, "id", ids)
        return frame

    def _process_chunk(self, start: int, end: int, data: Any, first: bool) -> None:
        frame = self._positions(data)
        with tempfile.TemporaryDirectory(prefix="mantis-rail-") as tmp:
            table, probs = self.engine.predict_frame(frame, Path(tmp))
        zgrid = self.engine.zgrid
        valid = table["valid"].to_numpy(dtype=bool)
        probs = np.where(valid[:, None], probs, 1.0 / zgrid.n_bins)
        ensemble = qp.Ensemble(
            qp.hist,
            data={"bins": zgrid.edges, "pdfs": zgrid.pdf_values(probs)},
            ancil={"mantis_valid": valid},
        )
        self._do_chunk_output(ensemble, start, end, first, data=data)
