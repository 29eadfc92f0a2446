"""The whole chain of `make train` on the smoke sky (what `make smoke` runs)."""

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from mantis.config import load_config
from mantis.pipeline import run_pipeline

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    config = load_config("smoke")  # the shipped file; its models are shipped names
    config["paths"] = {"runs": str(root / "runs"), "cache": str(root / "cutouts")}
    config_path = root / "smoke.yaml"
    config_path.write_text(yaml.safe_dump(config))
    results = run_pipeline(config_path)
    return config_path, root / "runs" / "smoke", results


def test_smoke_pipeline_leaves_a_complete_run(smoke_run):
    _, run_dir, results = smoke_run
    assert set(results) == {"early", "late"}
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for model in ("early", "late"):
        assert (run_dir / model / "checkpoints" / "best.ckpt").is_file()
        scores = metrics[model]
        nmad = scores.get("calibrated", scores)["nmad"]
        assert np.isfinite(nmad) and nmad > 0
        assert "galex" in scores["without"]
    summary = (run_dir / "summary.md").read_text()
    assert "early fusion" in summary and "late fusion" in summary


def test_second_run_reuses_everything(smoke_run):
    config_path, run_dir, _ = smoke_run
    epochs_logged = (run_dir / "early" / "metrics.csv").read_text()
    finished = (run_dir / "early" / "finished.json").stat().st_mtime_ns
    run_pipeline(config_path)
    steps = json.loads((run_dir / "steps.json").read_text())
    assert steps["fetch"]["requests"] == 0  # every cutout came from the cache
    assert steps["fetch"]["products_skipped"] > 0
    assert steps["build"]["built"] == 0  # the dataset was complete
    # not retrained: no epoch added to the log, the finished marker untouched
    assert (run_dir / "early" / "metrics.csv").read_text() == epochs_logged
    assert (run_dir / "early" / "finished.json").stat().st_mtime_ns == finished
