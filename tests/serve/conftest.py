"""Fixtures: the service with the stand-in network (fast) and a checkpoint trained on the sky."""

from __future__ import annotations

import pandas as pd
import pytest

# Small grids keep the build and the network fast (as in tests/predict/test_integration.py).
BUILD_OVERRIDES = {
    "grids": {
        "galex": {"pixel_scale": 1.5, "size": 16},
        "ps1": {"pixel_scale": 0.25, "size": 64},
        "unwise": {"pixel_scale": 2.75, "size": 8},
        "early": {"pixel_scale": 1.0, "size": 16},
    },
    "split": {"nside": 4096, "fractions": {"train": 0.7, "val": 0.15, "test": 0.15}, "seed": 0},
}


def stand_in_app(state_dir, **limits):
    from mantis.predict.testing import StandInPredictor, StandInSource
    from mantis.serve import PredictionEngine, ServeSettings, create_app

    engine = PredictionEngine(StandInPredictor(), StandInSource(), batch_size=64)
    return create_app(engine, ServeSettings(state_dir=state_dir, **limits))


@pytest.fixture
def make_app():
    """Build the stand-in app with a state folder and limits."""
    return stand_in_app


@pytest.fixture
def service(tmp_path):
    """(base URL, state folder) of the app with the stand-in network, served in a thread."""
    from mantis.serve.testing import serving_in_thread

    state = tmp_path / "state"
    with serving_in_thread(stand_in_app(state)) as url:
        yield url, state


@pytest.fixture(scope="module")
def trained(sky_server, tmp_path_factory):
    """(spec catalogue, checkpoint path) of the smoke model trained on the served `test` sky."""
    from mantis.config import load_config
    from mantis.fetch import fetch_catalog
    from mantis.models import train_model
    from mantis.sky import Universe
    from mantis.stack import build_dataset

    root = tmp_path_factory.mktemp("serve-trained")
    spec = Universe.from_config("test", seed=0).spec_catalog().reset_index(drop=True)
    summary = fetch_catalog(spec, cache_dir=root / "cache", endpoint=sky_server, progress=False)
    assert summary.ok, summary.format()
    build_dataset(spec, root / "cache", root / "train.h5",
                  {**load_config("build"), **BUILD_OVERRIDES}, progress=False)  # fmt: skip
    checkpoint = train_model("configs/train/smoke_early.yaml", root / "train.h5", root / "run",
                             overrides={"trainer.max_epochs": 1})  # fmt: skip
    return pd.DataFrame(spec), checkpoint
