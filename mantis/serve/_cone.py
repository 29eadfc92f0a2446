"""The objects the service has predicted, searchable by position (IVOA Simple Cone Search 1.03).

Every valid prediction (from ``/v1/predict``, finished jobs, or a prediction file given at
start) is kept in an SQLite table keyed by position name, the latest prediction winning. A
search selects a declination band with the index and keeps the rows within the radius by
their exact angular distance.
"""

from __future__ import annotations

import io
import sqlite3
import threading
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["ConeIndex", "cone_votable"]

_SUMMARY = ("z_mean", "z_median", "z_mode", "z_std", "z_lo68", "z_hi68", "z_lo95", "z_hi95",
            "odds")  # fmt: skip
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS objects (
    key TEXT PRIMARY KEY, id TEXT NOT NULL, ra REAL NOT NULL, dec REAL NOT NULL,
    {", ".join(f"{name} REAL" for name in _SUMMARY)}, origin TEXT
);
CREATE INDEX IF NOT EXISTS objects_dec ON objects (dec);
"""
# SCS 1.03 requires these UCD1 names on the id and position fields; pyvo looks them up
_SCS_UCDS = {"id": "ID_MAIN", "ra": "POS_EQ_RA_MAIN", "dec": "POS_EQ_DEC_MAIN"}
_UNITS = {"ra": "deg", "dec": "deg", "distance": "deg"}
_DESCRIPTIONS = {
    "id": "identifier given with the position",
    "z_mean": "mean of the redshift density",
    "z_median": "median of the redshift density",
    "z_mode": "centre of the most probable redshift bin",
    "z_std": "standard deviation of the redshift density",
    "z_lo68": "lower end of the central 68% interval",
    "z_hi68": "upper end of the central 68% interval",
    "z_lo95": "lower end of the central 95% interval",
    "z_hi95": "upper end of the central 95% interval",
    "odds": "probability within z_mode +- 0.06 (1 + z_mode)",
    "distance": "angular distance from the search position",
}


class ConeIndex:
    """SQLite table of predicted objects.

    Parameters
    ----------
    path : Path
        The database file (created if missing).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        with self._connect() as db:
            db.executescript(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=30)

    def add(self, table: pd.DataFrame, origin: str) -> int:
        """Add the valid rows of a prediction table; return how many were added."""
        from mantis.serve._engine import position_ids

        rows = table[table["valid"].astype(bool)] if "valid" in table else table
        if rows.empty:
            return 0
        keys = position_ids(rows["ra"], rows["dec"])
        records = zip(keys, rows["id"].astype(str), rows["ra"].astype(float),
                      rows["dec"].astype(float), *(rows[c].astype(float) for c in _SUMMARY),
                      [origin] * len(rows), strict=True)  # fmt: skip
        marks = ", ".join("?" * (5 + len(_SUMMARY)))
        with self._lock, self._connect() as db:
            db.executemany(f"INSERT OR REPLACE INTO objects VALUES ({marks})", records)
        return len(rows)

    def count(self) -> int:
        """Return the number of objects held."""
        with self._connect() as db:
            return int(db.execute("SELECT COUNT(*) FROM objects").fetchone()[0])

    def search(self, ra: float, dec: float, radius: float, limit: int) -> tuple[pd.DataFrame, bool]:
        """Objects within ``radius`` degrees of (``ra``, ``dec``), nearest first.

        Returns
        -------
        tuple of (DataFrame, bool)
            At most ``limit`` rows with a ``distance`` column (degrees), and whether more
            objects matched.
        """
        columns = ("id", "ra", "dec", *_SUMMARY)
        with self._connect() as db:
            found = pd.read_sql_query(
                f"SELECT {', '.join(columns)} FROM objects WHERE dec BETWEEN ? AND ?",
                db, params=(dec - radius, dec + radius),
            )  # fmt: skip
        ra0, dec0 = np.radians(ra), np.radians(dec)
        ra1, dec1 = np.radians(found["ra"].to_numpy()), np.radians(found["dec"].to_numpy())
        # haversine: accurate for the small separations a cone search is about
        h = (
            np.sin((dec1 - dec0) / 2) ** 2
            + np.cos(dec0) * np.cos(dec1) * np.sin((ra1 - ra0) / 2) ** 2
        )
        found["distance"] = np.degrees(2 * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0))))
        found = found[found["distance"] <= radius].sort_values("distance", kind="stable")
        return found.head(limit).reset_index(drop=True), len(found) > limit


def cone_votable(found: pd.DataFrame, overflow: bool, query: dict[str, float]) -> bytes:
    """Write the VOTable answer of a cone search (one RESOURCE, one TABLE, UCDs, units)."""
    from astropy.io.votable import from_table
    from astropy.io.votable.tree import Info
    from astropy.table import Table

    table = Table.from_pandas(found) if len(found) else Table(
        {name: np.zeros(0, dtype=object if name == "id" else float) for name in found.columns}
    )  # fmt: skip
    if len(table) == 0:
        table["id"] = table["id"].astype(str)
    votable = from_table(table)
    resource = votable.resources[0]
    result = resource.tables[0]
    result.name = "mantis_cone"
    result.description = "Objects with mantis photometric-redshift densities"
    for field in result.fields:
        field.ucd = _SCS_UCDS.get(field.name)
        field.unit = _UNITS.get(field.name)
        if field.name in _DESCRIPTIONS:
            field.description = _DESCRIPTIONS[field.name]
    status = "OVERFLOW" if overflow else "OK"
    resource.infos.append(Info(name="QUERY_STATUS", value=status))
    for key, value in query.items():
        resource.infos.append(Info(name=key, value=str(value)))
    buffer = io.BytesIO()
    votable.to_xml(buffer)
    return buffer.getvalue()
