"""`scripts/bench_learning.py`: where the network's curve overtakes a baseline's, bad input."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench_learning.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_learning", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_overtaking_size_interpolates_in_log2_size_where_the_lead_lasts(bench):
    n = [1000, 2000, 4000, 8000]
    # behind by 0.01 at 2000, ahead by 0.01 at 4000: the crossing is half way in log2, 2000√2
    assert bench.overtaking_size(n, [0.09, 0.07, 0.05, 0.04], [0.06, 0.06, 0.06, 0.06]) == (
        pytest.approx(2000 * 2**0.5)
    )
    # ahead at 1000 but behind at 2000: only the last lasting lead counts
    assert bench.overtaking_size(n, [0.05, 0.07, 0.05, 0.04], [0.06] * 4) == pytest.approx(
        2000 * 2**0.5
    )
    assert bench.overtaking_size(n, [0.05, 0.05, 0.05, 0.05], [0.06] * 4) == 1000
    assert bench.overtaking_size(n, [0.05, 0.05, 0.05, 0.07], [0.06] * 4) is None
    assert bench.overtaking_size([], [], []) is None  # no network trained at any size yet


def _bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True)


def test_a_run_without_a_dataset_is_one_line_and_status_2(tmp_path):
    done = _bench("--run", str(tmp_path / "nothing"))
    assert done.returncode == 2
    assert "no dataset.h5 there" in done.stderr and "Traceback" not in done.stderr


def test_a_missing_train_config_is_one_line_and_status_2(tmp_path):
    done = _bench("--train-config", str(tmp_path / "early.yaml"))
    assert done.returncode == 2
    assert f"--train-config {tmp_path / 'early.yaml'}: no such YAML file" in done.stderr
    assert "Traceback" not in done.stderr
