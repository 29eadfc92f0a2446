"""What every survey fetcher shares: the request plan, the per-survey worker pool, the cache.

Each survey module subclasses `CutoutFetcher` and supplies ``build_requests`` (the requests
for some objects, built without sending anything) and ``fetch_object`` (send them, validate,
return the files). ``fetch`` runs a pool of workers over the objects still to do and records
every outcome in the cache manifest.
"""

from __future__ import annotations

import asyncio
import math
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import aiohttp

from mantis.exceptions import ConfigError, FetchError, NoCoverageError
from mantis.fetch._cache import CutoutCache
from mantis.fetch._client import HttpClient, Reply
from mantis.surveys import survey as survey_info

__all__ = [
    "MAX_CUTOUT_PIXELS",
    "CutoutFetcher",
    "PlannedRequest",
    "Product",
    "SkyObject",
    "SurveyTally",
    "cutout_pixels",
]


@dataclass(frozen=True)
class SkyObject:
    """One catalogue position."""

    id: str
    ra: float
    dec: float


@dataclass(frozen=True)
class PlannedRequest:
    """A request as it would be sent.

    Attributes
    ----------
    method : str
        ``'GET'`` or ``'POST'``.
    url : str
        Absolute URL without the query string.
    params : dict
        Query parameters.
    form : dict or None
        Form fields of a multipart POST; the value under ``'file'`` is sent as a file upload.
    purpose : str
        What the answer is for (``'lookup'``, ``'cutout g'``, ``'cutout'``).
    object_ids : tuple of str
        Objects the request serves.
    """

    method: str
    url: str
    params: dict[str, Any]
    form: dict[str, str] | None = None
    purpose: str = "cutout"
    object_ids: tuple[str, ...] = ()

    def form_data(self) -> aiohttp.FormData | None:
        """Build a fresh multipart body (a new one is needed for every attempt)."""
        if self.form is None:
            return None
        data = aiohttp.FormData()
        for key, value in self.form.items():
            if key == "file":
                data.add_field(
                    "file", value.encode(), filename="positions.txt", content_type="text/plain"
                )
            else:
                data.add_field(key, value)
        return data


@dataclass
class Product:
    """The files of one (object, survey) product, keyed by cache suffix."""

    files: dict[str, bytes]
    note: str | None = None


@dataclass
class SurveyTally:
    """Outcomes of one survey in one run."""

    statuses: Counter = field(default_factory=Counter)
    failure_reasons: Counter = field(default_factory=Counter)
    skipped: int = 0


# the largest cutout side each service answers, in its native pixels, and why
MAX_CUTOUT_PIXELS = {
    "ps1": (2400, "the largest fitscut cutout known to be served"),
    "unwise": (1024, "unwise.me silently clamps larger requests"),
    "galex": (3000, "the Legacy Survey viewer clamps width and height to 3000"),
}


def cutout_pixels(survey_name: str, size_arcsec: float, min_pixels: int = 1) -> int:
    """Side of a square cutout in native pixels covering at least ``size_arcsec``.

    Rounded up to whole pixels (a hair of tolerance so 42.5" is exactly 170 PS1 pixels), and at
    least ``min_pixels``.

    Raises
    ------
    ConfigError
        If the size is not a positive number, or larger than the service answers
        (`MAX_CUTOUT_PIXELS`).
    """
    if (
        not (isinstance(size_arcsec, int | float) and math.isfinite(size_arcsec))
        or size_arcsec <= 0
    ):
        raise ConfigError(f"cutout size must be a positive number of arcsec, got {size_arcsec!r}")
    scale = survey_info(survey_name).pixel_scale
    pixels = max(int(min_pixels), math.ceil(size_arcsec / scale - 1e-6))
    largest, why = MAX_CUTOUT_PIXELS.get(survey_name, (pixels, ""))
    if pixels > largest:
        raise ConfigError(
            f"cutout size {size_arcsec:g} arcsec is too large for {survey_name}: at most "
            f"{largest * scale:g} arcsec ({largest} pixels of {scale:g} arcsec; {why})"
        )
    return pixels


class CutoutFetcher(ABC):
    """Base class of the survey fetchers.

    Parameters
    ----------
    endpoint : dict
        This survey's entry of ``configs/endpoints.yaml`` (``base_url`` and paths).
    size_arcsec : float
        Cutout side in arcsec.
    options : dict, optional
        This survey's entry of ``configs/fetch.yaml`` (``min_pixels`` and survey specifics).
    """

    survey: ClassVar[str]

    def __init__(
        self,
        endpoint: dict[str, Any],
        *,
        size_arcsec: float,
        options: dict[str, Any] | None = None,
    ) -> None:
        if "base_url" not in endpoint:
            raise ConfigError(f"endpoint of {self.survey} lacks base_url: {endpoint!r}")
        self.endpoint = dict(endpoint)
        self.base_url = str(endpoint["base_url"]).rstrip("/")
        self.options = dict(options or {})
        self.size_arcsec = size_arcsec
        self.pixels = cutout_pixels(self.survey, size_arcsec, self.options.get("min_pixels", 1))
        self.groups: Any = None  # a mantis.fetch._groups.GroupSettings turns shared cutouts on

    def url(self, path_key: str) -> str:
        """Absolute URL of one of the endpoint's paths."""
        return self.base_url + self.endpoint[path_key]

    @abstractmethod
    def build_requests(self, objects: Sequence[SkyObject]) -> list[PlannedRequest]:
        """Build the requests that fetching ``objects`` starts with, without sending any."""

    @abstractmethod
    async def fetch_object(self, client: HttpClient, obj: SkyObject) -> Product:
        """Fetch one object's product.

        Raises
        ------
        NoCoverageError
            The survey has no data at the position.
        FetchError
            A request failed after every retry.
        """

    async def fetch_group(
        self, client: HttpClient, members: Sequence[SkyObject], files: Any
    ) -> dict[str, Product | Exception]:
        """Fetch the products of neighbours through one shared cutout (survey modules).

        The default fetches each member on its own. Returns, per member id, its product or
        the `NoCoverageError` / `FetchError` a per-object fetch would have raised.
        """
        outcomes: dict[str, Product | Exception] = {}
        for obj in members:
            try:
                outcomes[obj.id] = await self.fetch_object(client, obj)
            except (NoCoverageError, FetchError) as err:
                outcomes[obj.id] = err
        return outcomes

    def prepare(self, objects: Sequence[SkyObject]) -> None:  # noqa: B027 - optional hook
        """Get ready to fetch ``objects`` in this order (PS1 plans its batched lookups)."""

    def body_cap(self, request: PlannedRequest) -> tuple[int | None, str]:
        """Largest answer accepted for ``request`` (bytes, or None) and the setting it comes from.

        The survey's ``max_body_mb`` of ``configs/fetch.yaml``; PS1 overrides it per kind.
        """
        megabytes = self.options.get("max_body_mb")
        name = f"{self.survey}.max_body_mb"
        return (None if megabytes is None else int(megabytes * 2**20)), name

    async def send(self, client: HttpClient, request: PlannedRequest, **kwargs: Any) -> Reply:
        """Send a planned request through the shared client under this survey's host key."""
        max_bytes, cap_name = self.body_cap(request)
        return await client.request(
            request.method,
            request.url,
            host_key=self.survey,
            params=request.params,
            form=request.form_data if request.form is not None else None,
            max_bytes=max_bytes,
            cap_name=cap_name,
            **kwargs,
        )

    async def fetch(
        self,
        client: HttpClient,
        cache: CutoutCache,
        objects: Sequence[SkyObject],
        *,
        workers: int | None = None,
        on_finished: Callable[[SkyObject, str], None] | None = None,
    ) -> SurveyTally:
        """Fetch every object not yet done or known to lack coverage, recording each outcome.

        Parameters
        ----------
        client : HttpClient
            Open shared client.
        cache : CutoutCache
            Where products and manifest rows go.
        objects : sequence of SkyObject
            Objects in catalogue order.
        workers : int, optional
            Objects in progress at once; default twice the client's per-host cap.
        on_finished : callable, optional
            Called with (object, status) after each object (progress bars).
        """
        tally = SurveyTally()
        tried = cache.statuses(self.survey, [o.id for o in objects])
        finished = {k for k, v in tried.items() if v != "failed"}
        todo = [o for o in objects if o.id not in finished]
        tally.skipped = len(objects) - len(todo)
        n_workers = workers or 2 * int(client.settings.concurrency_per_host)

        def record(obj: SkyObject, outcome: Product | Exception) -> None:
            if isinstance(outcome, NoCoverageError):
                cache.mark(obj.id, self.survey, "no_coverage", str(outcome))
                status = "no_coverage"
            elif isinstance(outcome, FetchError):
                cache.mark(obj.id, self.survey, "failed", str(outcome))
                tally.failure_reasons[getattr(outcome, "reason", "error")] += 1
                status = "failed"
            elif isinstance(outcome, Exception):
                raise outcome
            else:
                cache.store(obj.id, self.survey, outcome.files, note=outcome.note)
                status = "done"
            tally.statuses[status] += 1
            if on_finished is not None:
                on_finished(obj, status)

        if self.groups is not None and self.groups.enabled and len(todo) > 1:
            from mantis.fetch._groups import fetch_in_groups

            await fetch_in_groups(self, client, cache, todo, n_workers, record)
            return tally
        self.prepare(todo)
        pending = iter(todo)

        async def worker() -> None:
            for obj in pending:
                cache.begin(obj.id, self.survey)
                try:
                    outcome: Product | Exception = await self.fetch_object(client, obj)
                except (NoCoverageError, FetchError) as err:
                    outcome = err
                record(obj, outcome)

        await asyncio.gather(*(worker() for _ in range(min(n_workers, max(len(todo), 1)))))
        return tally
