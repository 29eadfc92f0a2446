"""Seeded fault injection for the imitation survey server.

Whether a request fails, and how, is a pure function of (seed, method, path, query, body,
attempt number), so a test run replays exactly. The server counts attempts per distinct
request; with ``fail_rate < 1`` only the first `MAX_FAULTY_ATTEMPTS` attempts can fail, so a
client that retries eventually succeeds. ``fail_rate = 1`` fails every attempt (to test a
client's give-up path).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from mantis.exceptions import ConfigError
from mantis.sky._coverage import stable_uniform

__all__ = [
    "FAULT_KINDS",
    "MAX_FAULTY_ATTEMPTS",
    "FaultPlan",
    "parse_fault_kinds",
    "request_key",
    "truncate_body",
]

FAULT_KINDS: tuple[str, ...] = (
    "latency", "http500", "http503", "truncated", "html", "stall", "nan",
)  # fmt: skip
MAX_FAULTY_ATTEMPTS = 3
# kinds that only make sense for an image product (not for the ps1filenames text table)
IMAGE_ONLY_KINDS = frozenset({"nan"})


def parse_fault_kinds(text: str | Iterable[str] | None) -> tuple[str, ...]:
    """Fault kinds from ``'http500,stall'`` (or a sequence); None or ``'all'`` gives all kinds.

    Raises
    ------
    ConfigError
        If a kind is not one of `FAULT_KINDS`.
    """
    if text is None:
        return FAULT_KINDS
    items = text.split(",") if isinstance(text, str) else list(text)
    kinds = tuple(dict.fromkeys(item.strip() for item in items if item.strip()))
    if kinds == ("all",):
        return FAULT_KINDS
    unknown = [kind for kind in kinds if kind not in FAULT_KINDS]
    if unknown or not kinds:
        raise ConfigError(
            f"unknown fault kind(s) {', '.join(map(repr, unknown)) or repr(text)}; "
            f"allowed: {', '.join(FAULT_KINDS)} (comma separated) or 'all'"
        )
    return kinds


def request_key(method: str, path: str, query: Iterable[tuple[str, str]], body: bytes) -> str:
    """Identity of a request for fault decisions: the same request gives the same key."""
    canonical = "&".join(f"{k}={v}" for k, v in sorted(query))
    digest = hashlib.sha256(body).hexdigest()[:16] if body else ""
    return f"{method} {path}?{canonical} {digest}"


def truncate_body(body: bytes) -> bytes:
    """Return the first half of a body: a gzip stream or FITS file cut short mid-data."""
    return body[: max(len(body) // 2, 1)]


@dataclass
class FaultPlan:
    """Decides, per request and attempt, whether and how the server misbehaves.

    Parameters
    ----------
    seed : int
        Sky seed; part of every decision.
    fail_rate : float
        Probability in [0, 1] that an eligible attempt fails.
    kinds : tuple of str
        Fault kinds to draw from (subset of `FAULT_KINDS`).
    """

    seed: int = 0
    fail_rate: float = 0.0
    kinds: tuple[str, ...] = FAULT_KINDS
    attempts: Counter = field(default_factory=Counter)

    def __post_init__(self) -> None:
        if not 0.0 <= self.fail_rate <= 1.0:
            raise ConfigError(f"fail rate must lie in [0, 1], got {self.fail_rate!r}")
        self.kinds = parse_fault_kinds(self.kinds)

    def decide(self, key: str, *, image: bool = True) -> str | None:
        """Register one attempt of request ``key`` and return its fault kind, or None.

        Parameters
        ----------
        key : str
            `request_key` of the request.
        image : bool
            Whether the answer is an image product (the ``nan`` kind needs one).
        """
        attempt = self.attempts[key]
        self.attempts[key] += 1
        if self.fail_rate <= 0.0:
            return None
        if self.fail_rate < 1.0 and attempt >= MAX_FAULTY_ATTEMPTS:
            return None
        if stable_uniform("fault", self.seed, key, attempt) >= self.fail_rate:
            return None
        kinds = [k for k in self.kinds if image or k not in IMAGE_ONLY_KINDS]
        if not kinds:
            return None
        return kinds[int(stable_uniform("fault-kind", self.seed, key, attempt) * len(kinds))]
