"""Errors and warnings raised by mantis."""

from __future__ import annotations

__all__ = [
    "CatalogError",
    "ConfigError",
    "DensityError",
    "FetchError",
    "MantisError",
    "MantisWarning",
    "NoCoverageError",
]


class MantisError(Exception):
    """Base class of every error mantis raises on purpose."""


class ConfigError(MantisError):
    """A configuration value is missing or not allowed."""


class CatalogError(MantisError):
    """A user catalogue is unreadable or has invalid rows."""


class DensityError(MantisError, ValueError):
    """Densities, redshifts or settings that cannot be scored, summarised or transformed."""


class FetchError(MantisError):
    """A survey service failed after every retry."""


class NoCoverageError(MantisError):
    """The survey has no data at the requested position (not a failure)."""


class MantisWarning(UserWarning):
    """Base class of every warning mantis emits."""
