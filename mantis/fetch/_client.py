"""The one asynchronous HTTP client every survey fetcher shares.

Politeness first: each survey host gets its own cap on requests in flight (a semaphore per
host key), connections are kept alive and reused, and every request has connect, read and
total timeouts. A request is retried with exponential back-off and jitter on HTTP 5xx, 408,
429, timeouts, dropped connections and bodies that fail validation (truncated, HTML, a text
error behind HTTP 200); the back-off sleeps happen outside the host's slot so a struggling
host never holds slots idle. Client errors (other 4xx) are not retried.

Hygiene: the cap counts the host actually contacted (scheme, name and port of the URL), so
three surveys pointed at one server share one cap. Redirects are followed only to the same
host (a few hops at most); one to another host fails the request. No body is read past its cap
(``client.max_body_mb``, or a smaller cap per product kind passed by the fetcher).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import aiohttp
from yarl import URL

from mantis import __version__
from mantis.config import ClientSchema, validate_settings
from mantis.exceptions import FetchError, NoCoverageError
from mantis.fetch._validate import InvalidBodyError

__all__ = [
    "ClientSettings",
    "ClientStats",
    "HttpClient",
    "Reply",
    "RequestFailedError",
    "contacted_host",
]

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 5


@dataclass(frozen=True)
class ClientSettings:
    """Politeness, timeouts and retries of `HttpClient` (``configs/fetch.yaml``).

    Attributes
    ----------
    concurrency_per_host : int
        Requests in flight per survey host at most.
    connect_timeout_s, read_timeout_s, total_timeout_s : float
        Seconds to open a connection, between two reads, for the whole request.
    max_attempts : int
        Attempts per request, the first included.
    backoff_base_s, backoff_max_s : float
        Back-off before attempt ``n + 1`` is drawn uniformly from ``[d/2, d]`` with
        ``d = min(backoff_max_s, backoff_base_s * 2**(n - 1))``.
    max_body_mb : float
        No answer is read past this many MiB (a fetcher may pass a smaller cap per kind).
    user_agent : str
        Sent with every request so service operators can tell who is calling.
    """

    concurrency_per_host: int = 16
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 60.0
    total_timeout_s: float = 180.0
    max_attempts: int = 6
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    max_body_mb: float = 256.0
    user_agent: str = f"mantis/{__version__} (photometric-redshift pipeline)"

    def __post_init__(self) -> None:
        validate_settings(ClientSchema, asdict(self), kind="fetch client")

    @classmethod
    def from_config(cls, config: dict[str, Any], **overrides: Any) -> ClientSettings:
        """Build from the ``client`` mapping of ``configs/fetch.yaml`` plus keyword overrides.

        Raises
        ------
        ConfigError
            An unknown key (with the closest valid one), a wrong type or a value out of range.
        """
        values = {**asdict(cls()), **dict(config.get("client", {}))}
        values.update({k: v for k, v in overrides.items() if v is not None})
        checked = validate_settings(ClientSchema, values, kind="fetch client")
        return cls(**checked.model_dump(exclude_none=True))

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        ceiling = min(self.backoff_max_s, self.backoff_base_s * 2 ** (attempt - 1))
        return rng.uniform(ceiling / 2, ceiling)


@dataclass
class Reply:
    """A validated response."""

    status: int
    body: bytes
    attempts: int
    url: str


@dataclass
class ClientStats:
    """What the client did: requests, retries and bytes.

    ``requests`` and ``retries`` count per host key (the survey), ``requests_by_host`` per
    host contacted; retries are included in the request counts.
    """

    requests: Counter = field(default_factory=Counter)
    retries: Counter = field(default_factory=Counter)
    bytes_received: int = 0
    busy_seconds: float = 0.0
    requests_by_host: Counter = field(default_factory=Counter)


class RequestFailedError(FetchError):
    """A request that failed for good; ``reason`` is a short category for summaries."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class _RetryableError(Exception):
    def __init__(self, reason: str, detail: str, status: int | None = None) -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason, self.status = reason, status


class HttpClient:
    """Shared aiohttp session with per-host politeness caps, timeouts, retries and validation.

    Use as ``async with HttpClient(settings) as client: await client.request(...)``.

    Parameters
    ----------
    settings : ClientSettings
        Caps, timeouts and retry policy.
    seed : int or None
        Seed of the back-off jitter (tests); None draws from the OS.
    """

    def __init__(self, settings: ClientSettings | None = None, *, seed: int | None = None) -> None:
        self.settings = settings or ClientSettings()
        self.stats = ClientStats()
        self._rng = random.Random(seed)
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> HttpClient:
        s = self.settings
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, keepalive_timeout=30)
        timeout = aiohttp.ClientTimeout(
            total=s.total_timeout_s, connect=s.connect_timeout_s, sock_read=s.read_timeout_s
        )
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=timeout, headers={"User-Agent": s.user_agent}
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def sharing(self) -> HttpClient:
        """Return a client on these connections and per-host caps, counting its own requests.

        Several jobs in one event loop (the chunks of a prediction) then stay within one
        politeness cap per host together, while each job's statistics stay its own.
        """
        other = HttpClient(self.settings)
        other._session, other._slots, other._rng = self._session, self._slots, self._rng
        return other

    def _slot(self, host: str) -> asyncio.Semaphore:
        if host not in self._slots:
            self._slots[host] = asyncio.Semaphore(int(self.settings.concurrency_per_host))
        return self._slots[host]

    async def _attempt(
        self,
        method: str,
        url: str,
        host_key: str,
        params: dict[str, Any] | None,
        form: Callable[[], aiohttp.FormData] | None,
        cap: tuple[int, str],
    ) -> tuple[int, bytes]:
        assert self._session is not None, "HttpClient used outside 'async with'"
        host = contacted_host(url)
        async with self._slot(host):
            self.stats.requests[host_key] += 1
            self.stats.requests_by_host[host] += 1
            started = time.perf_counter()
            try:
                target, query, data = URL(url), params, form() if form else None
                for _hop in range(MAX_REDIRECTS + 1):
                    async with self._session.request(
                        method, target, params=query, data=data, allow_redirects=False
                    ) as response:
                        location = response.headers.get("Location")
                        if response.status not in REDIRECT_STATUSES or not location:
                            return response.status, await _read_capped(response, cap, url)
                        target = _same_host_redirect(response.url, location, url)
                    query = None  # the Location carries its own query
                    if response.status == 303 or (response.status in (301, 302) and data):
                        method, data = "GET", None
                    elif data is not None and form is not None:
                        data = form()  # 307 and 308 send the same body again
                raise RequestFailedError(
                    f"more than {MAX_REDIRECTS} redirects starting at {url}", "too many redirects"
                )
            except TimeoutError:
                raise _RetryableError("timeout", "no answer within the client timeouts") from None
            except aiohttp.ClientPayloadError as err:
                raise _RetryableError("truncated body", str(err)) from None
            except aiohttp.ClientError as err:
                detail = str(err) or type(err).__name__
                cause = getattr(err, "os_error", None)
                if cause is not None and str(cause) not in detail:
                    detail = f"{detail}: {cause}"
                raise _RetryableError("connection error", detail) from None
            finally:
                self.stats.busy_seconds += time.perf_counter() - started

    async def request(
        self,
        method: str,
        url: str,
        *,
        host_key: str,
        params: dict[str, Any] | None = None,
        form: Callable[[], aiohttp.FormData] | None = None,
        validate: Callable[[bytes], object] | None = None,
        no_coverage_status: int | None = None,
        no_coverage_after: int = 3,
        max_attempts: int | None = None,
        max_bytes: int | None = None,
        cap_name: str = "client.max_body_mb",
    ) -> Reply:
        """Send one request, retrying until a valid body arrives or attempts run out.

        Parameters
        ----------
        method, url : str
            HTTP method and absolute URL.
        host_key : str
            Label the statistics count under (the survey). The concurrency cap is per host
            contacted, whatever the key (see `contacted_host`).
        params : dict, optional
            Query parameters.
        form : callable, optional
            Returns a fresh `aiohttp.FormData` body for each attempt.
        validate : callable, optional
            Called with the body of a 2xx answer; raises `InvalidBodyError` to reject it (retried).
        no_coverage_status : int, optional
            A status that, when answered ``no_coverage_after`` times in a row, means the survey
            has no data there (the Legacy Survey viewer answers HTTP 500 outside its footprint).
        max_attempts : int, optional
            Overrides ``settings.max_attempts`` for this request.
        max_bytes : int, optional
            Cap on the body for this kind of answer (bytes); the client's own cap still holds.
        cap_name : str
            The setting ``max_bytes`` comes from, named when an answer exceeds it.

        Raises
        ------
        RequestFailedError
            A `FetchError` after the last attempt, with ``.reason`` (short category) and the URL;
            at once (not retried) for an answer over the cap or a redirect to another host.
        NoCoverageError
            When ``no_coverage_status`` repeats.
        """
        repeats = 0
        last: _RetryableError | None = None
        attempts = max_attempts or self.settings.max_attempts
        cap = (int(self.settings.max_body_mb * 2**20), "client.max_body_mb")
        if max_bytes is not None and max_bytes < cap[0]:
            cap = (int(max_bytes), cap_name)
        for attempt in range(1, attempts + 1):
            try:
                status, body = await self._attempt(method, url, host_key, params, form, cap)
                self.stats.bytes_received += len(body)
                if no_coverage_status is not None and status == no_coverage_status:
                    repeats += 1
                    if repeats >= no_coverage_after:
                        raise NoCoverageError(
                            f"HTTP {status} on {repeats} attempts in a row (outside the footprint)"
                        )
                else:
                    repeats = 0
                if status in RETRY_STATUSES:
                    raise _RetryableError(f"HTTP {status}", _snippet(body), status)
                if status >= 400:
                    raise RequestFailedError(
                        f"HTTP {status}: {_snippet(body)} (from {url})", f"HTTP {status}"
                    )
                if validate is not None:
                    try:
                        validate(body)
                    except InvalidBodyError as bad:
                        raise _RetryableError(bad.reason, bad.detail) from None
                return Reply(status, body, attempt, url)
            except _RetryableError as err:
                last = err
                if attempt < attempts:
                    self.stats.retries[host_key] += 1
                    await asyncio.sleep(self.settings.backoff(attempt, self._rng))
        assert last is not None
        raise RequestFailedError(
            f"{last} (gave up after {attempts} attempts at {url})", last.reason
        )


def contacted_host(url: str | URL) -> str:
    """Return the politeness key of a URL: scheme, host and port (``'http://127.0.0.1:80'``)."""
    parsed = URL(str(url))
    return f"{parsed.scheme}://{parsed.host}:{parsed.explicit_port or parsed.port}"


def _same_host_redirect(current: URL, location: str, first_url: str) -> URL:
    """Return the redirect target; `RequestFailedError` when it leaves the first host."""
    try:
        target = current.join(URL(location))
    except ValueError:
        raise RequestFailedError(
            f"unreadable redirect location {location[:200]!r} from {first_url}", "bad redirect"
        ) from None
    if contacted_host(target) != contacted_host(first_url):
        raise RequestFailedError(
            f"refused a redirect from {first_url} to another host "
            f"({contacted_host(target)}); only same-host redirects are followed",
            "redirect to another host",
        )
    return target


async def _read_capped(response: aiohttp.ClientResponse, cap: tuple[int, str], url: str) -> bytes:
    """Read the body, stopping as soon as it exceeds ``cap`` (bytes, name of the setting)."""
    limit, name = cap

    def too_large(size: str) -> RequestFailedError:
        return RequestFailedError(
            f"answer of {size} from {url} exceeds the cap of {limit / 2**20:g} MB "
            f"(fetch setting {name})",
            "answer too large",
        )

    declared = response.content_length
    if declared is not None and declared > limit:
        raise too_large(f"{declared} bytes")
    chunks, total = [], 0
    async for chunk in response.content.iter_chunked(2**16):
        total += len(chunk)
        if total > limit:
            raise too_large(f"more than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _snippet(body: bytes, n: int = 120) -> str:
    return body[:n].decode("utf-8", "replace").replace("\n", " ").strip()
