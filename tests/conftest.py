"""Shared fixtures: the imitation sky server on a free loopback port."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# populations and cutouts of the test suite stay in the repository's data/ (as `make` does)
os.environ.setdefault("MANTIS_CACHE_DIR", str(Path(__file__).resolve().parents[1] / "data"))


@pytest.fixture(scope="session")
def sky_server():
    """Base URL of a fault-free `mantis sky serve` on 127.0.0.1 (one per test session)."""
    from mantis.sky.testing import running_server

    with running_server(seed=0) as base_url:
        yield base_url
