"""`scripts/gpu_check.sh` on a machine without CUDA: one line saying so, then a CPU dry run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "gpu_check.sh"


def _run(*args: str, out: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OUT": str(out), "PYTHON": sys.executable}
    return subprocess.run(
        ["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=600
    )


def test_a_missing_dataset_is_refused_after_the_cuda_line(tmp_path):
    done = _run("--dataset", str(tmp_path / "absent.h5"), out=tmp_path / "out")
    assert done.returncode == 2
    assert done.stdout.splitlines()[0].startswith("gpu_check: no CUDA device on this machine")
    assert "absent.h5" in done.stderr and "does not exist" in done.stderr
    assert not (tmp_path / "out" / "gpu_check.json").exists()


@pytest.mark.slow  # trains two presets for two steps and runs every network once: about a minute
def test_cpu_dry_run_trains_the_presets_and_times_every_network(tmp_path):
    from mantis.data.testing import write_synthetic_dataset
    from mantis.models import list_models

    dataset = write_synthetic_dataset(tmp_path / "grid32.h5", 24, seed=0, sizes={"early": 32})
    done = _run("--dataset", str(dataset), out=tmp_path / "out")
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert lines[0].startswith("gpu_check: no CUDA device on this machine")
    report = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert report["cuda"] is False
    trained = {r["name"]: r for r in report["rows"] if r["kind"] == "train"}
    assert set(trained) == {"train/gpu_convnext_t", "train/gpu_resnet18"}
    assert all(r["steps"] == 2 and r["samples_per_s"] > 0 for r in trained.values())
    timed = {r["name"]: r for r in report["rows"] if r["kind"] == "inference"}
    assert set(timed) == set(list_models())
    assert all(r["samples_per_s"] > 0 for r in timed.values())
    for name in [*trained, *timed]:  # the printed table has a row for each
        assert any(line.startswith(name + " ") for line in lines)
