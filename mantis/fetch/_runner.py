"""``fetch_catalog``: fetch every survey product of a catalogue into a cache, resumably.

The synchronous entry point used by ``mantis fetch``, ``mantis predict`` and the build stage's
tests. All surveys are fetched at once through one shared client (each survey host keeps its
own politeness cap); whatever is already ``done`` or ``no_coverage`` in the manifest is
skipped, ``failed`` products are tried again.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import sqlite3
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from mantis.catalog import default_ids, read_catalog, validate_rows
from mantis.config import load_settings
from mantis.exceptions import CatalogError, ConfigError, FetchError
from mantis.fetch._base import MAX_CUTOUT_PIXELS, CutoutFetcher, SkyObject, cutout_pixels
from mantis.fetch._cache import CutoutCache, object_id_problem
from mantis.fetch._client import ClientSettings, HttpClient
from mantis.fetch._galex import GalexFetcher
from mantis.fetch._groups import GroupSettings
from mantis.fetch._local import LOCAL_PREFIX, LocalPanStarrsFetcher, LocalUnwiseFetcher
from mantis.fetch._panstarrs import PanStarrsFetcher
from mantis.fetch._unwise import UnwiseFetcher
from mantis.surveys import survey as survey_info

__all__ = [
    "FETCHERS",
    "FetchSummary",
    "catalog_objects",
    "fetch_catalog",
    "load_fetch_config",
    "make_fetchers",
]

FETCHERS: dict[str, type[CutoutFetcher]] = {
    "galex": GalexFetcher,
    "ps1": PanStarrsFetcher,
    "unwise": UnwiseFetcher,
}
# readers of a local survey mirror (base URL ``local:DIR``), per survey
LOCAL_FETCHERS: dict[str, type[CutoutFetcher]] = {
    "ps1": LocalPanStarrsFetcher,
    "unwise": LocalUnwiseFetcher,
}


@dataclass
class FetchSummary:
    """Outcome of a fetch over a whole catalogue.

    Attributes
    ----------
    n_objects : int
        Catalogue rows.
    statuses : dict of str to Counter
        Per survey, final status counts over the catalogue (``done``, ``no_coverage``,
        ``failed``), products finished by earlier runs included.
    failure_reasons : dict of str to Counter
        Per survey, the products still failed counted by reason (``'HTTP 503'``, ``'timeout'``).
    skipped : dict of str to int
        Per survey, products already finished before this run.
    requests, retries : Counter
        HTTP requests sent (retries included) and retries, per survey host.
    bytes_received : int
        Bytes of every response body.
    elapsed_s : float
        Wall-clock seconds of this run.
    unusable_rows : list of str
        Rows skipped because their id cannot name a cache file, one description each.
    """

    n_objects: int
    statuses: dict[str, Counter] = field(default_factory=dict)
    failure_reasons: dict[str, Counter] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    requests: Counter = field(default_factory=Counter)
    retries: Counter = field(default_factory=Counter)
    bytes_received: int = 0
    elapsed_s: float = 0.0
    unusable_rows: list[str] = field(default_factory=list)

    @property
    def n_failed(self) -> int:
        """Products still failed."""
        return sum(c["failed"] for c in self.statuses.values())

    @property
    def ok(self) -> bool:
        """True when nothing is left failed and no row was skipped."""
        return self.n_failed == 0 and not self.unusable_rows

    def format(self) -> str:
        """Render a small text table for the terminal."""
        lines = [
            f"{'survey':<8} {'done':>8} {'no cover':>9} {'failed':>7} {'skipped':>8} "
            f"{'requests':>9}"
        ]
        for name, counts in self.statuses.items():
            lines.append(
                f"{name:<8} {counts['done']:>8} {counts['no_coverage']:>9} {counts['failed']:>7} "
                f"{self.skipped.get(name, 0):>8} {self.requests.get(name, 0):>9}"
            )
        for name, reasons in self.failure_reasons.items():
            for reason, n in reasons.most_common():
                lines.append(f"  {name} failed: {n} x {reason}")
        if self.unusable_rows:
            lines.append(f"{len(self.unusable_rows)} row(s) skipped: id unusable as a file name")
        lines.append(
            f"{self.n_objects} objects in {self.elapsed_s:.1f} s, "
            f"{self.bytes_received / 1e6:.1f} MB received"
        )
        return "\n".join(lines)


def load_fetch_config(config: dict[str, Any] | str | None = None) -> dict[str, Any]:
    """Return the shipped ``fetch.yaml`` with a mapping, a name or a YAML path laid over it.

    Raises
    ------
    ConfigError
        One line naming an unknown key (and the closest valid one), a wrong type or a range.
    """
    return load_settings("fetch", config)


def catalog_objects(catalog: pd.DataFrame | str | os.PathLike) -> list[SkyObject]:
    """Objects of a catalogue (a path, or a DataFrame with ra, dec and optional id).

    Raises
    ------
    CatalogError
        Naming the invalid rows; nothing is fetched when any row is invalid.
    """
    if not isinstance(catalog, pd.DataFrame):
        catalog = read_catalog(catalog)
    valid, reasons = validate_rows(catalog)
    if not valid.all():
        bad = [i for i, ok in enumerate(valid) if not ok]
        shown = "; ".join(f"row {i}: {reasons[i]}" for i in bad[:10])
        raise CatalogError(
            f"{len(bad)} invalid catalogue row(s) (0-based), nothing fetched: {shown}"
            + (" ..." if len(bad) > 10 else "")
            + ". Allowed: ra in [0, 360), dec in [-90, 90] degrees, unique non-empty ids"
        )
    ra = pd.to_numeric(catalog["ra"]).to_numpy(dtype=float)
    dec = pd.to_numeric(catalog["dec"]).to_numpy(dtype=float)
    ids = catalog["id"].astype(str).str.strip() if "id" in catalog else default_ids(ra, dec)
    return [SkyObject(str(i), float(r), float(d)) for i, r, d in zip(ids, ra, dec, strict=True)]


def _usable(objects: list[SkyObject]) -> tuple[list[SkyObject], list[str]]:
    """Split off the rows whose id cannot name a cache file; the others are fetched."""
    kept, skipped = [], []
    for row, obj in enumerate(objects):
        problem = object_id_problem(obj.id)
        if problem is None:
            kept.append(obj)
        else:
            shown = obj.id if len(obj.id) <= 40 else obj.id[:40] + "..."
            skipped.append(f"row {row} (0-based), id {shown!r}: {problem}; skipped")
    return kept, skipped


def _largest_cutout_arcsec(survey_name: str) -> float:
    return MAX_CUTOUT_PIXELS[survey_name][0] * survey_info(survey_name).pixel_scale


def make_fetchers(
    surveys: Sequence[str],
    *,
    config: dict[str, Any],
    size_arcsec: float | None = None,
    endpoint: str | None = None,
    endpoints: dict[str, Any] | None = None,
) -> list[CutoutFetcher]:
    """One fetcher per survey, with endpoints from ``configs/endpoints.yaml``.

    ``endpoint`` (a base URL such as ``http://127.0.0.1:8765``) replaces every base URL.
    """
    unknown = [s for s in surveys if s not in FETCHERS]
    if unknown or not surveys:
        raise ConfigError(
            f"unknown survey(s) {', '.join(unknown) or '(none given)'}; "
            f"allowed: {', '.join(FETCHERS)}"
        )
    if endpoint is not None and not str(endpoint).startswith(("http://", "https://", "local:")):
        raise ConfigError(
            f"endpoint must be an http:// or https:// URL, got {endpoint!r} "
            "(or local:DIR for a survey mirror on disk)"
        )
    endpoints = endpoints or load_settings("endpoints")
    size = float(size_arcsec if size_arcsec is not None else config.get("size_arcsec", 42.5))
    groups = GroupSettings.from_config(config.get("groups"))
    for name in sorted(set(surveys), key=_largest_cutout_arcsec):
        cutout_pixels(name, size)  # a size too large is named against the tightest limit
    fetchers = []
    for name in dict.fromkeys(surveys):
        entry = dict(endpoints.get(name) or {})
        if endpoint is not None:
            entry["base_url"] = endpoint
        kind = FETCHERS[name]
        if str(entry.get("base_url", "")).startswith(LOCAL_PREFIX):
            if name not in LOCAL_FETCHERS:
                raise ConfigError(
                    f"a local mirror holds {', '.join(LOCAL_FETCHERS)}, not {name}; give "
                    f"{name} its service (configs/endpoints.yaml) or leave it out of --surveys"
                )
            kind = LOCAL_FETCHERS[name]
        fetcher = kind(entry, size_arcsec=size, options=config.get(name, {}))
        fetcher.groups = groups if kind is FETCHERS[name] else None  # a mirror is cut directly
        fetchers.append(fetcher)
    return fetchers


async def _fetch_all(
    objects: list[SkyObject],
    cache_dir: str | os.PathLike,
    fetchers: list[CutoutFetcher],
    settings: ClientSettings,
    *,
    fsync: bool,
    progress: bool,
) -> FetchSummary:
    async with HttpClient(settings) as client:
        return await fetch_with_client(
            client, objects, cache_dir, fetchers, fsync=fsync, progress=progress
        )


async def fetch_with_client(
    client: HttpClient,
    objects: list[SkyObject],
    cache_dir: str | os.PathLike,
    fetchers: list[CutoutFetcher],
    *,
    fsync: bool = False,
    progress: bool = False,
    tidy: bool = True,
) -> FetchSummary:
    """Fetch ``objects`` through an open client into the cache; the summary of these objects.

    The client's requests and bytes are counted in the summary, so a client shared with other
    jobs should be given as ``client.sharing()``. ``tidy`` first removes temporary files of
    dead writers (a walk over the whole cache: once per session is enough).
    """
    from tqdm.auto import tqdm

    started = time.perf_counter()
    summary = FetchSummary(len(objects))
    ids = [o.id for o in objects]
    with CutoutCache(cache_dir, fsync=fsync) as cache:
        if tidy:
            cache.remove_stale_temporaries()
        already = 0
        for fetcher in fetchers:
            finished = cache.statuses(fetcher.survey, ids)
            already += sum(finished.get(o.id) in ("done", "no_coverage") for o in objects)
        bar = tqdm(
            total=len(objects) * len(fetchers),
            initial=already,
            disable=not progress,
            unit="product",
            desc="fetch",
            dynamic_ncols=True,
        )
        try:
            tallies = await asyncio.gather(
                *(
                    f.fetch(client, cache, objects, on_finished=lambda _o, _s: bar.update(1))
                    for f in fetchers
                )
            )
        finally:
            for fetcher in fetchers:  # local mirror readers hold files open
                if hasattr(fetcher, "close"):
                    fetcher.close()
        bar.close()
        for fetcher, tally in zip(fetchers, tallies, strict=True):
            name = fetcher.survey
            summary.skipped[name] = tally.skipped
            counts, reasons = Counter(), Counter()
            for row in cache.records(name, ids):
                counts[row["status"]] += 1
                if row["status"] == "failed":
                    reasons[str(row["last_error"] or "error").split(":")[0]] += 1
            summary.statuses[name] = counts
            if reasons:
                summary.failure_reasons[name] = reasons
        summary.requests, summary.retries = client.stats.requests, client.stats.retries
        summary.bytes_received = client.stats.bytes_received
    summary.elapsed_s = time.perf_counter() - started
    return summary


def fetch_catalog(
    catalog: pd.DataFrame | str | os.PathLike,
    *,
    cache_dir: str | os.PathLike,
    surveys: Sequence[str] = ("galex", "ps1", "unwise"),
    size_arcsec: float | None = None,
    endpoint: str | None = None,
    concurrency: int | None = None,
    progress: bool = True,
    config: dict[str, Any] | str | None = None,
    groups: bool | None = None,
    endpoints: dict[str, Any] | None = None,
) -> FetchSummary:
    """Fetch every survey cutout of a catalogue into a cache (synchronous).

    Parameters
    ----------
    catalog : DataFrame or path
        Rows with ``ra``, ``dec`` (degrees) and optional ``id``; a path is read with
        `mantis.catalog.read_catalog`.
    cache_dir : path
        Cache folder (layout in docs/interfaces.md).
    surveys : sequence of {'galex', 'ps1', 'unwise'}
        Surveys to fetch.
    size_arcsec : float, optional
        Cutout side in arcsec; default ``size_arcsec`` of ``configs/fetch.yaml`` (42.5).
    endpoint : str, optional
        One base URL for all three services (the imitation server); default the real services
        of ``configs/endpoints.yaml``.
    concurrency : int, optional
        Requests in flight per survey host; default from ``configs/fetch.yaml``.
    progress : bool
        Show a progress bar.
    config : dict or str, optional
        Replaces ``configs/fetch.yaml`` (a mapping, a config name or a YAML path).
    groups : bool, optional
        Fetch shared cutouts for neighbours (`mantis.fetch._groups`); default ``groups.enabled``
        of the configuration.
    endpoints : dict, optional
        Validated endpoint settings (``load_settings('endpoints', ...)``) replacing
        ``configs/endpoints.yaml``, e.g. a mirror for one survey; ``endpoint`` still wins.

    Returns
    -------
    FetchSummary
        Final statuses over the catalogue; ``summary.ok`` is False if failures remain.

    Raises
    ------
    CatalogError
        Invalid rows (named); nothing is fetched.
    ConfigError
        Unknown survey, bad endpoint, size or settings.
    FetchError
        The cache cannot be written (disk full, permissions).
    """
    cfg = load_fetch_config(config)
    if groups is not None:
        cfg = {**cfg, "groups": {**(cfg.get("groups") or {}), "enabled": bool(groups)}}
    objects, unusable = _usable(catalog_objects(catalog))
    settings = ClientSettings.from_config(cfg, concurrency_per_host=concurrency)
    fetchers = make_fetchers(
        surveys, config=cfg, size_arcsec=size_arcsec, endpoint=endpoint, endpoints=endpoints
    )
    job = _fetch_all(
        objects,
        cache_dir,
        fetchers,
        settings,
        fsync=bool(cfg.get("fsync", False)),
        progress=progress,
    )
    try:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            summary = asyncio.run(job)
        else:
            # called from inside an event loop (a notebook): a thread with its own loop
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                summary = pool.submit(asyncio.run, job).result()
        summary.unusable_rows = unusable
        return summary
    except (OSError, sqlite3.Error) as err:
        # the cache itself failed (disk full, permissions): finished products stay recorded
        raise FetchError(f"cannot write to the cache {str(cache_dir)!r}: {err}") from err
