"""The service's one adapter to the prediction code of ``mantis predict``.

Everything the service predicts goes through `mantis.predict.predict_catalog` on a catalogue
file inside a job or request folder, exactly as the command line does, and is read back with
`mantis.predict.read_predictions`; nothing here computes a density. Keeping every call into
`mantis.predict` and `mantis.models` in this module means a change of those entry points
(for example a calibration file applied by the predictor) is one edit here.

Cutouts are cached by object id, and ids given by users name nothing unique, so the engine
predicts under position names (``J{ra:09.5f}{dec:+09.5f}``, 0.036 arcsec) and puts the user's
ids back afterwards.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mantis.exceptions import MantisError

__all__ = ["PredictionEngine", "ServeError", "position_ids"]

_PART = re.compile(r"^part-(\d{12})-(\d{12})\.parquet$")  # mantis.predict's part files


class ServeError(MantisError):
    """The service cannot start: bad checkpoint, calibration file or settings."""


def position_ids(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """Cache names of positions, as `mantis.catalog.default_ids` gives them."""
    from mantis.catalog import default_ids

    return default_ids(np.asarray(ra, dtype=float), np.asarray(dec, dtype=float))


@dataclass
class PredictionEngine:
    """A loaded predictor and a cutout source, used the way ``mantis predict`` uses them.

    Parameters
    ----------
    predictor : object
        A `mantis.models.Predictor` (or a stand-in with the same interface).
    source : object
        Where image arrays come from (`mantis.predict.CutoutSource` or a stand-in).
    batch_size : int
        Rows per chunk handed to `predict_catalog`.
    """

    predictor: Any
    source: Any
    batch_size: int = 256

    @classmethod
    def from_checkpoint(
        cls,
        checkpoint: str | os.PathLike,
        *,
        calibration: str | os.PathLike | None = None,
        cache_dir: str | os.PathLike = "data/cutouts",
        endpoint: str | None = None,
        batch_size: int = 256,
    ) -> PredictionEngine:
        """Load a checkpoint (and optionally a calibration file) once, for every request.

        Raises
        ------
        ServeError
            If the checkpoint or the calibration file cannot be used.
        """
        if not Path(checkpoint).is_file():
            raise ServeError(f"checkpoint {str(checkpoint)!r} does not exist")
        from mantis.config import load_config
        from mantis.models import load_predictor
        from mantis.predict import CutoutSource

        try:  # a calibration file must belong to this checkpoint (`mantis calibrate`)
            predictor = load_predictor(checkpoint, device="cpu", calibration=calibration)
        except MantisError as err:
            raise ServeError(str(err)) from None
        config = load_config("build")
        if getattr(predictor, "grids", None):
            # the pixel grids the network was trained on, as mantis predict builds them
            config["grids"] = {**config.get("grids", {}), **predictor.grids}
        source = CutoutSource(str(cache_dir), endpoint, build_config=config)
        return cls(predictor, source, batch_size)

    @property
    def zgrid(self):
        """The redshift grid of every density."""
        return self.predictor.zgrid

    @property
    def calibrated(self) -> bool:
        """Whether densities are recalibrated."""
        return bool(getattr(self.predictor, "calibration", None))

    def predict_file(self, catalog: Path, out: Path) -> Any:
        """Predict a catalogue file into a parquet prediction file (resumes an interrupted run).

        Returns
        -------
        mantis.predict.PredictSummary
        """
        from mantis.predict import predict_catalog

        return predict_catalog(
            catalog, out, predictor=self.predictor, source=self.source, fmt="parquet",
            batch_size=self.batch_size, progress=False,
        )  # fmt: skip

    def predict_frame(self, frame: pd.DataFrame, workdir: Path) -> tuple[pd.DataFrame, np.ndarray]:
        """Predict the rows of ``frame`` (``id``, ``ra``, ``dec``) through a catalogue file.

        Returns
        -------
        tuple of (DataFrame, ndarray)
            The prediction columns (``id`` as given) and the ``(n, n_z)`` probabilities, NaN
            rows for invalid positions.
        """
        from mantis.predict import read_predictions

        internal = frame[["ra", "dec"]].copy()
        internal.insert(0, "id", position_ids(frame["ra"], frame["dec"]))
        workdir.mkdir(parents=True, exist_ok=True)
        internal.to_parquet(workdir / "catalog.parquet", index=False)
        self.predict_file(workdir / "catalog.parquet", workdir / "predictions.parquet")
        table, probs, _ = read_predictions(workdir / "predictions.parquet")
        table["id"] = frame["id"].to_numpy()
        return table, probs

    def cutouts(self, ra: float, dec: float) -> dict[str, np.ndarray]:
        """Image arrays of one position (the arrays the network sees), from the cache."""
        row = pd.DataFrame({"id": position_ids([ra], [dec]), "ra": [ra], "dec": [dec]})
        return self.source.arrays(row)

    @staticmethod
    def rows_done(out: Path) -> int:
        """Rows of ``out`` already written by an unfinished `predict_file` (its part files)."""
        parts = out.with_name(out.name + ".parts")
        done = 0
        if parts.is_dir():
            for path in parts.iterdir():
                match = _PART.match(path.name)
                if match:
                    done += int(match.group(2)) - int(match.group(1))
        return done
