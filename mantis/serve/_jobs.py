"""Asynchronous prediction jobs kept on disk, with IVOA UWS phase names.

Each job is a folder ``<root>/<32 hex digits>/`` holding

* ``job.json``: phase (PENDING, EXECUTING, COMPLETED, ERROR), row count, times, error summary,
  rewritten atomically at every change;
* ``upload.<ext>``: the catalogue as uploaded (the user's file name is never used as a path);
* ``input.parquet`` and ``ids.parquet``: the rows under position names, and the user's ids;
* ``predictions.parquet`` (+ ``.parts/`` while running), then ``result.parquet`` with the
  user's ids, and ``result.<ext>`` for every other format asked for.

A server that stops while jobs run finds them PENDING or EXECUTING at the next start and runs
them again; `mantis.predict.predict_catalog` resumes from the parts already written.
"""

from __future__ import annotations

import json
import logging
import queue
import re
import shutil
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pandas as pd

from mantis.serve._cone import ConeIndex
from mantis.serve._engine import PredictionEngine, position_ids

__all__ = ["RESULT_FORMATS", "JobStore"]

log = logging.getLogger("mantis.serve")

PHASES = ("PENDING", "EXECUTING", "COMPLETED", "ERROR")
# download name -> (mantis.predict format, file suffix, media type)
RESULT_FORMATS: dict[str, tuple[str, str, str]] = {
    "votable": ("votable", ".vot", "application/x-votable+xml"),
    "parquet": ("parquet", ".parquet", "application/vnd.apache.parquet"),
    "fits": ("fits", ".fits", "application/fits"),
    "qp": ("qp", ".hdf5", "application/x-hdf5"),
    "csv": ("csv", ".csv", "text/csv"),
}
_JOB_ID = re.compile(r"^[0-9a-f]{32}$")


class JobStore:
    """The job folders and the thread that runs them one after another.

    Parameters
    ----------
    root : Path
        Folder holding one sub-folder per job.
    engine : PredictionEngine
        Where predictions come from.
    cone : ConeIndex
        Finished jobs add their objects here.
    """

    def __init__(self, root: Path, engine: PredictionEngine, cone: ConeIndex) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.engine = engine
        self.cone = cone
        self._lock = threading.Lock()
        self._convert_locks: dict[str, threading.Lock] = {}
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="mantis-jobs", daemon=True)

    def start(self) -> list[str]:
        """Start the worker; queue again the jobs a previous server left unfinished."""
        unfinished = [j for j in self.list() if j["phase"] in ("PENDING", "EXECUTING")]
        for job in sorted(unfinished, key=lambda j: j["creationTime"]):
            self._queue.put(job["jobId"])
        self._thread.start()
        return [j["jobId"] for j in unfinished]

    def close(self) -> None:
        """Stop the worker after the job it runs (an unfinished job resumes at the next start)."""
        self._queue.put(None)
        self._thread.join(timeout=5)

    # ------------------------------------------------------------------ folders and state
    def folder(self, job_id: str) -> Path | None:
        """Return the folder of ``job_id``; None when no such job exists or the id is malformed."""
        if not _JOB_ID.match(job_id):
            return None
        folder = self.root / job_id
        return folder if (folder / "job.json").is_file() else None

    def new_folder(self) -> tuple[str, Path]:
        """Create an empty folder for a job being uploaded."""
        job_id = uuid.uuid4().hex
        folder = self.root / job_id
        folder.mkdir()
        return job_id, folder

    def discard(self, folder: Path) -> None:
        """Remove a folder whose upload was refused."""
        shutil.rmtree(folder, ignore_errors=True)

    def state(self, job_id: str) -> dict[str, Any]:
        """Return the job's description (UWS names) with its progress."""
        folder = self.root / job_id
        state = json.loads((folder / "job.json").read_text())
        total = state["nRows"]
        if state["phase"] == "COMPLETED":
            done = total
        elif state["phase"] == "EXECUTING":
            done = min(total, self.engine.rows_done(folder / "predictions.parquet"))
        else:
            done = 0
        state["progress"] = {"rowsDone": done, "rowsTotal": total,
                             "fraction": done / total if total else 1.0}  # fmt: skip
        return state

    def list(self) -> list[dict[str, Any]]:
        """Every job's state."""
        jobs = []
        for folder in self.root.iterdir():
            if _JOB_ID.match(folder.name) and (folder / "job.json").is_file():
                jobs.append(json.loads((folder / "job.json").read_text()))
        return jobs

    def _update(self, job_id: str, **changes: Any) -> None:
        path = self.root / job_id / "job.json"
        with self._lock:
            state = json.loads(path.read_text()) if path.exists() else {}
            state.update(changes)
            tmp = path.with_name("job.json.tmp")
            tmp.write_text(json.dumps(state, indent=1))
            tmp.replace(path)

    # ------------------------------------------------------------------ submitting
    def submit(self, job_id: str, folder: Path, catalog: pd.DataFrame, name: str) -> None:
        """Store a checked catalogue (columns ``id``, ``ra``, ``dec``, ...) and queue the job."""
        internal = catalog.drop(columns=["id"])
        internal.insert(0, "id", position_ids(catalog["ra"], catalog["dec"]))
        internal.to_parquet(folder / "input.parquet", index=False)
        catalog[["id"]].to_parquet(folder / "ids.parquet", index=False)
        self._update(job_id, jobId=job_id, phase="PENDING", nRows=len(catalog),
                     uploadName=name, creationTime=time.time(), startTime=None,
                     endTime=None, errorSummary=None)  # fmt: skip
        self._queue.put(job_id)

    # ------------------------------------------------------------------ running
    def _loop(self) -> None:
        while True:
            job_id = self._queue.get()
            if job_id is None:
                return
            try:
                self._run(job_id)
            except Exception as err:  # the job fails, the server goes on
                log.exception("job %s failed", job_id)
                self._update(job_id, phase="ERROR", endTime=time.time(),
                             errorSummary={"type": "fatal", "message": str(err)})  # fmt: skip

    def _run(self, job_id: str) -> None:
        folder = self.root / job_id
        result = folder / "result.parquet"
        if not result.exists():
            self._update(job_id, phase="EXECUTING", startTime=time.time())
            predictions = folder / "predictions.parquet"
            self.engine.predict_file(folder / "input.parquet", predictions)
            _with_user_ids(predictions, folder / "ids.parquet", result)
            predictions.unlink()
        table = pd.read_parquet(result, columns=["id", "ra", "dec", "valid", *_summary()])
        self.cone.add(table, origin=f"job:{job_id}")
        self._update(job_id, phase="COMPLETED", endTime=time.time())

    # ------------------------------------------------------------------ results
    def result(self, job_id: str, fmt: str) -> Path:
        """Return the result file in ``fmt`` (`RESULT_FORMATS`), converted on first request."""
        folder = self.root / job_id
        if fmt == "parquet":
            return folder / "result.parquet"
        predict_fmt, suffix, _ = RESULT_FORMATS[fmt]
        path = folder / f"result{suffix}"
        with self._lock:
            lock = self._convert_locks.setdefault(job_id, threading.Lock())
        with lock:
            if not path.exists():
                from mantis.predict import convert_predictions

                convert_predictions(folder / "result.parquet", path, predict_fmt)
        return path


def _summary() -> tuple[str, ...]:
    from mantis.predict import SUMMARY_COLUMNS

    return SUMMARY_COLUMNS


def _with_user_ids(predictions: Path, ids: Path, out: Path) -> None:
    """Copy ``predictions`` to ``out`` with the user's ids in place of the position names."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(predictions)
    user_ids = pq.read_table(ids).column("id").cast(pa.string())
    table = table.set_column(table.schema.get_field_index("id"), "id", user_ids)
    tmp = out.with_name(out.name + ".tmp")
    pq.write_table(table, tmp)
    tmp.replace(out)
