"""Turning a prediction file into redshift priors for SPS fitting codes.

* ``prospector``: HDF5 of per-object densities for `load_prospector_priors`.
* ``bagpipes``: CSV with ``id, redshift, redshift_sigma, redshift_min, redshift_max`` for
  ``fit_catalogue(..., redshifts=..., redshift_sigma=...)`` plus a JSON ``fit_instructions``
  snippet beside it. Bagpipes only takes Gaussian redshift priors, so the density is summarised
  by its median and half the width of its central 68% interval.
* ``table``: one row per object, one column per bin (probability density in 1/z), CSV or
  parquet by extension.

Rows flagged invalid in the predictions are left out of every export.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from mantis.densities import quantiles
from mantis.predict import PredictionError, iter_predictions
from mantis.priors._tabulated import soften_density
from mantis.zgrid import ZGrid

__all__ = ["PRIOR_FORMATS", "export_priors"]

PRIOR_FORMATS: tuple[str, ...] = ("prospector", "bagpipes", "table")
_SIGMA_LEVELS = np.array([0.15865525, 0.5, 0.84134475])


def _valid_chunks(path: Path, broaden: float, floor: float):
    zgrid, chunks = iter_predictions(path)

    def gen():
        for df, probs in chunks:
            keep = np.isfinite(probs).all(axis=1)
            if "valid" in df:
                keep &= df["valid"].to_numpy(dtype=bool)
            if keep.any():
                soft = soften_density(probs[keep], broaden=broaden, floor=floor)
                yield df["id"].astype(str).to_numpy()[keep], soft

    return zgrid, gen()


def _write_prospector(chunks, zgrid: ZGrid, tmp: Path, broaden: float, floor: float) -> int:
    import h5py

    n = 0
    with h5py.File(tmp, "w") as h5:
        ids = h5.create_dataset("id", (0,), maxshape=(None,), dtype=h5py.string_dtype())
        probs = h5.create_dataset(
            "probs", (0, zgrid.n_bins), maxshape=(None, zgrid.n_bins), dtype="f4",
            chunks=(min(1024, 65536 // zgrid.n_bins + 1), zgrid.n_bins),
        )  # fmt: skip
        for chunk_ids, soft in chunks:
            ids.resize((n + len(chunk_ids),))
            probs.resize((n + len(chunk_ids), zgrid.n_bins))
            ids[n:] = chunk_ids.astype(object)
            probs[n:] = soft.astype(np.float32)
            n += len(chunk_ids)
        h5.attrs.update(
            mantis_priors="prospector", zgrid=json.dumps(zgrid.to_dict()), broaden=broaden,
            floor=floor, usage="from mantis.priors import load_prospector_priors",
        )  # fmt: skip
    return n


def _bagpipes_rows(ids: np.ndarray, soft: np.ndarray, zgrid: ZGrid) -> pd.DataFrame:
    lo, med, hi = quantiles(soft, zgrid, _SIGMA_LEVELS).T
    sigma = np.maximum(0.5 * (hi - lo), zgrid.width)
    return pd.DataFrame({
        "id": ids, "redshift": med, "redshift_sigma": sigma,
        # the limits bagpipes.fit_catalogue sets itself (±3σ), kept inside the grid
        "redshift_min": np.maximum(med - 3 * sigma, zgrid.z_min),
        "redshift_max": np.minimum(med + 3 * sigma, zgrid.z_max),
    })  # fmt: skip


def _write_bagpipes(chunks, zgrid: ZGrid, tmp: Path, broaden: float, floor: float) -> int:
    n = 0
    with tmp.open("w", newline="") as fh:
        for chunk_ids, soft in chunks:
            rows = _bagpipes_rows(chunk_ids, soft, zgrid)
            rows.to_csv(fh, index=False, header=n == 0, float_format="%.6f", lineterminator="\n")
            n += len(rows)
    return n


def _bagpipes_snippet(out: Path, zgrid: ZGrid, broaden: float, floor: float) -> dict:
    return {
        "fit_catalogue_kwargs": {
            "redshifts": f"pandas.read_csv({out.name!r})['redshift'].to_numpy()",
            "redshift_sigma": f"pandas.read_csv({out.name!r})['redshift_sigma'].to_numpy()",
        },
        "fit_instructions_per_object": {
            "redshift": ["<redshift_min>", "<redshift_max>"],
            "redshift_prior": "Gaussian",
            "redshift_prior_mu": "<redshift>",
            "redshift_prior_sigma": "<redshift_sigma>",
        },
        "grid": zgrid.to_dict(),
        "broaden": broaden,
        "floor": floor,
    }


def _write_table(chunks, zgrid: ZGrid, tmp: Path, broaden: float, floor: float) -> int:
    columns = [f"pdf_z{c:.5f}" for c in zgrid.centres]
    n, parquet = 0, tmp.name.endswith((".parquet.tmp", ".pq.tmp"))
    writer = None
    with tmp.open("wb") as fh:
        for chunk_ids, soft in chunks:
            frame = pd.DataFrame(zgrid.pdf_values(soft).astype(np.float32), columns=columns)
            frame.insert(0, "id", chunk_ids)
            if parquet:
                import pyarrow as pa
                import pyarrow.parquet as pq

                table = pa.Table.from_pandas(frame, preserve_index=False).replace_schema_metadata(
                    {"mantis.zgrid": json.dumps(zgrid.to_dict()), "mantis.unit": "pdf, 1/z"}
                )
                writer = writer or pq.ParquetWriter(fh, table.schema)
                writer.write_table(table)
            else:
                fh.write(frame.to_csv(index=False, header=n == 0, float_format="%.7g").encode())
            n += len(frame)
        if writer is not None:
            writer.close()
    return n


_WRITERS = {"prospector": _write_prospector, "bagpipes": _write_bagpipes, "table": _write_table}


def export_priors(
    predictions: str | os.PathLike,
    out: str | os.PathLike,
    fmt: str,
    *,
    broaden: float = 1.0,
    floor: float = 0.0,
) -> int:
    """Write redshift priors for every valid object of a prediction file.

    Parameters
    ----------
    predictions : path-like
        Output of ``mantis predict`` (parquet, FITS, CSV or qp HDF5).
    out : path-like
        Prior file to write (temporary name, then rename).
    fmt : {'prospector', 'bagpipes', 'table'}
        Target code.
    broaden : float
        Temperature ``T > 0`` applied to each density (``p**(1/T)``); 1 leaves it unchanged.
    floor : float
        Fraction ``0 <= EPS < 1`` of probability spread uniformly over the grid.

    Returns
    -------
    int
        Number of objects written.

    Raises
    ------
    PredictionError
        If ``fmt``, ``broaden`` or ``floor`` is not allowed or the predictions are unreadable.
    """
    if fmt not in _WRITERS:
        raise PredictionError(f"unknown prior format {fmt!r}; allowed: {', '.join(PRIOR_FORMATS)}")
    try:
        soften_density(np.ones(2), broaden=broaden, floor=floor)
    except ValueError as err:
        raise PredictionError(str(err)) from None
    out = Path(out)
    zgrid, chunks = _valid_chunks(Path(predictions), broaden, floor)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        n = _WRITERS[fmt](chunks, zgrid, tmp, broaden, floor)
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    if fmt == "bagpipes":
        snippet = out.with_name(out.stem + ".fit_instructions.json")
        snippet.write_text(json.dumps(_bagpipes_snippet(out, zgrid, broaden, floor), indent=1))
    return n
