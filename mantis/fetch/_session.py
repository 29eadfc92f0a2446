"""A fetch that stays open across the chunks of a catalogue.

``fetch_catalog`` opens a client, fetches, and closes it: called once per chunk (as prediction
streams a catalogue), every chunk ends with its last answers trickling in below the per-host
cap and the next starts with a file-name lookup before any cutout request, so the cap stands
partly idle at every boundary. A `FetchSession` keeps one event loop and one client (one cap
per host) in a background thread; chunks are submitted to it and run side by side, their
requests queueing for the same per-host slots, so the cap stays full from one chunk to the
next and is never exceeded by all of them together.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import sqlite3
import threading
from collections.abc import Sequence
from typing import Any

import pandas as pd

from mantis.config import load_settings
from mantis.exceptions import FetchError
from mantis.fetch._cache import CutoutCache
from mantis.fetch._client import ClientSettings, HttpClient
from mantis.fetch._runner import (
    FetchSummary,
    _usable,
    catalog_objects,
    fetch_with_client,
    load_fetch_config,
    make_fetchers,
)

__all__ = ["FetchSession"]


class FetchSession:
    """Fetch chunks of a catalogue into one cache through one long-lived client.

    Use as a context manager; `submit` returns a `concurrent.futures.Future` of the chunk's
    `FetchSummary` (its own statuses, requests and bytes), exactly what `fetch_catalog` returns
    for the same rows.

    Parameters
    ----------
    cache_dir : str or path-like
        Cache folder (`mantis.fetch` layout).
    surveys : sequence of str
        Surveys to fetch.
    endpoint : str, optional
        One base URL for every service (the imitation server, or ``local:DIR``).
    config : dict or str, optional
        Fetch settings (default ``configs/fetch.yaml``).
    chunks_at_once : int
        Chunks whose requests may queue for the per-host slots at the same time; the rest wait.
        Two are enough to keep the cap full across a boundary.

    Raises
    ------
    ConfigError
        Unknown surveys, a bad endpoint or settings (at once, before anything is sent).
    """

    def __init__(
        self,
        cache_dir: str | os.PathLike,
        *,
        surveys: Sequence[str] = ("galex", "ps1", "unwise"),
        endpoint: str | None = None,
        config: dict[str, Any] | str | None = None,
        chunks_at_once: int = 2,
    ) -> None:
        self.cache_dir = cache_dir
        self.surveys = tuple(surveys)
        self.endpoint = endpoint
        self._config = load_fetch_config(config)
        self._settings = ClientSettings.from_config(self._config)
        self._endpoints = load_settings("endpoints")  # read once, not once per chunk
        self._fetchers()  # checks the surveys, endpoint and settings before anything is sent
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="mantis-fetch-session", daemon=True
        )
        self._thread.start()
        self._client = HttpClient(self._settings)
        self._turns: asyncio.Semaphore | None = None
        self._tasks: set[concurrent.futures.Future] = set()
        self._call(self._open(max(1, int(chunks_at_once))))

    def _fetchers(self) -> list:
        # fresh fetchers per chunk: PS1 plans its file-name lookups for one call's objects
        return make_fetchers(
            self.surveys, config=self._config, endpoint=self.endpoint, endpoints=self._endpoints
        )

    def _call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    async def _open(self, chunks_at_once: int) -> None:
        with CutoutCache(self.cache_dir) as cache:
            cache.remove_stale_temporaries()
        await self._client.__aenter__()
        self._turns = asyncio.Semaphore(chunks_at_once)

    async def _fetch(self, catalog: pd.DataFrame) -> FetchSummary:
        objects, unusable = _usable(catalog_objects(catalog))
        fetchers = self._fetchers()
        assert self._turns is not None
        async with self._turns:
            try:
                summary = await fetch_with_client(
                    self._client.sharing(),
                    objects,
                    self.cache_dir,
                    fetchers,
                    fsync=bool(self._config.get("fsync", False)),
                    tidy=False,  # done once when the session opened
                )
            except (OSError, sqlite3.Error) as err:
                where = str(self.cache_dir)
                raise FetchError(f"cannot write to the cache {where!r}: {err}") from err
        summary.unusable_rows = unusable
        return summary

    def submit(self, catalog: pd.DataFrame) -> concurrent.futures.Future:
        """Start fetching the rows of ``catalog`` (``id``, ``ra``, ``dec``); return its future.

        Raises
        ------
        FetchError
            When the session is closed.
        """
        if not self._thread.is_alive():
            raise FetchError("the fetch session is closed")
        future = asyncio.run_coroutine_threadsafe(self._fetch(catalog), self._loop)
        self._tasks.add(future)
        future.add_done_callback(self._tasks.discard)
        return future

    def close(self) -> None:
        """Cancel the chunks still fetching (their finished products stay), close the client."""
        if not self._thread.is_alive():
            return
        for future in list(self._tasks):
            future.cancel()
        self._call(self._drain())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    async def _drain(self) -> None:
        pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        await asyncio.gather(*pending, return_exceptions=True)
        await self._client.__aexit__(None, None, None)

    def __enter__(self) -> FetchSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
