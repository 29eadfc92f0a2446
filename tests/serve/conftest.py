"""Fixtures: the service with the stand-in network (fast) and a checkpoint trained on the sky."""

from __future__ import annotations

import pandas as pd
import pytest


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
    from mantis.serve.testing import train_small_checkpoint

    spec, checkpoint = train_small_checkpoint(tmp_path_factory.mktemp("serve-trained"), sky_server)
    return pd.DataFrame(spec), checkpoint
