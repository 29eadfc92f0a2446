"""The simulated sky: a seeded universe of galaxies and stars, rendered in the nine bands.

GalSim, SkyPy and the filter curves load on first use; the server and the preview (aiohttp,
matplotlib) load when their names are first looked up.
"""

from __future__ import annotations

from typing import Any

from mantis.sky._runner import SERVER_START_TIMEOUT_S, running_server
from mantis.sky._universe import Universe, default_cache_dir, write_catalog

__all__ = [
    "SERVER_START_TIMEOUT_S",
    "ServerSettings",
    "Universe",
    "default_cache_dir",
    "draw_preview",
    "parse_fault_kinds",
    "parse_field",
    "running_server",
    "serve",
    "write_catalog",
    "write_mirror",
]

# public names whose modules are heavy, imported on first lookup
_LAZY = {
    "ServerSettings": "mantis.sky._server",
    "serve": "mantis.sky._server",
    "parse_fault_kinds": "mantis.sky._faults",
    "draw_preview": "mantis.sky._preview",
    "parse_field": "mantis.sky._mirror",
    "write_mirror": "mantis.sky._mirror",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mantis.sky' has no attribute {name!r}")
