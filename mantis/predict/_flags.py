"""Which rows may be predicted: failed products and rows without any data are flagged.

A product that failed to download (as opposed to one the survey does not cover) must never
reach the network as blank pixels: a density computed from nothing looks like any other. The
source reports, per row and survey, what the fetch manifest says (`STATUS_PREFIX` arrays);
`judge_rows` turns rows with a failed product into ``valid=False`` rows to be retried on the
next run, and rows with no data in any survey into permanently invalid ones. Every part keeps
the per-survey status in hidden columns (`FETCH_COLUMNS`), from which `fetch_summary` rebuilds
the same per-survey table ``mantis fetch`` prints.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mantis.surveys import SURVEY_NAMES

__all__ = [
    "FETCH_COLUMNS",
    "FETCH_METADATA_KEY",
    "STATUS_PREFIX",
    "RowVerdict",
    "fetch_summary",
    "judge_rows",
    "request_stats",
    "with_fetch_columns",
]

STATUS_PREFIX = "fetch/"
"""Arrays ``fetch/<survey>`` (one status string per row) a source may add to its output."""
FETCH_COLUMNS: tuple[str, ...] = tuple(f"_fetch_{name}" for name in SURVEY_NAMES)
FETCH_METADATA_KEY = b"mantis.fetch"
RETRY_HINT = "rerun to retry"


@dataclass(frozen=True)
class RowVerdict:
    """What to do with each row of a run.

    Attributes
    ----------
    valid : ndarray of bool
        Rows to predict.
    reasons : list of str
        Flag of every row (``''`` when valid).
    retry : ndarray of bool
        Rows with a failed product: flagged now, predicted again by the next run.
    statuses : dict of str to ndarray
        Per survey, the fetch status of every row (``''`` where unknown or not asked).
    arrays : dict or None
        The source's arrays restricted to the rows to predict (None when there are none).
    """

    valid: np.ndarray
    reasons: list[str]
    retry: np.ndarray
    statuses: dict[str, np.ndarray]
    arrays: dict[str, np.ndarray] | None


def _has_data(arrays: dict[str, np.ndarray], n: int) -> np.ndarray:
    """Rows with pixels from at least one survey (builder flags, else pixel masks)."""
    from mantis.predict._sources import coverage_flags

    flags = coverage_flags(arrays, n)
    return np.logical_or.reduce([np.asarray(f, bool) for f in flags.values()])


def _join(reason: str, extra: str) -> str:
    return f"{reason}; {extra}" if reason else extra


def judge_rows(
    valid: np.ndarray, reasons: list[str], arrays: dict[str, np.ndarray] | None
) -> RowVerdict:
    """Flag the rows whose products failed or that have no data in any survey.

    Parameters
    ----------
    valid : ndarray of bool, shape (n_run,)
        Rows that passed the catalogue checks (the ones the source built).
    reasons : list of str
        Flags so far, one per row of the run.
    arrays : dict or None
        The source's arrays for the valid rows, with optional ``fetch/<survey>`` statuses.

    Returns
    -------
    RowVerdict
    """
    n_run = len(valid)
    reasons = list(reasons)
    statuses = {name: np.full(n_run, "", dtype=object) for name in SURVEY_NAMES}
    retry = np.zeros(n_run, dtype=bool)
    if arrays is None or not valid.any():
        return RowVerdict(valid.copy(), reasons, retry, statuses, None)
    arrays = dict(arrays)
    rows = np.flatnonzero(valid)
    for name in SURVEY_NAMES:
        found = arrays.pop(f"{STATUS_PREFIX}{name}", None)
        if found is not None:
            statuses[name][rows] = np.asarray(found, dtype=object)
    has_data = _has_data(arrays, len(rows))
    failed = {name: np.array([str(v).startswith("failed") or v == "not_fetched"
                              for v in statuses[name][rows]], dtype=bool)
              for name in SURVEY_NAMES}  # fmt: skip
    any_failed = np.logical_or.reduce(list(failed.values()))
    keep = ~any_failed & has_data
    for k in np.flatnonzero(~keep):  # only flagged rows get a text
        row = rows[k]
        row_status = {name: str(statuses[name][row]) for name in SURVEY_NAMES}
        if any_failed[k]:
            named = [f"{name} ({status.partition(': ')[2] or status})"
                     for name, status in row_status.items() if failed[name][k]]  # fmt: skip
            reasons[row] = _join(reasons[row], f"fetch failed: {', '.join(named)}; {RETRY_HINT}")
            retry[row] = True
        else:
            why = ", ".join(f"{n}: {s}" for n, s in row_status.items() if s) or "no pixels"
            reasons[row] = _join(reasons[row], f"no data in any survey ({why})")
    new_valid = valid.copy()
    new_valid[rows[~keep]] = False
    kept = {key: value[keep] for key, value in arrays.items()} if keep.any() else None
    return RowVerdict(new_valid, reasons, retry, statuses, kept)


def request_stats(fetched: Any) -> dict | None:
    """Return the requests per host and bytes of one chunk's fetch (None if not known)."""
    if fetched is None or not hasattr(fetched, "requests"):
        return None
    return {"requests": dict(fetched.requests), "bytes": int(fetched.bytes_received)}


def with_fetch_columns(table: Any, statuses: dict[str, np.ndarray], stats: dict | None) -> Any:
    """Append the hidden status columns (and this run's request counts as metadata)."""
    import pyarrow as pa

    for name, column in zip(SURVEY_NAMES, FETCH_COLUMNS, strict=True):
        table = table.append_column(column, pa.array(statuses[name].tolist(), pa.string()))
    if stats:
        table = table.replace_schema_metadata({FETCH_METADATA_KEY: json.dumps(stats)})
    return table


def fetch_summary(parts: list[Path], earlier: set[str], n_objects: int, elapsed_s: float) -> Any:
    """Rebuild the ``mantis fetch`` summary of a prediction from the hidden part columns.

    Parameters
    ----------
    parts : list of Path
        Every part file of the output.
    earlier : set of str
        Names of the parts finished by earlier runs (their products count as skipped).
    n_objects : int
        Rows of the catalogue.
    elapsed_s : float
        Seconds this run took.

    Returns
    -------
    mantis.fetch.FetchSummary
        Per survey: status counts (``failed`` includes products never fetched), failure
        reasons, rows finished earlier, and this run's requests and bytes.
    """
    import pyarrow.parquet as pq

    from mantis.fetch import FetchSummary

    summary = FetchSummary(n_objects, elapsed_s=elapsed_s)
    for name in SURVEY_NAMES:
        summary.statuses[name], summary.skipped[name] = Counter(), 0
    reasons: dict[str, Counter] = {name: Counter() for name in SURVEY_NAMES}
    for path in parts:
        names = set(pq.read_schema(path).names)
        columns = [c for c in FETCH_COLUMNS if c in names]
        table = pq.read_table(path, columns=columns)
        for name, column in zip(SURVEY_NAMES, FETCH_COLUMNS, strict=True):
            if column not in names:
                continue
            for status, count in Counter(table.column(column).to_pylist()).items():
                if not status:
                    continue
                kind, _, why = str(status).partition(": ")
                kind = "failed" if kind == "not_fetched" else kind
                summary.statuses[name][kind] += count
                if kind == "failed":
                    reasons[name][why or "not fetched"] += count
                if path.name in earlier:
                    summary.skipped[name] += count
        meta = (pq.read_schema(path).metadata or {}).get(FETCH_METADATA_KEY)
        if meta and path.name not in earlier:
            stats = json.loads(meta)
            summary.requests.update(stats.get("requests", {}))
            summary.bytes_received += int(stats.get("bytes", 0))
    summary.failure_reasons = {name: c for name, c in reasons.items() if c}
    return summary
