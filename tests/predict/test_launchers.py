"""Prediction under cluster launchers: torchrun and SLURM environment variables."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import mantis
from mantis.predict import PredictionError, launcher_rank, predict_catalog
from mantis.predict.testing import StandInPredictor, StandInSource

_JOB = """
import sys
from mantis.predict import predict_catalog
from mantis.predict.testing import StandInPredictor, StandInSource

summary = predict_catalog(sys.argv[1], sys.argv[2], predictor=StandInPredictor(),
                          source=StandInSource(), batch_size=40, progress=False)
print("merged" if summary.merged else "parts", summary.n_predicted)
"""


def test_torchrun_variables_win_over_slurm():
    env = {"RANK": "1", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "SLURM_PROCID": "0",
           "SLURM_NTASKS": "2"}  # fmt: skip
    got = launcher_rank(env)
    assert (got.rank, got.world, got.local_rank, got.launcher) == (1, 4, 1, "torchrun")


def test_slurm_variables_give_the_rank():
    got = launcher_rank({"SLURM_PROCID": "3", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1"})
    assert (got.rank, got.world, got.local_rank, got.launcher) == (3, 8, 1, "slurm")


def test_no_launcher_or_a_world_of_one_is_a_plain_run():
    assert launcher_rank({}) is None
    assert launcher_rank({"RANK": "0", "WORLD_SIZE": "1"}) is None


@pytest.mark.parametrize(
    ("env", "named"),
    [({"RANK": "2", "WORLD_SIZE": "2"}, "RANK=2"), ({"RANK": "x", "WORLD_SIZE": "2"}, "RANK='x'")],
)
def test_bad_launcher_variables_are_named(env, named):
    with pytest.raises(PredictionError, match=named):
        launcher_rank(env)


def test_devices_under_a_launcher_is_refused(catalog, tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(PredictionError, match="devices=2 under torchrun"):
        predict_catalog(catalog, tmp_path / "p.parquet", predictor=StandInPredictor(),
                        source=StandInSource(), devices=2, progress=False)  # fmt: skip


def test_missing_master_address_is_named(catalog, tmp_path, monkeypatch):
    for name in ("MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SLURM_PROCID", "0")
    monkeypatch.setenv("SLURM_NTASKS", "2")
    with pytest.raises(PredictionError, match="MASTER_ADDR and MASTER_PORT not set"):
        predict_catalog(catalog, tmp_path / "p.parquet", predictor=StandInPredictor(),
                        source=StandInSource(), progress=False)  # fmt: skip


def test_torchrun_two_ranks_equal_one_process_byte_for_byte(catalog, tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        torchrun = shutil.which("torchrun")
    job = tmp_path / "job.py"
    job.write_text(_JOB)
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "SLURM_PROCID")}
    # the ranks import this checkout of mantis, whatever the interpreter's default is
    here = str(Path(mantis.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [here, env.get("PYTHONPATH")]))
    done = subprocess.run(
        [str(torchrun), "--nnodes", "1", "--nproc_per_node", "2", "--rdzv_backend", "c10d",
         "--rdzv_endpoint", "127.0.0.1:0", str(job), str(catalog), str(tmp_path / "two.parquet")],
        capture_output=True, text=True, env=env, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    said = done.stdout.splitlines()
    lines = sorted(line for line in said if line.startswith(("merged", "parts")))
    # 300 rows in chunks of 40: rank 1 takes chunks 1, 3, 5 (140 rows); rank 0 reports the
    # whole run it merged
    assert lines == ["merged 300", "parts 140"]
    predict_catalog(catalog, tmp_path / "one.parquet", predictor=StandInPredictor(),
                    source=StandInSource(), batch_size=40, progress=False)  # fmt: skip
    assert not (tmp_path / "two.parquet.parts").exists()
    assert (tmp_path / "one.parquet").read_bytes() == (tmp_path / "two.parquet").read_bytes()
