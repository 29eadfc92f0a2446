"""Merging finished parts into the requested output format, one part in memory at a time.

* parquet: the density is a ``list<float32>`` column (per-bin probabilities, empty for
  invalid rows); the grid and conventions are in the file's key-value metadata.
* FITS: one binary table; the density is an ``n_z``-element float32 vector column (NaN for
  invalid rows); the grid is in the header (ZMIN, ZMAX, NZBINS).
* CSV: the density is one column of space-separated values; the grid is in ``#`` lines on top.
* VOTable: one TABLE (astropy.io.votable, binary serialisation) with units and UCDs; the
  density is an ``n_z``-element float32 array column (NaN for invalid rows), the grid is in
  PARAMs. Built in memory, so meant for catalogues that fit in it.
* qp: a qp-prob ``hist`` ensemble (HDF5) of the valid rows, probability densities in 1/z, with
  ``id``, ``zmode``, ``zmean``, ``zmedian``, ``z_std`` and the shift columns as ancillary
  columns for RAIL.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mantis import densities
from mantis.predict._parts import PredictionError
from mantis.zgrid import ZGrid

__all__ = [
    "COLUMN_UCDS",
    "DENSITY_COLUMN",
    "FORMATS",
    "METADATA_KEY",
    "convert_predictions",
    "format_from_path",
    "merge_parts",
    "output_metadata",
    "read_made_from",
]

FORMATS: tuple[str, ...] = ("parquet", "fits", "csv", "qp", "votable")
DENSITY_COLUMN = "density"
METADATA_KEY = "mantis.predictions"
MADE_FROM_KEY = "made_from"
_SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".fits": "fits", ".fit": "fits",
             ".csv": "csv", ".hdf5": "qp", ".h5": "qp", ".vot": "votable",
             ".votable": "votable", ".xml": "votable"}  # fmt: skip
ROW_GROUP_ROWS = 4096
_DROP = ("_row", "_fetch_galex", "_fetch_ps1", "_fetch_unwise")  # bookkeeping of the parts
# (unit, UCD1+) of the columns a prediction file has, for VOTable readers such as TOPCAT
COLUMN_UCDS: dict[str, tuple[str | None, str]] = {
    "id": (None, "meta.id;meta.main"),
    "ra": ("deg", "pos.eq.ra;meta.main"),
    "dec": ("deg", "pos.eq.dec;meta.main"),
    "z_mean": (None, "src.redshift.phot;stat.mean"),
    "z_median": (None, "src.redshift.phot;stat.median"),
    "z_mode": (None, "src.redshift.phot"),
    "z_std": (None, "stat.stdev;src.redshift.phot"),
    "z_lo68": (None, "stat.min;src.redshift.phot"),
    "z_hi68": (None, "stat.max;src.redshift.phot"),
    "z_lo95": (None, "stat.min;src.redshift.phot"),
    "z_hi95": (None, "stat.max;src.redshift.phot"),
    "odds": (None, "stat.probability"),
    "valid": (None, "meta.code.qual"),
    "flag": (None, "meta.note"),
    "density": (None, "stat.probability;src.redshift.phot"),
}


def format_from_path(path: str | os.PathLike) -> str:
    """Output format implied by a file name's extension.

    Raises
    ------
    PredictionError
        If the extension is not one of .parquet, .pq, .fits, .fit, .csv, .hdf5, .h5.
    """
    suffix = Path(path).suffix.lower()
    if suffix not in _SUFFIXES:
        raise PredictionError(
            f"cannot tell the output format of {str(path)!r} from {suffix!r}; use one of "
            f"{', '.join(_SUFFIXES)} or pass --format {{{','.join(FORMATS)}}}"
        )
    return _SUFFIXES[suffix]


def output_metadata(zgrid: ZGrid, made_from: dict | None = None) -> dict[str, str]:
    """Return the description every output carries (grid, meaning of the density).

    ``made_from`` (catalogue and checkpoint fingerprints) is added when given, so that a
    rerun can tell whether an existing output belongs to its inputs.
    """
    meta = {
        "zgrid": json.dumps(zgrid.to_dict(), sort_keys=True),
        "density": "probability per redshift bin; rows sum to one; empty for invalid rows",
        "odds": "probability within z_mode +- 0.06 (1 + z_mode)",
        "intervals": "central 68% and 95% credible intervals",
    }
    if made_from is not None:
        meta[MADE_FROM_KEY] = json.dumps(made_from, sort_keys=True)
    return meta


def _unified_schema(parts: list[Path]):
    import pyarrow as pa
    import pyarrow.parquet as pq

    schemas = [pq.read_schema(p).remove_metadata() for p in parts]
    # chunks of a CSV can infer different types for one column (int, then float with NaN)
    schema = pa.unify_schemas(schemas, promote_options="permissive")
    for name in _DROP:
        if name in schema.names:  # parts have it; a finished prediction file does not
            schema = schema.remove(schema.get_field_index(name))
    return schema


def _tables(parts: list[Path], schema):
    import pyarrow.parquet as pq

    for path in parts:
        table = pq.read_table(path)
        yield table.drop_columns([c for c in _DROP if c in table.column_names]).cast(schema)


def _write_parquet(parts: list[Path], tmp: Path, schema, zgrid: ZGrid, made_from=None) -> None:
    import pyarrow.parquet as pq

    meta = {METADATA_KEY: json.dumps(output_metadata(zgrid, made_from), sort_keys=True)}
    with pq.ParquetWriter(tmp, schema.with_metadata(meta)) as writer:
        for table in _row_groups(_tables(parts, schema)):
            writer.write_table(table)


def _row_groups(tables):
    """Tables of `ROW_GROUP_ROWS` rows (the last may be shorter), whatever the parts' sizes.

    Row groups then do not depend on where parts begin and end, so a run resumed after
    failures or with another chunk size writes the same bytes as one clean run.
    """
    import pyarrow as pa

    pending: list = []
    held = 0
    for table in tables:
        pending.append(table)
        held += len(table)
        while held >= ROW_GROUP_ROWS:
            merged = pa.concat_tables(pending).combine_chunks()
            yield merged.slice(0, ROW_GROUP_ROWS)
            pending, held = [merged.slice(ROW_GROUP_ROWS)], held - ROW_GROUP_ROWS
    if held:
        yield pa.concat_tables(pending).combine_chunks()


def _density_matrix(table, zgrid: ZGrid) -> np.ndarray:
    """Dense (n, n_z) float32 density with NaN rows where the list is empty."""
    column = table.column(DENSITY_COLUMN).combine_chunks()
    lengths = column.value_lengths().to_numpy(zero_copy_only=False)
    dense = np.full((len(table), zgrid.n_bins), np.nan, dtype=np.float32)
    filled = lengths == zgrid.n_bins
    values = column.flatten().to_numpy().astype(np.float32, copy=False)
    dense[filled] = values.reshape(-1, zgrid.n_bins)
    return dense


def _write_csv(parts: list[Path], tmp: Path, schema, zgrid: ZGrid, made_from=None) -> None:
    with tmp.open("w", newline="") as fh:
        for key, value in output_metadata(zgrid, made_from).items():
            fh.write(f"# {key}: {value}\n")
        header = True
        for table in _tables(parts, schema):
            dense = _density_matrix(table, zgrid)
            df = table.drop_columns([DENSITY_COLUMN]).to_pandas()
            # %.7g keeps every float32 digit that matters for a probability
            text = np.char.mod("%.7g", dense)
            df[DENSITY_COLUMN] = [" ".join(row) if np.isfinite(d[0]) else "" for row, d in
                                  zip(text, dense, strict=True)]  # fmt: skip
            df.to_csv(fh, index=False, header=header, lineterminator="\n", float_format="%.10g")
            header = False


def _fits_layout(parts: list[Path], schema, zgrid: ZGrid) -> list[tuple[str, str, object]]:
    import pyarrow as pa
    import pyarrow.compute as pc

    layout = []
    for field in schema:
        t = field.type
        if field.name == DENSITY_COLUMN:
            layout.append((field.name, f"{zgrid.n_bins}E", (">f4", (zgrid.n_bins,))))
        elif pa.types.is_boolean(t):
            layout.append((field.name, "L", "u1"))
        elif pa.types.is_integer(t):
            layout.append((field.name, "K", ">i8"))
        elif pa.types.is_float32(t):
            layout.append((field.name, "E", ">f4"))
        elif pa.types.is_floating(t):
            layout.append((field.name, "D", ">f8"))
        else:
            width = 1
            for path in parts:
                column = pa.parquet.read_table(path, columns=[field.name]).column(0)
                lengths = pc.binary_length(pc.cast(column, pa.string()).fill_null(""))
                width = max(width, int(pc.max(lengths).as_py() or 0))
            layout.append((field.name, f"{width}A", f"S{width}"))
    return layout


def _fits_records(table, layout, zgrid: ZGrid) -> np.ndarray:
    import pyarrow as pa

    records = np.zeros(len(table), dtype=[(name, dt) for name, _, dt in layout])
    for name, form, _ in layout:
        column = table.column(name)
        if name == DENSITY_COLUMN:
            records[name] = _density_matrix(table, zgrid)
        elif form == "L":
            records[name] = np.where(column.to_numpy(zero_copy_only=False), ord("T"), ord("F"))
        elif form.endswith("A"):
            strings = column.cast(pa.string()).fill_null("").to_pylist()
            records[name] = [s.encode("utf-8") for s in strings]
        else:
            records[name] = column.to_numpy(zero_copy_only=False)
    return records


def _write_fits(parts: list[Path], tmp: Path, schema, zgrid: ZGrid, made_from=None) -> None:
    import pyarrow.parquet as pq
    from astropy.io import fits

    layout = _fits_layout(parts, schema, zgrid)
    n_rows = sum(pq.ParquetFile(p).metadata.num_rows for p in parts)
    columns = [fits.Column(name=name, format=form) for name, form, _ in layout]
    header = fits.BinTableHDU.from_columns(columns, nrows=0).header
    header["NAXIS2"] = n_rows
    header["EXTNAME"] = "PREDICTIONS"
    header["ZMIN"] = (zgrid.z_min, "lower edge of the redshift grid")
    header["ZMAX"] = (zgrid.z_max, "upper edge of the redshift grid")
    header["NZBINS"] = (zgrid.n_bins, "number of redshift bins")
    header["DENSUNIT"] = ("probability per bin", "density column: rows sum to one")
    if made_from is not None:
        header["MADEFROM"] = json.dumps(made_from, sort_keys=True)
    # rows are streamed after a header that already states their number, part by part
    with tmp.open("wb") as fh:
        fh.write(fits.PrimaryHDU().header.tostring().encode("ascii"))
        fh.write(header.tostring().encode("ascii"))
        written = 0
        for table in _tables(parts, schema):
            blob = _fits_records(table, layout, zgrid).tobytes()
            fh.write(blob)
            written += len(blob)
        fh.write(b"\0" * (-written % 2880))


def _write_qp(parts: list[Path], tmp: Path, schema, zgrid: ZGrid, made_from=None) -> None:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    import qp

    valid_counts, id_width = [], 1
    for path in parts:
        table = pq.read_table(path, columns=["id", "valid"])
        valid_counts.append(int(pc.sum(table.column("valid")).as_py() or 0))
        ids = table.filter(table.column("valid")).column("id")
        if len(ids):
            id_width = max(id_width, int(pc.max(pc.binary_length(ids)).as_py()))
    n_valid = sum(valid_counts)
    if n_valid == 0:
        raise PredictionError("no valid rows to write as a qp ensemble")

    def ensemble(table) -> qp.Ensemble:
        table = table.filter(table.column("valid"))
        ancil = {
            "id": np.array([s.encode() for s in table.column("id").to_pylist()], f"S{id_width}"),
            "zmode": table.column("z_mode").to_numpy(),
            "zmean": table.column("z_mean").to_numpy(),
            "zmedian": table.column("z_median").to_numpy(),
            "z_std": table.column("z_std").to_numpy(),
        }
        for name in ("shift_score", "shift_pvalue", "shifted", "field_shift_pvalue"):
            if name in table.column_names:
                ancil[name] = table.column(name).to_numpy(zero_copy_only=False)
        return densities.to_qp(_density_matrix(table, zgrid).astype(np.float64), zgrid, ancil)

    start, group, fout, last = 0, None, None, None
    for table in _tables(parts, schema):
        if not pc.any(table.column("valid")).as_py():
            continue
        ens = ensemble(table)
        if group is None:
            group, fout = ens.initializeHdf5Write(str(tmp), n_valid)
        ens.writeHdf5Chunk(group, start, start + ens.npdf)
        start += ens.npdf
        last = ens
    last.finalizeHdf5Write(fout)
    if made_from is not None:
        import h5py

        with h5py.File(tmp, "a") as h5:
            h5.attrs[f"mantis.{MADE_FROM_KEY}"] = json.dumps(made_from, sort_keys=True)


def _write_votable(parts: list[Path], tmp: Path, schema, zgrid: ZGrid, made_from=None) -> None:
    from astropy.io.votable import from_table
    from astropy.io.votable.tree import Info, Param
    from astropy.table import Table, vstack

    tables = []
    for table in _tables(parts, schema):
        dense = _density_matrix(table, zgrid)
        t = Table.from_pandas(table.drop_columns([DENSITY_COLUMN]).to_pandas())
        t[DENSITY_COLUMN] = dense
        tables.append(t)
    table = vstack(tables, metadata_conflicts="silent") if len(tables) > 1 else tables[0]
    for name, (unit, _) in COLUMN_UCDS.items():
        if unit and name in table.colnames:
            table[name].unit = unit
    votable = from_table(table)
    resource_table = votable.get_first_table()
    for field in resource_table.fields:
        if field.name in COLUMN_UCDS:
            field.ucd = COLUMN_UCDS[field.name][1]
    for key, value, ucd in (("ZMIN", zgrid.z_min, "src.redshift;stat.min"),
                            ("ZMAX", zgrid.z_max, "src.redshift;stat.max"),
                            ("NZBINS", zgrid.n_bins, "meta.number")):  # fmt: skip
        datatype = "int" if isinstance(value, int) else "double"
        resource_table.params.append(
            Param(votable, name=key, datatype=datatype, value=value, ucd=ucd)
        )
    resource_table.description = output_metadata(zgrid)["density"]
    if made_from is not None:
        resource_table.infos.append(
            Info(name=MADE_FROM_KEY, value=json.dumps(made_from, sort_keys=True))
        )
    votable.to_xml(str(tmp), tabledata_format="binary")


_WRITERS: dict[str, Callable] = {
    "parquet": _write_parquet,
    "fits": _write_fits,
    "csv": _write_csv,
    "qp": _write_qp,
    "votable": _write_votable,
}


def merge_parts(
    parts: list[Path],
    out: str | os.PathLike,
    fmt: str,
    zgrid: ZGrid,
    made_from: dict | None = None,
) -> Path:
    """Write the parts, in order, as one output file (temporary name, then rename).

    Parameters
    ----------
    parts : list of Path
        Part files sorted by catalogue row.
    out : path-like
        Final output path.
    fmt : {'parquet', 'fits', 'csv', 'qp', 'votable'}
        Output format.
    zgrid : ZGrid
        Grid of the densities.
    made_from : dict, optional
        Fingerprints of the inputs, stored in the file (see `read_made_from`).

    Returns
    -------
    Path
        ``out``.
    """
    if fmt not in _WRITERS:
        raise PredictionError(f"unknown output format {fmt!r}; allowed: {', '.join(FORMATS)}")
    if not parts:
        raise PredictionError("nothing to write: the catalogue has no rows")
    out = Path(out)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        _WRITERS[fmt](parts, tmp, _unified_schema(parts), zgrid, made_from)
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def read_made_from(path: str | os.PathLike, fmt: str) -> dict | None:
    """Return the input fingerprints stored in an output, or None if it holds none.

    Parameters
    ----------
    path : path-like
        An existing output file.
    fmt : {'parquet', 'fits', 'csv', 'qp', 'votable'}
        Its format.
    """
    text = None
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            meta = (pq.read_schema(path).metadata or {}).get(METADATA_KEY.encode())
            text = json.loads(meta).get(MADE_FROM_KEY) if meta else None
        elif fmt == "csv":
            with Path(path).open() as fh:
                for line in iter(fh.readline, ""):
                    if not line.startswith("# "):
                        break
                    key, _, value = line[2:].rstrip("\n").partition(": ")
                    text = value if key == MADE_FROM_KEY else text
        elif fmt == "fits":
            from astropy.io import fits

            text = fits.getheader(path, 1).get("MADEFROM")
        elif fmt == "qp":
            import h5py

            with h5py.File(path, "r") as h5:
                text = h5.attrs.get(f"mantis.{MADE_FROM_KEY}")
        elif fmt == "votable":
            from astropy.io.votable import parse

            for info in parse(str(path)).get_first_table().infos:
                text = info.value if info.name == MADE_FROM_KEY else text
        found = json.loads(text) if text else None
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return None
    return found if isinstance(found, dict) else None


def convert_predictions(path: str | os.PathLike, out: str | os.PathLike, fmt: str) -> Path:
    """Write a finished parquet prediction file in another format (the writers of `merge_parts`).

    Parameters
    ----------
    path : path-like
        A parquet file written by `mantis.predict.predict_catalog`.
    out : path-like
        Output file.
    fmt : {'parquet', 'fits', 'csv', 'qp', 'votable'}
        Output format.

    Returns
    -------
    Path
        ``out``.
    """
    import pyarrow.parquet as pq

    meta = pq.read_schema(path).metadata or {}
    if METADATA_KEY.encode() not in meta:
        raise PredictionError(f"{str(path)!r} is not a mantis prediction file (no grid metadata)")
    zgrid = ZGrid.from_dict(json.loads(json.loads(meta[METADATA_KEY.encode()])["zgrid"]))
    return merge_parts([Path(path)], out, fmt, zgrid)
