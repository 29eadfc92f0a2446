"""The client: positions in, an astropy Table with summary columns and a qp ensemble out."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from mantis.exceptions import MantisError

__all__ = ["Service", "ServiceError"]

# Long enough for a batch whose cutouts are not cached yet (they are fetched first).
DEFAULT_TIMEOUT_S = 600.0


class ServiceError(MantisError):
    """The service refused a request or could not be reached; the message is the service's."""


def _column(table: Any, name: str) -> np.ndarray | None:
    for key in (name, name.upper(), name.capitalize()):
        if key in getattr(table, "colnames", getattr(table, "columns", [])):
            return np.asarray(table[key])
    return None


class Service:
    """A running ``mantis serve``.

    Parameters
    ----------
    url : str
        Base URL, e.g. ``http://127.0.0.1:8000``.
    timeout : float
        Seconds to wait for one answer.
    """

    def __init__(self, url: str, *, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ServiceError(f"service URL {url!r} is not an http(s) URL")
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._limit: int | None = None

    def _session(self):
        import requests

        session = requests.Session()
        session.max_redirects = 0  # never follow a redirect to another host
        return session

    def _answer(self, response) -> Any:
        try:
            body = response.json()
        except ValueError:
            body = {"error": response.text[:200]}
        if not response.ok:
            raise ServiceError(f"{response.status_code} from {response.url}: "
                               f"{body.get('error', body)}")  # fmt: skip
        return body

    def info(self) -> dict[str, Any]:
        """Return the service's grid, calibration and limits (``GET /v1``)."""
        with self._session() as session:
            return self._answer(session.get(f"{self.url}/v1", timeout=self.timeout))

    def _payloads(self, table: Any, limit: int) -> list[dict[str, Any]]:
        ra, dec = _column(table, "ra"), _column(table, "dec")
        if ra is None or dec is None:
            names = list(getattr(table, "colnames", getattr(table, "columns", [])))
            raise ServiceError(f"the table needs ra and dec columns (degrees); it has {names}")
        ids = _column(table, "id")
        positions = [{"ra": float(r), "dec": float(d)} for r, d in zip(ra, dec, strict=True)]
        if ids is not None:
            for position, i in zip(positions, ids, strict=True):
                position["id"] = i.decode() if isinstance(i, bytes) else str(i)
        return [{"positions": positions[k : k + limit]} for k in range(0, len(positions), limit)]

    def predict(self, table: Any, *, get_query_payload: bool = False, batch: int | None = None):
        """Predict redshift densities for the rows of a table.

        Parameters
        ----------
        table : astropy.table.Table or pandas.DataFrame
            Columns ``ra`` and ``dec`` (degrees) and optionally ``id``.
        get_query_payload : bool
            Return the request bodies (one per batch) instead of sending them.
        batch : int, optional
            Positions per request; the service's limit by default.

        Returns
        -------
        astropy.table.Table or list of dict
            One row per input row: ``id``, ``ra``, ``dec``, ``valid``, ``flag``, the summary
            columns and coverage flags; ``table.meta['ensemble']`` is a ``qp.Ensemble`` of the
            valid rows (histogram on the service's grid, in their order) and
            ``table.meta['zgrid']`` the grid. With ``get_query_payload`` the payloads.

        Raises
        ------
        ServiceError
            If the service refuses a request (the message names the bad value).
        """
        if batch is None:
            batch = 1000 if get_query_payload else self.info()["limits"]["max_positions"]
        payloads = self._payloads(table, int(batch))
        if get_query_payload:
            return payloads
        objects: list[dict[str, Any]] = []
        zgrid = None
        with self._session() as session:
            for payload in payloads:
                response = session.post(f"{self.url}/v1/predict", data=json.dumps(payload),
                                        headers={"Content-Type": "application/json"},
                                        timeout=self.timeout)  # fmt: skip
                body = self._answer(response)
                zgrid = body["zgrid"]
                objects.extend(body["objects"])
        return _to_table(objects, zgrid)


def _to_table(objects: list[dict[str, Any]], zgrid: dict[str, Any] | None):
    import qp
    from astropy.table import Table

    names = [k for k in (objects[0] if objects else {}) if k != "density"]
    table = Table({name: [o[name] if o[name] is not None else np.nan for o in objects]
                   for name in names})  # fmt: skip
    table.meta["zgrid"] = zgrid
    densities = [o["density"] for o in objects if o["density"] is not None]
    if densities and zgrid is not None:
        edges = np.linspace(zgrid["z_min"], zgrid["z_max"], zgrid["n_bins"] + 1)
        probs = np.asarray(densities, dtype=float)
        pdfs = probs / np.diff(edges)[None, :]
        table.meta["ensemble"] = qp.Ensemble(qp.hist, data={"bins": edges, "pdfs": pdfs})
    else:
        table.meta["ensemble"] = None
    return table
