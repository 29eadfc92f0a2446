"""Lightning DDP with two CPU processes (gloo), launched through the `mantis train` command."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import pytest
import torch

from mantis.models import load_predictor


@pytest.mark.slow  # two interpreters start torch and lightning: over a minute on 2 cores
def test_two_process_ddp_fit_shards_the_data(tmp_path, synthetic_h5):
    run_dir = tmp_path / "ddp"
    command = [
        sys.executable, "-m", "mantis", "train", "fit",
        "--config", "train/smoke_early",
        "--data.path", str(synthetic_h5),
        "--data.batch_size", "8",
        "--trainer.default_root_dir", str(run_dir),
        "--trainer.strategy", "ddp",
        "--trainer.devices", "2",
        "--trainer.accelerator", "cpu",
        "--trainer.max_epochs", "1",
        "--trainer.enable_progress_bar", "false",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # two ranks share two cores
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    # 38 training objects: 19 per rank, two full batches of 8 each, so two optimiser steps
    # (a single process would take four)
    assert last["global_step"] == 2
    with (run_dir / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["0"]  # written once, by rank zero
    assert float(rows[0]["val/nmad"]) >= 0
    probs = load_predictor(run_dir / "checkpoints" / "best.ckpt").predict_dataset(synthetic_h5)
    assert abs(probs.sum(1) - 1).max() < 1e-12
