"""Fixtures of the stack tests; the product builders live in stack_products.py."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest


@pytest.fixture
def small_catalog():
    rng = np.random.default_rng(3)
    n = 7
    return pd.DataFrame(
        {
            "id": [f"obj{k:03d}" for k in range(n)],
            "ra": 150.0 + rng.uniform(0, 0.5, n),
            "dec": 2.0 + rng.uniform(0, 0.5, n),
            "z": rng.uniform(0.05, 1.0, n),
            "mass": rng.normal(10, 1, n),
        }
    )


@pytest.fixture
def test_config():
    """The shipped build config with small chunks so that resume is exercised."""
    from mantis.stack._build import resolve_build_config

    cfg = resolve_build_config("build")
    cfg["chunk_objects"] = 3
    return cfg
