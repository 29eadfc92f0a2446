"""The part store: one parquet file per finished run of catalogue rows, merged at the end.

``<out>.parts/`` holds ``manifest.json`` (what the parts were made from) and
``part-<start>-<stop>.parquet`` files, each covering catalogue rows ``[start, stop)`` and written
to a temporary name then renamed. A killed run therefore leaves only complete parts; the rerun
predicts exactly the rows no part covers, so nothing is lost and nothing is written twice.
Memory stays flat: what is done is a list of row intervals, not a set of ids.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from mantis.exceptions import MantisError

__all__ = ["PartStore", "PredictionError", "subtract_intervals"]

_PART = re.compile(r"^(part|failed)-(\d{12})-(\d{12})\.parquet$")


class PredictionError(MantisError):
    """Prediction cannot go on: incompatible checkpoint, stale parts, unusable input."""


def subtract_intervals(start: int, stop: int, done: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Return the runs of ``[start, stop)`` not covered by the sorted, disjoint ``done``."""
    runs, cursor = [], start
    for lo, hi in done:
        if hi <= cursor or lo >= stop:
            continue
        if lo > cursor:
            runs.append((cursor, lo))
        cursor = max(cursor, hi)
    if cursor < stop:
        runs.append((cursor, stop))
    return runs


class PartStore:
    """Part files for the output ``out``.

    Parameters
    ----------
    out : path-like
        The final output file; parts live in ``<out>.parts/`` beside it.
    """

    def __init__(self, out: str | os.PathLike) -> None:
        self.out = Path(out)
        self.root = self.out.with_name(self.out.name + ".parts")

    @property
    def manifest_path(self) -> Path:
        """Where the description of the run that made the parts is kept."""
        return self.root / "manifest.json"

    def open(self, manifest: dict[str, Any]) -> None:
        """Create the store, or check that existing parts were made by the same run.

        Raises
        ------
        PredictionError
            If parts exist from another catalogue, checkpoint or setting.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        wanted = json.loads(json.dumps(manifest, sort_keys=True))
        if self.manifest_path.is_file():
            found = json.loads(self.manifest_path.read_text())
            differ = sorted(k for k in set(found) | set(wanted) if found.get(k) != wanted.get(k))
            if differ:
                raise PredictionError(
                    f"{self.root} holds unfinished predictions made with a different "
                    f"{', '.join(differ)}; rerun with the same inputs to resume, or delete "
                    f"{self.root} to start over"
                )
            return
        tmp = self.manifest_path.with_name(f".manifest.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(wanted, sort_keys=True, indent=1))
        tmp.replace(self.manifest_path)

    def parts(self, kind: str | None = None) -> list[tuple[int, int, Path]]:
        """Parts as ``(start, stop, path)``, sorted by ``start``.

        Parameters
        ----------
        kind : {'part', 'failed'}, optional
            Only finished rows, or only rows whose products failed; default both.
        """
        if not self.root.is_dir():
            return []
        found = []
        for path in self.root.iterdir():
            if (match := _PART.match(path.name)) and kind in (None, match[1]):
                found.append((int(match[2]), int(match[3]), path))
        return sorted(found)

    def done(self) -> list[tuple[int, int]]:
        """Row intervals finished for good, sorted and disjoint (failed rows are not done)."""
        return [(lo, hi) for lo, hi, _ in self.parts("part")]

    def n_failed(self) -> int:
        """Rows written as failed (to be predicted again by the next run)."""
        return sum(hi - lo for lo, hi, _ in self.parts("failed"))

    def part_path(self, start: int, stop: int, kind: str = "part") -> Path:
        """File name of the part covering rows ``[start, stop)``."""
        return self.root / f"{kind}-{start:012d}-{stop:012d}.parquet"

    def _write_one(self, table: Any, start: int, stop: int, kind: str) -> Path:
        import pyarrow.parquet as pq

        final = self.part_path(start, stop, kind)
        tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
        pq.write_table(table, tmp)
        tmp.replace(final)
        return final

    def write(self, table: Any, start: int, stop: int, retry: Any = None) -> list[Path]:
        """Write the rows of one run atomically (temporary name, then rename).

        Failed parts of earlier runs overlapping ``[start, stop)`` are removed first (their
        rows are all being predicted again by this run): a crash in between leaves a gap,
        which the next run fills, never two parts for one row.

        Parameters
        ----------
        table : pyarrow.Table
            Rows ``[start, stop)`` of the catalogue with their predictions.
        retry : array of bool, optional
            Rows whose products failed: written to ``failed-*`` parts that the next run
            predicts again; the other rows go to ``part-*`` parts.
        """
        import numpy as np

        for lo, hi, path in self.parts("failed"):
            if lo < stop and hi > start:
                path.unlink(missing_ok=True)
        retry = np.zeros(stop - start, bool) if retry is None else np.asarray(retry, bool)
        edges = [0, *(np.flatnonzero(np.diff(retry.astype(np.int8))) + 1).tolist(), len(retry)]
        written = []
        for lo, hi in itertools.pairwise(edges):
            kind = "failed" if retry[lo] else "part"
            piece = table.slice(lo, hi - lo)
            if lo:  # request counts of the run travel with its first piece only
                piece = piece.replace_schema_metadata(None)
            written.append(self._write_one(piece, start + lo, start + hi, kind))
        return written

    def check_complete(self, n_rows: int) -> None:
        """Raise unless the parts cover rows ``[0, n_rows)`` exactly once."""
        gaps = subtract_intervals(0, n_rows, [(lo, hi) for lo, hi, _ in self.parts()])
        if gaps:
            shown = ", ".join(f"[{lo}, {hi})" for lo, hi in gaps[:5])
            raise PredictionError(
                f"rows {shown} of the catalogue have no predictions in {self.root}"
            )

    def remove(self) -> None:
        """Delete the store once its parts are merged."""
        shutil.rmtree(self.root, ignore_errors=True)
