"""The simulated sky: a seeded universe of galaxies and stars, rendered in the nine bands.

Importing this package is cheap; GalSim, SkyPy and the filter curves load on first use.
"""

from __future__ import annotations

from mantis.sky._universe import Universe, default_cache_dir, write_catalog

__all__ = ["Universe", "default_cache_dir", "write_catalog"]
