"""The raw cutout cache and its SQLite manifest.

Layout (docs/interfaces.md, "Raw cutout cache")::

    <root>/manifest.sqlite
    <root>/ps1/<shard>/<id>.<band>.fits
    <root>/unwise/<shard>/<id>.tar.gz
    <root>/galex/<shard>/<id>.fits

Crash safety: every file is written under a temporary name in its final directory and renamed
when complete, and the manifest row saying ``done`` is committed only after every file of the
product is in place. A process killed at any moment therefore leaves either no file, a
complete file without a ``done`` row (fetched again on the next run), or a complete product
with its row; never a partial file under a final name. Temporary files of dead writers are
removed when a cache is opened. The manifest runs in WAL mode so readers (build, predict) can
look at it while a fetch writes.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import quote

__all__ = [
    "MAX_STEM_BYTES",
    "PRODUCT_SUFFIXES",
    "STATUSES",
    "CutoutCache",
    "object_id_problem",
    "object_shard",
]

STATUSES = ("done", "no_coverage", "failed")
# file suffixes per survey, in the order a product's files are listed
PRODUCT_SUFFIXES: dict[str, tuple[str, ...]] = {
    "ps1": (".g.fits", ".r.fits", ".i.fits", ".z.fits", ".y.fits"),
    "unwise": (".tar.gz",),
    "galex": (".fits",),
}
_TEMP_MARK = ".part-"
# ids per IN (...) lookup: well below SQLite's limit on bound parameters
_IDS_PER_QUERY = 500
_SCHEMA = """
CREATE TABLE IF NOT EXISTS products (
    object_id TEXT NOT NULL,
    survey TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INT NOT NULL DEFAULT 0,
    last_error TEXT,
    bytes INT,
    sha256 TEXT,
    updated REAL,
    PRIMARY KEY (object_id, survey)
)
"""


def object_shard(object_id: str) -> str:
    """First two hex digits of sha1(id): spreads objects over 256 folders."""
    return hashlib.sha1(object_id.encode("utf-8")).hexdigest()[:2]


# a file name holds at most 255 bytes; the rest is left for the suffix and the temporary tag
MAX_STEM_BYTES = 200


def object_id_problem(object_id: str) -> str | None:
    """Why ``object_id`` cannot name cache files, or None when it can."""
    size = len(_file_stem(object_id).encode())
    if size > MAX_STEM_BYTES:
        return (
            f"id of {len(object_id)} characters is too long for a cache file name "
            f"({size} bytes once escaped; at most {MAX_STEM_BYTES})"
        )
    return None


def _file_stem(object_id: str) -> str:
    # ids are user strings; keep them readable but never let one escape its folder
    return quote(object_id, safe="+-_=@,:[]()~") if object_id not in ("", ".", "..") else "_"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class CutoutCache:
    """A folder of raw survey products with a manifest of what is done.

    Parameters
    ----------
    root : str or path-like
        Cache folder; created if missing.
    fsync : bool
        Flush each file to disk before renaming it (survives power loss, not only crashes).
    """

    def __init__(self, root: str | os.PathLike, *, fsync: bool = False) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.fsync = fsync
        self._db = sqlite3.connect(self.root / "manifest.sqlite", timeout=60, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)

    # -- reading -----------------------------------------------------------------------------
    def path_for(self, object_id: str, survey: str, suffix: str) -> Path:
        """Return the final path of one file of a product."""
        return self.root / survey / object_shard(object_id) / f"{_file_stem(object_id)}{suffix}"

    def status(self, object_id: str, survey: str) -> str | None:
        """``'done'``, ``'no_coverage'``, ``'failed'``, or None if never tried."""
        row = self._db.execute(
            "SELECT status FROM products WHERE object_id=? AND survey=?", (object_id, survey)
        ).fetchone()
        return row[0] if row else None

    def statuses(self, survey: str, ids: Iterable[str] | None = None) -> dict[str, str]:
        """Status of every object tried for one survey (or of ``ids`` only, those tried)."""
        if ids is None:
            query = "SELECT object_id, status FROM products WHERE survey=?"
            return dict(self._db.execute(query, (survey,)).fetchall())
        return {r["object_id"]: r["status"] for r in self.records(survey, ids)}

    def records(self, survey: str, ids: Iterable[str]) -> list[dict]:
        """Return the manifest rows of ``ids`` for one survey (those tried), by index lookups.

        A chunk of a large catalogue asks for its own rows without reading the whole manifest.
        """
        ids = list(dict.fromkeys(str(i) for i in ids))
        found = []
        for lo in range(0, len(ids), _IDS_PER_QUERY):
            part = ids[lo : lo + _IDS_PER_QUERY]
            cursor = self._db.execute(
                f"SELECT * FROM products WHERE survey=? AND object_id IN "
                f"({','.join('?' * len(part))})",
                (survey, *part),
            )
            names = [d[0] for d in cursor.description]
            found += [dict(zip(names, row, strict=True)) for row in cursor]
        return found

    def record(self, object_id: str, survey: str) -> dict | None:
        """Return the whole manifest row of one product, or None."""
        cursor = self._db.execute(
            "SELECT * FROM products WHERE object_id=? AND survey=?", (object_id, survey)
        )
        row = cursor.fetchone()
        return dict(zip([d[0] for d in cursor.description], row, strict=True)) if row else None

    def product_paths(self, object_id: str, survey: str) -> list[Path]:
        """Files of a finished product in band order (empty unless ``done``).

        A PS1 product lists only the bands that have data: a band whose cutout is all NaN
        after every retry is left out (the manifest's ``last_error`` names it).
        """
        if self.status(object_id, survey) != "done":
            return []
        paths = [self.path_for(object_id, survey, s) for s in PRODUCT_SUFFIXES[survey]]
        return [p for p in paths if p.is_file()]

    # -- writing -----------------------------------------------------------------------------
    def _write_file(self, path: Path, content: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f"{path.name}{_TEMP_MARK}{os.getpid()}")
        with temp.open("wb") as handle:
            handle.write(content)
            if self.fsync:
                handle.flush()
                os.fsync(handle.fileno())
        temp.replace(path)

    def begin(self, object_id: str, survey: str) -> None:
        """Count one more attempt at a product (before its requests are sent)."""
        self._db.execute(
            "INSERT INTO products (object_id, survey, status, attempts, last_error, updated) "
            "VALUES (?, ?, 'failed', 1, 'interrupted', ?) "
            "ON CONFLICT(object_id, survey) DO UPDATE SET "
            "attempts = attempts + 1, updated = excluded.updated",
            (object_id, survey, time.time()),
        )

    def store(
        self,
        object_id: str,
        survey: str,
        files: dict[str, bytes],
        *,
        note: str | None = None,
    ) -> None:
        """Write a product's files atomically, then mark it ``done``.

        Parameters
        ----------
        files : dict of str to bytes
            Suffix (one of `PRODUCT_SUFFIXES` for the survey) to file content.
        note : str, optional
            Kept in ``last_error`` of a done product (e.g. PS1 bands without data).
        """
        allowed = PRODUCT_SUFFIXES[survey]
        digest, total = hashlib.sha256(), 0
        for suffix in allowed:
            if suffix in files:
                self._write_file(self.path_for(object_id, survey, suffix), files[suffix])
                digest.update(files[suffix])
                total += len(files[suffix])
        unknown = set(files) - set(allowed)
        if unknown:
            raise ValueError(f"unknown {survey} file suffix(es) {sorted(unknown)}")
        self._set(object_id, survey, "done", note, total, digest.hexdigest())

    def mark(self, object_id: str, survey: str, status: str, reason: str | None) -> None:
        """Record ``no_coverage`` or ``failed`` with its reason."""
        if status not in ("no_coverage", "failed"):
            raise ValueError(f"status must be 'no_coverage' or 'failed', got {status!r}")
        self._set(object_id, survey, status, reason, None, None)

    def _set(
        self,
        object_id: str,
        survey: str,
        status: str,
        reason: str | None,
        size: int | None,
        sha: str | None,
    ) -> None:
        self._db.execute(
            "INSERT INTO products (object_id, survey, status, attempts, last_error, bytes, "
            "sha256, updated) VALUES (?, ?, ?, 1, ?, ?, ?, ?) "
            "ON CONFLICT(object_id, survey) DO UPDATE SET status=excluded.status, "
            "last_error=excluded.last_error, bytes=excluded.bytes, sha256=excluded.sha256, "
            "updated=excluded.updated",
            (object_id, survey, status, reason, size, sha, time.time()),
        )

    # -- housekeeping ------------------------------------------------------------------------
    def remove_stale_temporaries(self) -> list[Path]:
        """Delete temporary files left by writers that no longer run; return their paths."""
        removed = []
        # products sit in shard folders; shared group answers in groups/<survey>/
        places = [(self.root / s, f"*/*{_TEMP_MARK}*") for s in PRODUCT_SUFFIXES]
        places += [(self.root / "groups" / s, f"*{_TEMP_MARK}*") for s in PRODUCT_SUFFIXES]
        for folder, pattern in places:
            if not folder.is_dir():
                continue
            for path in folder.glob(pattern):
                pid_text = path.name.rsplit(_TEMP_MARK, 1)[-1]
                pid = int(pid_text) if pid_text.isdigit() else 0
                if pid > 0 and pid != os.getpid() and _pid_alive(pid):
                    continue  # another live fetch is writing it
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                    removed.append(path)
        return removed

    def iter_rows(self, surveys: Iterable[str] | None = None) -> Iterable[dict]:
        """Every manifest row (optionally for some surveys only)."""
        cursor = self._db.execute("SELECT * FROM products ORDER BY survey, object_id")
        names = [d[0] for d in cursor.description]
        wanted = set(surveys) if surveys is not None else None
        for row in cursor:
            record = dict(zip(names, row, strict=True))
            if wanted is None or record["survey"] in wanted:
                yield record

    def close(self) -> None:
        """Close the manifest connection."""
        self._db.close()

    def __enter__(self) -> CutoutCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
