"""Prospector redshift priors: a file of per-object densities and the one-line loader.

The file is HDF5: ``/id`` (utf-8 strings), ``/probs`` (n_objects, n_z) float32 per-bin
probabilities *after* broadening and floor, attributes ``zgrid`` (JSON), ``broaden`` and
``floor``. ``load_prospector_priors(path)`` turns it into one prior object per id, ready for
``model_params["zred"]["prior"]``.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import numpy as np

from mantis.priors._tabulated import TabulatedRedshiftPrior
from mantis.zgrid import ZGrid

__all__ = ["load_prospector_priors", "prospector_prior_class"]


@functools.cache
def prospector_prior_class() -> type[TabulatedRedshiftPrior]:
    """Return a subclass of Prospector's ``Prior`` when ``astro-prospector`` is installed.

    Without Prospector (the ``sps`` extra) this is `TabulatedRedshiftPrior` itself, which has
    the same interface; with it, the objects also pass ``isinstance(p, prospect...Prior)``.
    """
    try:
        from prospect.models.priors import Prior
    except ImportError:
        return TabulatedRedshiftPrior

    class ProspectorTabulatedRedshift(TabulatedRedshiftPrior, Prior):
        """`TabulatedRedshiftPrior` registered as a Prospector ``Prior``."""

        def __init__(self, edges: np.ndarray, probs: np.ndarray, **kwargs: float | str) -> None:
            # Prospector's own constructor expects scipy-style scalar parameters; ours
            # replaces it entirely, keeping the attributes Prospector's model reads.
            TabulatedRedshiftPrior.__init__(self, edges, probs, **kwargs)
            self.alias = {k: k for k in self.prior_params}

    return ProspectorTabulatedRedshift


def load_prospector_priors(
    path: str | os.PathLike, *, ids: list[str] | None = None
) -> dict[str, TabulatedRedshiftPrior]:
    """Load the priors written by ``mantis priors --format prospector``.

    Parameters
    ----------
    path : str or path-like
        HDF5 file written by `mantis.priors.write_prospector_priors`.
    ids : list of str, optional
        Load only these objects (default: all).

    Returns
    -------
    dict
        Object id to prior object; use as ``model_params["zred"]["prior"] = priors[obj_id]``.

    Raises
    ------
    KeyError
        If a requested id is not in the file.
    ValueError
        If the file is not a mantis Prospector prior file.
    """
    import h5py

    with h5py.File(Path(path), "r") as h5:
        if h5.attrs.get("mantis_priors") != "prospector":
            raise ValueError(f"{str(path)!r} is not a mantis Prospector prior file")
        edges = ZGrid.from_dict(json.loads(h5.attrs["zgrid"])).edges
        all_ids = h5["id"].asstr()[...]
        if ids is None:
            rows = np.arange(all_ids.size)
        else:
            ids = list(dict.fromkeys(ids))
            lookup = {obj: i for i, obj in enumerate(all_ids)}
            missing = [obj for obj in ids if obj not in lookup]
            if missing:
                raise KeyError(f"ids not in {str(path)!r}: {', '.join(missing[:10])}")
            rows = np.array([lookup[obj] for obj in ids], dtype=np.int64)
        order = np.argsort(rows)
        probs = np.empty((rows.size, edges.size - 1), dtype=np.float32)
        probs[order] = h5["probs"][np.sort(rows)] if rows.size else probs[order]
    cls = prospector_prior_class()
    # the stored densities already carry the broadening and floor chosen at export time
    return {str(all_ids[r]): cls(edges, p) for r, p in zip(rows, probs, strict=True)}
