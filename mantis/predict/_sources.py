"""Where a chunk's image arrays come from, and the checks that they suit the checkpoint.

`CutoutSource` is the real path (fetch into the cache, then build the arrays the network
takes); tests and benchmarks swap in a stand-in with the same ``arrays(chunk)`` method. Sources
are plain picklable dataclasses so that each rank of a multi-process run can rebuild them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd

from mantis.predict._parts import PredictionError
from mantis.surveys import SURVEY_NAMES, bands_of

__all__ = ["ArraySource", "CutoutSource", "check_compatible", "check_densities", "coverage_flags"]


class ArraySource(Protocol):
    """Anything that turns a chunk of valid catalogue rows into `build_objects` arrays.

    A source may also have ``fetch(chunk) -> None`` and ``build(chunk) -> arrays`` (as
    `CutoutSource` does); the pipeline then runs them in separate threads, so that downloading
    later chunks overlaps building and predicting earlier ones.
    """

    def arrays(self, chunk: pd.DataFrame) -> dict[str, np.ndarray]:
        """Arrays keyed like ``'ps1/image'`` and ``'catalog/has_ps1'`` for the rows of ``chunk``."""
        ...


@dataclass(frozen=True)
class CutoutSource:
    """Fetch each chunk's cutouts (skipping what the cache holds) and build its arrays.

    Parameters
    ----------
    cache_dir : str
        Raw cutout cache (`mantis.fetch` layout).
    endpoint : str, optional
        Base URL replacing every service's (e.g. a ``mantis sky serve`` address).
    surveys : tuple of str
        Surveys to fetch.
    build_config : dict, optional
        Configuration handed to `mantis.stack.build_objects`.
    fetch_config : dict or str, optional
        Fetch settings handed to `mantis.fetch.fetch_catalog` (default ``fetch``).
    fetch_lanes : int
        Chunks fetched at the same time. In a prediction (`fetch_session`) they share one
        client and its per-host cap (``client.concurrency_per_host``), so one chunk's last
        answers and the next chunk's file-name lookup no longer leave the cap idle between
        chunks; through `fetch`, each call gets its share of the cap instead.
    """

    cache_dir: str
    endpoint: str | None = None
    surveys: tuple[str, ...] = SURVEY_NAMES
    build_config: dict[str, Any] | None = field(default=None, hash=False)
    fetch_config: dict[str, Any] | str | None = field(default=None, hash=False)
    fetch_lanes: int = 2

    @property
    def lanes(self) -> int:
        """Chunks the pipeline may fetch at once: ``fetch_lanes``, at most the per-host cap."""
        return max(1, min(int(self.fetch_lanes), self._cap()))

    def _cap(self) -> int:
        from mantis.fetch import load_fetch_config

        return int(load_fetch_config(self.fetch_config)["client"]["concurrency_per_host"])

    def fetch_session(self) -> Any:
        """Open a `mantis.fetch.FetchSession` on this source's cache, endpoint and settings.

        Chunks submitted to it run ``lanes`` at a time through one client, so together they
        keep the whole per-host cap busy and never exceed it.
        """
        from mantis.fetch import FetchSession

        return FetchSession(
            self.cache_dir,
            surveys=self.surveys,
            endpoint=self.endpoint,
            config=self.fetch_config,
            chunks_at_once=self.lanes,
        )

    def fetch(self, chunk: pd.DataFrame) -> Any:
        """Fetch the cutouts of ``chunk`` into the cache (what it holds already is skipped).

        Each call gets ``1 / lanes`` of the per-host cap, so that `lanes` calls at once stay
        within it.

        Returns
        -------
        mantis.fetch.FetchSummary
        """
        return self._fetch(chunk, self.lanes)

    def _fetch(self, chunk: pd.DataFrame, lanes: int) -> Any:
        from mantis.fetch import fetch_catalog, load_fetch_config

        config = load_fetch_config(self.fetch_config)
        config["client"]["concurrency_per_host"] = max(1, self._cap() // lanes)
        return fetch_catalog(
            chunk[["id", "ra", "dec"]],
            cache_dir=self.cache_dir,
            surveys=self.surveys,
            endpoint=self.endpoint,
            progress=False,
            config=config,
        )

    def build(self, chunk: pd.DataFrame) -> dict[str, np.ndarray]:
        """Build the arrays of ``chunk`` from the cache (after `fetch`).

        Besides the `mantis.stack.build_objects` arrays, ``'fetch/<survey>'`` holds each row's
        manifest status: ``'done'``, ``'no_coverage'``, ``'failed: <reason>'`` or
        ``'not_fetched'``; a failed product is never turned into pixels.
        """
        from mantis.fetch import CutoutCache
        from mantis.stack import build_objects

        with CutoutCache(self.cache_dir) as cache:
            arrays = build_objects(chunk[["id", "ra", "dec"]], cache, self.build_config)
            for name in self.surveys:
                arrays[f"fetch/{name}"] = np.array(
                    [_status(cache.record(str(i), name)) for i in chunk["id"]], dtype=object
                )
        return arrays

    def arrays(self, chunk: pd.DataFrame) -> dict[str, np.ndarray]:
        """Fetch (with the whole per-host cap: one call at a time) then build ``chunk``."""
        self._fetch(chunk, 1)
        return self.build(chunk)


def _status(record: dict | None) -> str:
    """One row's manifest status, a failure with its reason as ``mantis fetch`` counts it."""
    if record is None:
        return "not_fetched"
    if record["status"] == "failed":
        return f"failed: {str(record['last_error'] or 'error').split(':')[0]}"
    return str(record["status"])


def coverage_flags(arrays: dict[str, np.ndarray], n_rows: int) -> dict[str, np.ndarray]:
    """``has_<survey>`` per object: from the builder's catalogue flags, else from pixel masks."""
    flags = {}
    for name in SURVEY_NAMES:
        if f"catalog/has_{name}" in arrays:
            flag = np.asarray(arrays[f"catalog/has_{name}"], dtype=bool)
        elif f"{name}/valid" in arrays:
            valid = np.asarray(arrays[f"{name}/valid"])
            flag = valid.reshape(valid.shape[0], -1).any(axis=1)
        else:
            flag = np.zeros(n_rows, dtype=bool)
        flags[f"has_{name}"] = flag
    return flags


def _data_bands(arrays: dict[str, np.ndarray]) -> list[str]:
    return [b.name for s in SURVEY_NAMES if f"{s}/image" in arrays for b in bands_of(s)]


def check_compatible(predictor: Any, arrays: dict[str, np.ndarray]) -> None:
    """Raise unless the checkpoint's bands and pixel grids match the built arrays.

    Raises
    ------
    PredictionError
        Naming the bands the data lacks, or the grid whose size differs.
    """
    have = _data_bands(arrays)
    missing = [b for b in predictor.bands if b not in have]
    if missing:
        raise PredictionError(
            f"the checkpoint was trained on bands {', '.join(predictor.bands)} but the data has "
            f"{', '.join(have) or 'none'}; missing: {', '.join(missing)}"
        )
    for key, spec in (predictor.grids or {}).items():
        image = arrays.get(f"{key}/image")
        if image is None:
            continue
        size = int(spec["size"]) if isinstance(spec, dict) else int(spec)
        if tuple(image.shape[-2:]) != (size, size):
            raise PredictionError(
                f"the checkpoint expects {key} cutouts of {size}x{size} pixels but the data has "
                f"{image.shape[-2]}x{image.shape[-1]}; build with the checkpoint's grids"
            )


def check_densities(probs: np.ndarray, predictor: Any, n_rows: int) -> np.ndarray:
    """Return ``probs`` as float64 after checking its shape against the checkpoint's grid."""
    probs = np.asarray(probs, dtype=np.float64)
    expected = (n_rows, predictor.zgrid.n_bins)
    if probs.shape != expected:
        raise PredictionError(
            f"the network returned densities of shape {probs.shape}, expected {expected} on "
            f"the checkpoint's grid {predictor.zgrid}"
        )
    return probs
