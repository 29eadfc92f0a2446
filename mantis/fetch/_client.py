"""The one asynchronous HTTP client every survey fetcher shares.

Politeness first: each survey host gets its own cap on requests in flight (a semaphore per
host key), connections are kept alive and reused, and every request has connect, read and
total timeouts. A request is retried with exponential back-off and jitter on HTTP 5xx, 408,
429, timeouts, dropped connections and bodies that fail validation (truncated, HTML, a text
error behind HTTP 200); the back-off sleeps happen outside the host's slot so a struggling
host never holds slots idle. Client errors (other 4xx) are not retried.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

import aiohttp

from mantis import __version__
from mantis.exceptions import ConfigError, FetchError, NoCoverageError
from mantis.fetch._validate import InvalidBodyError

__all__ = ["ClientSettings", "ClientStats", "HttpClient", "Reply", "RequestFailedError"]

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


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
    user_agent: str = f"mantis/{__version__} (photometric-redshift pipeline)"

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name != "user_agent" and not (isinstance(value, int | float) and value > 0):
                raise ConfigError(
                    f"fetch setting {f.name} must be a positive number, got {value!r}"
                )
        if int(self.concurrency_per_host) != self.concurrency_per_host:
            raise ConfigError(
                f"concurrency_per_host must be a whole number, got {self.concurrency_per_host!r}"
            )

    @classmethod
    def from_config(cls, config: dict[str, Any], **overrides: Any) -> ClientSettings:
        """Build from the ``client`` mapping of ``configs/fetch.yaml`` plus keyword overrides."""
        known = {f.name for f in fields(cls)}
        values = dict(config.get("client", {}))
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(
                f"unknown fetch client setting(s) {', '.join(unknown)}; allowed: {', '.join(known)}"
            )
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

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
    """What the client did: requests sent (retries included) per host key, bytes received."""

    requests: Counter = field(default_factory=Counter)
    retries: Counter = field(default_factory=Counter)
    bytes_received: int = 0
    busy_seconds: float = 0.0


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

    def _slot(self, host_key: str) -> asyncio.Semaphore:
        if host_key not in self._slots:
            self._slots[host_key] = asyncio.Semaphore(int(self.settings.concurrency_per_host))
        return self._slots[host_key]

    async def _attempt(
        self,
        method: str,
        url: str,
        host_key: str,
        params: dict[str, Any] | None,
        form: Callable[[], aiohttp.FormData] | None,
    ) -> tuple[int, bytes]:
        assert self._session is not None, "HttpClient used outside 'async with'"
        async with self._slot(host_key):
            self.stats.requests[host_key] += 1
            started = time.perf_counter()
            try:
                async with self._session.request(
                    method, url, params=params, data=form() if form else None
                ) as response:
                    body = await response.read()
                    return response.status, body
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
    ) -> Reply:
        """Send one request, retrying until a valid body arrives or attempts run out.

        Parameters
        ----------
        method, url : str
            HTTP method and absolute URL.
        host_key : str
            Politeness key; requests sharing it share one concurrency cap.
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

        Raises
        ------
        RequestFailedError
            A `FetchError` after the last attempt, with ``.reason`` (short category) and the URL.
        NoCoverageError
            When ``no_coverage_status`` repeats.
        """
        repeats = 0
        last: _RetryableError | None = None
        attempts = max_attempts or self.settings.max_attempts
        for attempt in range(1, attempts + 1):
            try:
                status, body = await self._attempt(method, url, host_key, params, form)
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


def _snippet(body: bytes, n: int = 120) -> str:
    return body[:n].decode("utf-8", "replace").replace("\n", " ").strip()
