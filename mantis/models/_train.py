"""Training through LightningCLI: the command line and a resumable Python entry point."""

from __future__ import annotations

import csv
import json
import os
import warnings
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import yaml
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from mantis.config import config_file
from mantis.data import MantisDataModule
from mantis.exceptions import ConfigError
from mantis.models._module import RedshiftModule
from mantis.models._refit import HeadRefit

__all__ = ["EpochMetricsCSV", "MantisCLI", "train_model"]

FINISHED = "finished.json"  # written once fit completes; a rerun then returns at once

# Known third-party noise, silenced only while the CLI runs: Lightning 2.6 still builds
# torch's deprecated LeafSpec and calls jsonargparse APIs deprecated in 4.49; it warns when
# `args` is given from a process whose own command line (``mantis train ...``) has arguments,
# and when checkpoints already exist, which is exactly how a resumed run looks.
THIRD_PARTY_WARNINGS = (
    (r"Checkpoint directory .* exists and is not empty", UserWarning, ""),
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning, ""),
    ("", DeprecationWarning, r"lightning\.pytorch\.cli"),
    (r"LightningCLI's args parameter is intended to run from within Python", UserWarning, ""),
)


class EpochMetricsCSV(pl.Callback):
    """Append one row of epoch metrics to ``<default_root_dir>/metrics.csv``.

    Unlike Lightning's CSVLogger, a resumed run keeps the rows of the epochs before it; a row
    for an epoch already present (an epoch repeated after a crash) replaces the old one.
    """

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero or trainer.sanity_checking:
            return
        row = {"epoch": trainer.current_epoch, "step": trainer.global_step}
        row |= {k: float(v) for k, v in sorted(trainer.callback_metrics.items())}
        path = Path(trainer.default_root_dir) / "metrics.csv"
        rows = []
        if path.is_file():
            with path.open(newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["epoch"]) != row["epoch"]]
        rows.append(row)
        fields = list(dict.fromkeys(k for r in rows for k in r))
        tmp = path.with_name("metrics.csv.tmp")
        with tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
        tmp.replace(path)


class MantisCLI(LightningCLI):
    """LightningCLI for `RedshiftModule` + `MantisDataModule` with mantis's run layout.

    A run folder (``--trainer.default_root_dir``) receives ``config.yaml`` (the resolved
    configuration), ``metrics.csv`` and ``checkpoints/{best,last}.ckpt``; the grid is set once
    on the model and copied to the data module; the data's description (bands, grids,
    channels) is handed to the model when both are built.
    """

    def __init__(self, args: list[str] | None = None, **kwargs: Any) -> None:
        best = ModelCheckpoint(
            filename="best",
            monitor="val/loss",
            mode="min",
            save_last=True,
            enable_version_counter=False,
        )
        with warnings.catch_warnings():
            for message, category, module in THIRD_PARTY_WARNINGS:
                warnings.filterwarnings("ignore", message, category, module)
            super().__init__(
                RedshiftModule,
                MantisDataModule,
                args=args,
                seed_everything_default=0,
                save_config_kwargs={"overwrite": True},
                trainer_defaults={
                    "callbacks": [best, EpochMetricsCSV(), HeadRefit()],
                    "deterministic": True,
                    "logger": False,
                },
                **kwargs,
            )

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        for key in ("z_min", "z_max", "n_z"):
            parser.link_arguments(f"model.{key}", f"data.{key}")
        parser.link_arguments("data.spec", "model.data_spec", apply_on="instantiate")


def _override_args(overrides: dict[str, Any] | None) -> list[str]:
    args: list[str] = []
    for key, value in (overrides or {}).items():
        text = value if isinstance(value, str) else yaml.safe_dump(value, default_flow_style=True)
        args.append(f"--{key}={text.strip()}")
    return args


def train_model(
    config_path: str | os.PathLike,
    dataset_path: str | os.PathLike,
    run_dir: str | os.PathLike,
    *,
    overrides: dict[str, Any] | None = None,
) -> Path:
    """Train one model and return its best checkpoint; resume or skip work already done.

    Parameters
    ----------
    config_path : str or path-like
        A LightningCLI YAML file, or a shipped name such as ``'train/early'``.
    dataset_path : str or path-like
        The HDF5 dataset.
    run_dir : str or path-like
        Run folder; receives ``config.yaml``, ``metrics.csv``, ``checkpoints/``.
    overrides : dict, optional
        Dotted config keys to values, e.g. ``{'trainer.max_epochs': 3}``.

    Returns
    -------
    Path
        ``run_dir/checkpoints/best.ckpt``. If the run already finished, returned at once; if
        it was interrupted, training continues from ``last.ckpt``.
    """
    try:
        config_path = config_file(config_path)
    except ConfigError:
        raise ConfigError(
            f"training config {os.fspath(config_path)!r} does not exist (as a path or shipped)"
        ) from None
    run_dir = Path(run_dir)
    finished = run_dir / FINISHED
    if finished.is_file():
        best = Path(json.loads(finished.read_text())["best"])
        if best.is_file():
            return best
    run_dir.mkdir(parents=True, exist_ok=True)
    args = [
        "fit",
        f"--config={config_path}",
        f"--data.path={dataset_path}",
        f"--trainer.default_root_dir={run_dir}",
        *_override_args(overrides),
    ]
    last = run_dir / "checkpoints" / "last.ckpt"
    if last.is_file():
        args.append(f"--ckpt_path={last}")
    cli = MantisCLI(args=args)
    trainer = cli.trainer
    if trainer.interrupted or not trainer.state.finished:
        raise ConfigError(f"training in {str(run_dir)!r} did not finish; rerun to resume")
    best = Path(trainer.checkpoint_callback.best_model_path or last).resolve()
    from mantis.explain import ensure_shift_reference

    ensure_shift_reference(best, dataset_path)  # embeddings for the per-object shift score
    tmp = finished.with_name(FINISHED + ".tmp")
    tmp.write_text(json.dumps({"best": str(best), "epochs": trainer.current_epoch}))
    tmp.replace(finished)
    return best
