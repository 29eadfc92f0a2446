"""Streaming catalogue prediction: chunks → arrays → network → recalibration → parts → file.

Each rank walks the catalogue in chunks, keeps the chunks ``k`` with ``k % world == rank``,
drops the rows that finished parts already cover, and hands the rest to a background thread
that fetches and builds chunk ``k + 1`` while the network runs on chunk ``k``. Every chunk ends
as one part file; when all ranks are done, rank 0 merges the parts into the output.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
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
from mantis.predict._field_pass import with_field_part
from mantis.predict._flags import fetch_summary, judge_rows, request_stats, with_fetch_columns
from mantis.predict._outputs import check_existing_output, output_format
from mantis.predict._parts import PartStore, PredictionError, subtract_intervals
from mantis.predict._ranks import launched_group, launcher_rank
from mantis.predict._sources import (
    ArraySource,
    check_compatible,
    check_densities,
    coverage_flags,
)
from mantis.predict._stages import staged
from mantis.predict._summary import SUMMARY_COLUMNS, summarise_densities
from mantis.predict._writers import merge_parts

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
    n_failed : int
        Invalid rows whose products failed to download; a rerun predicts them again.
    fetch : FetchSummary or None
        Per survey, the fetch statuses of the catalogue's rows (as ``mantis fetch`` reports).
    up_to_date : bool
        ``out`` already held the predictions of these inputs; nothing was done.
    merged : bool
        False on the ranks of a launcher (torchrun, srun) other than 0: they wrote parts, and
        rank 0 merged them into ``out``; ``n_invalid`` is then 0.
    """

    out: Path
    n_rows: int
    n_predicted: int
    n_invalid: int
    n_failed: int = 0
    fetch: Any = None
    up_to_date: bool = False
    merged: bool = True


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
    made_from: dict | None = None
    calibration: dict | None = None  # from --calibration; else the predictor's own


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
    """``(run, valid, reasons, arrays, stats)`` per run, fetching and building in background.

    A source with separate ``fetch`` and ``build`` gets a builder thread and ``source.lanes``
    fetches at once, so the download of later runs goes on while earlier ones are built and
    predicted, and one run's last answers overlap the next run's first requests. A source
    with a ``fetch_session`` (`CutoutSource`) runs them in one session sharing the whole
    per-host cap; otherwise each ``fetch`` call runs in a thread of its own.
    """
    split = callable(getattr(source, "fetch", None)) and callable(getattr(source, "build", None))
    lanes = max(1, int(getattr(source, "lanes", 1))) if split else 1
    opener = getattr(source, "fetch_session", None)
    if split and callable(opener):
        session = opener()
        submit, close = session.submit, session.close
    else:
        fetchers = ThreadPoolExecutor(lanes, thread_name_prefix="mantis-predict-fetch")
        submit = partial(fetchers.submit, getattr(source, "fetch", None))
        close = partial(fetchers.shutdown, wait=True, cancel_futures=True)

    def start_fetch(item: tuple) -> tuple:
        run, valid, _ = item
        pending = None
        if split and valid.any():
            pending = submit(run[valid].reset_index(drop=True))
        return (*item, pending)

    def build(item: tuple) -> tuple:
        run, valid, reasons, pending = item
        stats = None if pending is None else request_stats(pending.result())
        if not valid.any():
            return run, valid, reasons, None, stats
        rows = run[valid].reset_index(drop=True)
        return run, valid, reasons, source.build(rows) if split else source.arrays(rows), stats

    validated = (_validated(run, duplicates) for run in runs)
    try:
        yield from staged(validated, [(start_fetch, FETCH_AHEAD), (build, 1)])
    finally:
        close()


def _calibrator(predictor: Any, given: dict | None = None):
    spec = given or getattr(predictor, "calibration", None)
    if not spec:
        return None
    from mantis.calibration import Calibration

    calibration = Calibration.from_dict(spec)
    if calibration.zgrid != predictor.zgrid:
        raise PredictionError(
            f"the checkpoint's recalibration was fitted on grid {calibration.zgrid} but the "
            f"network predicts on {predictor.zgrid}; refit it with mantis calibrate"
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
    calibration = _calibrator(predictor, job.calibration)
    from mantis.explain import ShiftScorer

    shift = ShiftScorer.for_checkpoint(job.checkpoint, predictor)
    store = PartStore(job.out)
    done = store.done()
    todo = _rows_to_do(count_rows(job.catalog), job.chunk_rows, rank, world, done)
    from tqdm.auto import tqdm

    bar = tqdm(total=todo, unit="obj", desc="predict", disable=not job.progress or rank != 0)
    with bar:
        runs = _pending_runs(job, rank, world, done)
        for run, valid, reasons, arrays, stats in _prepared(runs, job.source, job.duplicates):
            # rows with a failed product or no data at all are flagged, never predicted
            verdict = judge_rows(valid, reasons, arrays)
            valid, reasons, arrays = verdict.valid, verdict.reasons, verdict.arrays
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
            table = with_fetch_columns(table, verdict.statuses, stats)
            first = int(run[ROW_COLUMN].iloc[0])
            store.write(table, first, first + len(run), retry=verdict.retry)
            bar.update(len(run))


def _rows_to_do(n_rows: int, chunk_rows: int, rank: int, world: int, done: list) -> int:
    total = 0
    for k, lo in enumerate(range(0, n_rows, chunk_rows)):
        if k % world == rank:
            runs = subtract_intervals(lo, min(lo + chunk_rows, n_rows), done)
            total += sum(b - a for a, b in runs)
    return total


def _finish(job: _Job, n_rows: int, earlier: set[str], started: float) -> tuple:
    """Merge the parts into the output; return ``(n_invalid, n_failed, fetch summary)``.

    The parts are kept while rows failed, so that the next run predicts exactly those.
    """
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    store = PartStore(job.out)
    store.check_complete(n_rows)
    parts = [p for _, _, p in store.parts()]
    from mantis.explain import ShiftScorer

    predictor = _load_predictor(job)
    parts = with_field_part(parts, ShiftScorer.for_checkpoint(job.checkpoint, predictor))
    n_valid = sum(int(pc.sum(pq.read_table(p, columns=["valid"])[0]).as_py() or 0) for p in parts)
    merge_parts(parts, job.out, job.fmt, predictor.zgrid, job.made_from)
    fetched = fetch_summary(parts, earlier, n_rows, time.perf_counter() - started)
    n_failed = store.n_failed()
    if not n_failed:
        store.remove()
    return n_rows - n_valid, n_failed, fetched


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
    from mantis.config import load_settings

    if predictor is None:
        from mantis.models import load_predictor

        predictor = load_predictor(checkpoint, device="cpu")
    config = load_settings("build")
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
    calibration: str | os.PathLike | None = None,
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
        Raw cutout cache for the default source (default ``<cache root>/cutouts``, see
        `mantis.config.cache_root`).
    endpoint : str, optional
        Base URL that replaces every survey service (e.g. ``mantis sky serve``).
    fmt : {'parquet', 'fits', 'csv', 'qp', 'votable'}, optional
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
    calibration : path-like, optional
        A `mantis calibrate` file for ``checkpoint``; by default the one beside the
        checkpoint, if any (or the predictor's own ``.calibration``).

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
    fmt = output_format(out, fmt)
    if (checkpoint is None) == (predictor is None):
        raise PredictionError("give exactly one of checkpoint= or predictor=")
    if checkpoint is not None and not Path(checkpoint).is_file():
        raise PredictionError(f"checkpoint {str(checkpoint)!r} does not exist")
    for name, value in (("batch_size", batch_size), ("devices", devices)):
        if int(value) != value or value < 1:
            raise PredictionError(f"{name} must be an integer >= 1, got {value!r}")
    launched = launcher_rank()  # torchrun / srun: this process is one rank of several
    if launched is not None and devices > 1:
        raise PredictionError(
            f"devices={devices} under {launched.launcher} (world {launched.world}): the "
            "launcher already starts one process per rank; leave devices at 1"
        )
    given = None
    if calibration is not None:
        from mantis.calibration import read_calibration

        if checkpoint is None:
            raise PredictionError("calibration= needs checkpoint= (it is checked against it)")
        given = read_calibration(calibration, checkpoint=checkpoint).to_dict()
    n_rows = count_rows(catalog)
    next(iter_catalog_chunks(catalog, 1), None)  # column errors before the model loads
    fingerprint = (
        _file_sha256(checkpoint) if checkpoint is not None
        else str(getattr(predictor, "fingerprint", type(predictor).__qualname__))
    )  # fmt: skip
    made_from = {"catalog_sha256": catalog_fingerprint(catalog), "checkpoint": fingerprint,
                 "tta": tta}  # fmt: skip
    if given is not None:  # parts from another calibration must not be merged with these
        made_from["calibration"] = hashlib.sha256(repr(given).encode()).hexdigest()
    if out.exists() and not overwrite and not PartStore(out).root.exists():
        check_existing_output(out, fmt, made_from)
        return PredictSummary(out, n_rows, 0, 0, up_to_date=True)
    if devices == 1 and predictor is None:
        from mantis.models import load_predictor

        predictor = load_predictor(checkpoint, device="cpu")  # loaded once, reused by the shard
    if source is None:
        from mantis.config import cache_root

        source = CutoutSource(str(cache_dir or cache_root() / "cutouts"), endpoint,
                              build_config=_build_config(checkpoint, predictor))  # fmt: skip
    checkpoint = None if checkpoint is None else str(checkpoint)
    store = PartStore(out)
    resuming = store.root.exists()
    store.open(made_from)
    try:
        duplicates = duplicated_rows(catalog, n_rows, workdir=store.root)
        job = _Job(str(catalog), str(out), fmt, checkpoint, predictor, source, int(batch_size),
                   bool(tta), progress, duplicates, made_from, given)  # fmt: skip
        started = time.perf_counter()
        earlier = {path.name for _, _, path in PartStore(out).parts("part")}
        done_before = PartStore(out).done()
        before = sum(hi - lo for lo, hi in done_before)
        if launched is not None:
            with launched_group(launched):
                _predict_shard(job, launched.rank, launched.world)
            if launched.rank != 0:  # rank 0 merges once every rank has passed the barrier
                mine = _rows_to_do(
                    n_rows, job.chunk_rows, launched.rank, launched.world, done_before
                )
                return PredictSummary(out, n_rows, mine, 0, merged=False)
        elif devices > 1:
            _run_ranks(job, devices)
        else:
            _predict_shard(job, 0, 1)
        n_invalid, n_failed, fetched = _finish(job, n_rows, earlier, started)
    except BaseException:
        if not resuming and not store.parts():
            store.remove()  # nothing was predicted: leave no empty store behind
        raise
    return PredictSummary(out, n_rows, n_rows - before, n_invalid, n_failed, fetched)
