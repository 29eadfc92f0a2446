"""Why objects lack data: refusing builds with nothing fetched, naming failed products.

A dataset built from a cache in which every product failed would be all zeros with
``has_*=False``; `check_something_fetched` refuses it before any file is created, and
`failure_reason` gives the per-object reasons the build records in ``catalog/missing_reason``.
"""

from __future__ import annotations

from collections import Counter

import pandas as pd

from mantis.stack._dataset import DatasetError
from mantis.surveys import SURVEY_NAMES

__all__ = ["check_something_fetched", "failure_reason"]


def failure_reason(cache, object_id: str, survey_name: str, why: str) -> str:
    """Return ``why``, with the error category of a failed product as ``mantis fetch`` counts it."""
    if why != "failed":
        return why
    record = cache.record(object_id, survey_name) or {}
    return f"failed ({str(record.get('last_error') or 'error').split(':')[0]})"


def check_something_fetched(catalog: pd.DataFrame, cache) -> None:
    """Refuse to build when no object has any product in the cache (no file is written).

    Raises
    ------
    DatasetError
        Naming the cache and, per survey, how the catalogue's products ended.
    """
    ids = set(catalog["id"].astype(str)) if "id" in catalog else set()
    counts = {}
    for name in SURVEY_NAMES:
        statuses = cache.statuses(name, ids)
        found = Counter(statuses.get(i, "not_fetched") for i in ids)
        if found.get("done"):
            return
        counts[name] = found
    if not ids:
        return
    shown = "; ".join(
        f"{name}: " + ", ".join(f"{k} {v}" for k, v in sorted(found.items()))
        for name, found in counts.items()
    )
    raise DatasetError(
        f"nothing to build: none of the {len(ids)} objects has a fetched product in the cache "
        f"{str(cache.root)!r} ({shown}); run mantis fetch (rerun it to retry failures)"
    )
