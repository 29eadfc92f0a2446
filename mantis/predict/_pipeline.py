"""Streaming catalogue prediction: chunks → arrays → network → recalibration → parts → file.

Each rank walks the catalogue in chunks, keeps the chunks ``k`` with ``k % world == rank``,
drops the rows that finished parts already cover, and hands the rest to a background thread
that fetches and builds chunk ``k + 1`` while the network runs on chunk ``k``. Every chunk ends
as one part file; when all ranks are done, rank 0 merges the parts into the output.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mantis.predict._catalog_stream import (
    ROW_COLUMN,
    catalog_fingerprint,
    count_rows,
    iter_catalog_chunks,
)
from mantis.predict._duplicates import DUPLICATE_REASON, duplicated_rows
from mantis.predict._parts import PartStore, PredictionError, subtract_intervals
from mantis.predict._sources import (
    ArraySource,
    check_compatible,
    check_densities,
    coverage_flags,
)
from mantis.predict._stages import staged
from mantis.predict._summary import SUMMARY_COLUMNS, summarise_densities
from mantis.predict._writers import FORMATS, format_from_path, merge_parts

__all__ = ["PredictSummary", "predict_catalog"]

# Chunks whose cutouts may be downloaded ahead of the one being built: enough to keep the
# services busy through a slow build, few enough that an interrupted run wastes little.
FETCH_AHEAD = 2


@dataclass(frozen=True)
class PredictSummary:
    """What a `predict_catalog` call did.

    Attributes
    ----------
    out : Path
        The output file.
    n_rows : int
        Rows in the catalogue (and in the output).
    n_predicted : int
        Rows predicted by this call (the rest were already written).
    n_invalid : int
        Rows of the output flagged invalid (empty predictions).
    """

    out: Path
    n_rows: int
    n_predicted: int
    n_invalid: int


@dataclass(frozen=True)
class _Job:
    catalog: str
    out: str
    fmt: str
    checkpoint: str | None
    predictor: Any
    source: ArraySource
    chunk_rows: int
    tta: bool
    progress: bool
    duplicates: np.ndarray


def _file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _load_predictor(job: _Job) -> Any:
    if job.predictor is not None:
        return job.predictor
    from mantis.models import load_predictor

    return load_predictor(job.checkpoint, device="cpu")


def _pending_runs(job: _Job, rank: int, world: int, done: list[tuple[int, int]]) -> Iterator:
    for k, chunk in enumerate(iter_catalog_chunks(job.catalog, job.chunk_rows)):
        if k % world != rank or chunk.empty:
            continue
        first = int(chunk[ROW_COLUMN].iloc[0])
        for lo, hi in subtract_intervals(first, first + len(chunk), done):
            yield chunk.iloc[lo - first : hi - first].reset_index(drop=True)


def _validated(run: pd.DataFrame, duplicates: np.ndarray) -> tuple:
    """``(run, valid, reasons)``: the rows' own checks plus ids repeated in other chunks."""
    from mantis.catalog import validate_rows

    valid, reasons = validate_rows(run)
    repeated = np.isin(run[ROW_COLUMN].to_numpy(), duplicates)
    for i in np.flatnonzero(repeated):
        if DUPLICATE_REASON not in reasons[i]:
            reasons[i] = f"{reasons[i]}; {DUPLICATE_REASON}" if reasons[i] else DUPLICATE_REASON
    return run, valid & ~repeated, reasons


def _prepared(runs: Iterator, source: ArraySource, duplicates: np.ndarray) -> Iterator[tuple]:
    """``(run, valid, reasons, arrays)`` per run, fetching and building in background threads.

    A source with separate ``fetch`` and ``build`` gets one thread each, so the download of
    later runs goes on while earlier ones are built and predicted.
    """
    split = callable(getattr(source, "fetch", None)) and callable(getattr(source, "build", None))

    def fetch(item: tuple) -> tuple:
        run, valid, _ = item
        if split and valid.any():
            source.fetch(run[valid].reset_index(drop=True))
        return item

    def build(item: tuple) -> tuple:
        run, valid, reasons = item
        if not valid.any():
            return run, valid, reasons, None
        rows = run[valid].reset_index(drop=True)
        return run, valid, reasons, source.build(rows) if split else source.arrays(rows)

    validated = (_validated(run, duplicates) for run in runs)
    return staged(validated, [(fetch, FETCH_AHEAD), (build, 1)])


def _calibrator(predictor: Any):
    if not getattr(predictor, "calibration", None):
        return None
    from mantis.evaluate._calibration import Calibration

    calibration = Calibration.from_dict(predictor.calibration)
    if calibration.zgrid != predictor.zgrid:
        raise PredictionError(
            f"the checkpoint's recalibration was fitted on grid {calibration.zgrid} but the "
            f"network predicts on {predictor.zgrid}; refit it with mantis evaluate"
        )
    return calibration


def _part_table(run, valid, reasons, probs, flags, calibrated: bool, zgrid):
    import pyarrow as pa

    n, n_valid = len(run), int(valid.sum())
    table = run.copy()
    table["valid"] = valid
    table["flag"] = np.asarray(reasons, dtype=object)
    summary = summarise_densities(probs, zgrid) if n_valid else {}
    for name in SUMMARY_COLUMNS:
        column = np.full(n, np.nan)
        if n_valid:
            column[valid] = summary[name]
        table[name] = column
    for name, flag in flags.items():
        column = np.zeros(n, dtype=bool) if flag.dtype == bool else np.full(n, np.nan)
        column[valid] = flag
        table[name] = column
    table["calibrated"] = valid & calibrated
    arrow = pa.Table.from_pandas(table, preserve_index=False)
    lengths = np.where(valid, zgrid.n_bins, 0)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    values = pa.array(probs.astype(np.float32).ravel() if n_valid else [], pa.float32())
    density = pa.ListArray.from_arrays(pa.array(offsets), values)
    return arrow.append_column("density", density).replace_schema_metadata(None)


def _predict_shard(job: _Job, rank: int, world: int) -> None:
    predictor = _load_predictor(job)
    calibration = _calibrator(predictor)
    from mantis.explain import ShiftScorer

    shift = ShiftScorer.for_checkpoint(job.checkpoint, predictor)
    store = PartStore(job.out)
    done = store.done()
    todo = _rows_to_do(count_rows(job.catalog), job.chunk_rows, rank, world, done)
    from tqdm.auto import tqdm

    bar = tqdm(total=todo, unit="obj", desc="predict", disable=not job.progress or rank != 0)
    with bar:
        runs = _pending_runs(job, rank, world, done)
        for run, valid, reasons, arrays in _prepared(runs, job.source, job.duplicates):
            n_valid = int(valid.sum())
            probs, flags = np.zeros((0, predictor.zgrid.n_bins)), coverage_flags({}, 0)
            if n_valid:
                check_compatible(predictor, arrays)
                raw = predictor.predict_arrays(arrays, tta=job.tta)
                probs = check_densities(raw, predictor, n_valid)
                if calibration is not None:
                    probs = calibration.apply(probs)
                flags = coverage_flags(arrays, n_valid)
            flags |= shift.columns(arrays, n_valid)
            table = _part_table(
                run, valid, reasons, probs, flags, calibration is not None, predictor.zgrid
            )
            first = int(run[ROW_COLUMN].iloc[0])
            store.write(table, first, first + len(run))
            bar.update(len(run))


def _rows_to_do(n_rows: int, chunk_rows: int, rank: int, world: int, done: list) -> int:
    total = 0
    for k, lo in enumerate(range(0, n_rows, chunk_rows)):
        if k % world == rank:
            runs = subtract_intervals(lo, min(lo + chunk_rows, n_rows), done)
            total += sum(b - a for a, b in runs)
    return total


def _zgrid_of(job: _Job) -> Any:
    return _load_predictor(job).zgrid


def _finish(job: _Job, n_rows: int) -> int:
    """Merge the parts into the output; return the number of rows flagged invalid."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    store = PartStore(job.out)
    store.check_complete(n_rows)
    parts = [p for _, _, p in store.parts()]
    n_valid = sum(int(pc.sum(pq.read_table(p, columns=["valid"])[0]).as_py() or 0) for p in parts)
    merge_parts(parts, job.out, job.fmt, _zgrid_of(job))
    store.remove()
    return n_rows - n_valid


def _rank_main(rank: int, world: int, job: _Job, port: int, threads: int) -> None:
    import torch
    import torch.distributed as dist

    torch.set_num_threads(threads)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        _predict_shard(job, rank, world)
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _build_config(checkpoint: str | os.PathLike | None, predictor: Any) -> dict[str, Any]:
    """Return the build configuration, with the pixel grids the checkpoint was trained on."""
    from mantis.config import load_config

    if predictor is None:
        from mantis.models import load_predictor

        predictor = load_predictor(checkpoint, device="cpu")
    config = load_config("build")
    if getattr(predictor, "grids", None):
        config["grids"] = {**config.get("grids", {}), **predictor.grids}
    return config


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run_ranks(job: _Job, devices: int) -> None:
    import torch.multiprocessing as mp

    threads = max(1, (os.cpu_count() or 1) // devices)
    mp.spawn(_rank_main, args=(devices, job, _free_port(), threads), nprocs=devices, join=True)


def predict_catalog(
    catalog: str | os.PathLike,
    out: str | os.PathLike,
    *,
    checkpoint: str | os.PathLike | None = None,
    predictor: Any = None,
    source: ArraySource | None = None,
    cache_dir: str | os.PathLike | None = None,
    endpoint: str | None = None,
    fmt: str | None = None,
    batch_size: int = 256,
    devices: int = 1,
    tta: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> PredictSummary:
    """Predict redshift densities for every row of a catalogue, streaming and resumable.

    Parameters
    ----------
    catalog : path-like
        CSV, parquet or FITS catalogue with ``ra``, ``dec`` (degrees) and optionally ``id``.
    out : path-like
        Output file. Parts are kept in ``<out>.parts/`` until the merge; a rerun after an
        interruption predicts only the rows no part holds.
    checkpoint : path-like, optional
        Trained model (``mantis.models.load_predictor``). Either this or ``predictor``.
    predictor : object, optional
        An already loaded predictor (``.zgrid``, ``.bands``, ``.grids``, ``.calibration``,
        ``.predict_arrays``); must be picklable when ``devices > 1``.
    source : ArraySource, optional
        Where image arrays come from; default `CutoutSource` over ``cache_dir``/``endpoint``.
    cache_dir : path-like, optional
        Raw cutout cache for the default source (default ``data/cutouts``).
    endpoint : str, optional
        Base URL that replaces every survey service (e.g. ``mantis sky serve``).
    fmt : {'parquet', 'fits', 'csv', 'qp'}, optional
        Output format; by default from the extension of ``out``.
    batch_size : int
        Rows per chunk: fetched, built, predicted and written together.
    devices : int
        Number of CPU processes (ranks) sharing the catalogue.
    tta : bool
        Average the network over the eight flips and rotations of each cutout.
    overwrite : bool
        Predict again even if ``out`` exists.
    progress : bool
        Show a progress bar.

    Returns
    -------
    PredictSummary

    Raises
    ------
    PredictionError
        On incompatible checkpoint and data, stale parts from another run or bad arguments.
    CatalogError
        If the catalogue is missing, unreadable or lacks ``ra``/``dec``.
    """
    from mantis.predict._sources import CutoutSource

    out = Path(out)
    fmt = fmt or format_from_path(out)
    if fmt not in FORMATS:
        raise PredictionError(f"unknown output format {fmt!r}; allowed: {', '.join(FORMATS)}")
    if (checkpoint is None) == (predictor is None):
        raise PredictionError("give exactly one of checkpoint= or predictor=")
    if checkpoint is not None and not Path(checkpoint).is_file():
        raise PredictionError(f"checkpoint {str(checkpoint)!r} does not exist")
    for name, value in (("batch_size", batch_size), ("devices", devices)):
        if int(value) != value or value < 1:
            raise PredictionError(f"{name} must be an integer >= 1, got {value!r}")
    n_rows = count_rows(catalog)
    next(iter_catalog_chunks(catalog, 1), None)  # column errors before the model loads
    if out.exists() and not overwrite and not PartStore(out).root.exists():
        return PredictSummary(out, n_rows, 0, 0)
    if devices == 1 and predictor is None:
        from mantis.models import load_predictor

        predictor = load_predictor(checkpoint, device="cpu")  # loaded once, reused by the shard
    if source is None:
        source = CutoutSource(str(cache_dir or "data/cutouts"), endpoint,
                              build_config=_build_config(checkpoint, predictor))  # fmt: skip
    checkpoint = None if checkpoint is None else str(checkpoint)
    fingerprint = (
        _file_sha256(checkpoint) if checkpoint is not None
        else str(getattr(predictor, "fingerprint", type(predictor).__qualname__))
    )  # fmt: skip
    store = PartStore(out)
    store.open(
        {"catalog_sha256": catalog_fingerprint(catalog), "checkpoint": fingerprint, "tta": tta}
    )
    duplicates = duplicated_rows(catalog, n_rows, workdir=store.root)
    job = _Job(str(catalog), str(out), fmt, checkpoint, predictor, source, int(batch_size),
               bool(tta), progress, duplicates)  # fmt: skip
    before = sum(hi - lo for lo, hi in PartStore(out).done())
    if devices > 1:
        _run_ranks(job, devices)
    else:
        _predict_shard(job, 0, 1)
    n_predicted = sum(hi - lo for lo, hi in PartStore(out).done()) - before
    n_invalid = _finish(job, n_rows)
    return PredictSummary(out, n_rows, n_predicted, n_invalid)
