"""Limits and places of a `mantis serve` application, and the per-client rate limiter."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["RateLimiter", "ServeSettings"]

_MAX_CLIENTS = 10_000


@dataclass(frozen=True)
class ServeSettings:
    """What one service allows.

    Attributes
    ----------
    state_dir : Path
        Jobs, the cone-search index and scratch space live here (and only here).
    max_positions : int
        Positions in one ``/v1/predict`` request.
    max_request_bytes : int
        Body of any request other than an upload.
    max_upload_bytes : int
        Size of one uploaded catalogue.
    max_job_rows : int
        Rows of one uploaded catalogue.
    max_radius_deg : float
        Largest cone-search radius SR.
    max_cone_rows : int
        Rows in one cone-search answer (more are reported as an overflow).
    rate_per_s, burst : float, int
        Requests per second each client address may make on average, and in a burst;
        ``rate_per_s = 0`` turns the limit off.
    batch_objects : int
        Most objects of concurrent ``/v1/predict`` requests predicted together.
    """

    state_dir: Path = Path("data/serve")
    max_positions: int = 1000
    max_request_bytes: int = 4 << 20
    max_upload_bytes: int = 64 << 20
    max_job_rows: int = 200_000
    max_radius_deg: float = 1.0
    max_cone_rows: int = 10_000
    rate_per_s: float = 50.0
    burst: int = 100
    batch_objects: int = 256


class RateLimiter:
    """A token bucket per client address.

    Parameters
    ----------
    rate_per_s : float
        Tokens added per second (0: no limit).
    burst : int
        Bucket size.
    """

    def __init__(self, rate_per_s: float, burst: int) -> None:
        self.rate = rate_per_s
        self.burst = burst
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def retry_after(self, client: str) -> float:
        """Take a token for ``client``; return 0 when allowed, else seconds to wait."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic()
        with self._lock:
            if len(self._buckets) > _MAX_CLIENTS:  # forget idle clients: memory stays bounded
                idle = now - self.burst / self.rate
                self._buckets = {k: v for k, v in self._buckets.items() if v[1] > idle}
            tokens, last = self._buckets.get(client, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[client] = (tokens - 1.0, now)
                return 0.0
            self._buckets[client] = (tokens, now)
            return (1.0 - tokens) / self.rate
