"""A source of image arrays that reads them from a built dataset instead of the cutout cache.

`predict_catalog` with a `DatasetSource` turns objects already in a dataset (a split of a
pipeline run) into an ordinary prediction file, without fetching or building anything again.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mantis.predict._parts import PredictionError
from mantis.stack import DatasetReader
from mantis.surveys import SURVEY_NAMES

__all__ = ["DatasetSource"]


@dataclass(frozen=True)
class DatasetSource:
    """The arrays of each catalogue row, looked up by ``id`` in a dataset.

    Parameters
    ----------
    dataset : str
        A dataset written by `mantis.stack.build_dataset`.
    """

    dataset: str

    def arrays(self, chunk: pd.DataFrame) -> dict[str, np.ndarray]:
        """Image groups, ``catalog/ebv`` and ``catalog/has_<survey>`` of the rows of ``chunk``.

        Raises
        ------
        PredictionError
            If an id is not in the dataset.
        """
        with DatasetReader(self.dataset) as reader:
            ids = reader.catalog(["id"])["id"]
            row_of = dict(zip(ids, range(len(ids)), strict=True))
            wanted = chunk["id"].astype(str)
            absent = [i for i in wanted if i not in row_of]
            if absent:
                raise PredictionError(
                    f"{len(absent)} id(s) are not in dataset {self.dataset!r}, e.g. {absent[0]!r}"
                )
            keys = [g for g in (*SURVEY_NAMES, "early") if f"{g}/image" in reader]
            keys += ["catalog/ebv"] + [
                f"catalog/has_{s}" for s in SURVEY_NAMES if f"catalog/has_{s}" in reader
            ]
            return reader.read(keys, np.array([row_of[i] for i in wanted], dtype=np.int64))
