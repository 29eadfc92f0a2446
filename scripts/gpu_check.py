"""Train the GPU presets for a fixed number of steps and time inference of every network.

Run through ``scripts/gpu_check.sh``. On a CUDA machine it trains ``train/gpu_convnext_t`` and
``train/gpu_resnet18`` (bf16 mixed precision, their own batch sizes) for ``--steps`` optimiser
steps on the default dataset (``runs/default/dataset.h5``; the smoke sky is fetched and built
when it is missing), then times a forward pass of every registered network on the shipped
grids. It prints samples per second as a table and writes ``gpu_check.json`` under ``--out``
(default ``$OUT`` when set). Without CUDA it says so in one line and does a CPU dry run of
two steps per preset with tiny batches in 32-bit precision, which checks the script, not the
speed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import lightning.pytorch as pl
import torch

REPO = Path(__file__).resolve().parents[1]
PRESETS = ("train/gpu_convnext_t", "train/gpu_resnet18")
DEFAULT_DATASET = REPO / "runs" / "default" / "dataset.h5"
SMOKE_DATASET = REPO / "runs" / "gpu_check" / "dataset.h5"
WARMUP_STEPS = 5  # first steps pay for cuDNN autotuning and the workers' start; not timed
DRY_RUN_STEPS = 2
DRY_RUN_BATCH = 4
DRY_RUN_PRECISION = "32-true"  # CPUs without bf16 units emulate it, many times slower


def build_smoke_dataset(out: Path) -> Path:
    """Fetch the smoke sky from the loopback imitation services and build it (resumable)."""
    from mantis.fetch import fetch_catalog
    from mantis.sky import Universe, running_server, write_catalog
    from mantis.stack import build_dataset

    out.parent.mkdir(parents=True, exist_ok=True)
    catalog = out.with_name("catalog.parquet")
    if not catalog.exists():
        write_catalog(Universe.from_config("smoke", seed=0), catalog)
    cache = out.with_name("cutouts")
    with running_server(config="smoke", seed=0) as url:
        summary = fetch_catalog(catalog, cache_dir=cache, endpoint=url, progress=False)
    if not summary.ok:
        raise SystemExit(f"gpu_check: fetching the smoke sky failed:\n{summary.format()}")
    build_dataset(catalog, cache, out, "build", progress=False)
    return out


class StepTimer(pl.Callback):
    """Wall time and samples of every training step after the warm-up."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.step_s: list[float] = []
        self.samples = 0
        self.start = self.first = self.last = 0.0

    def _sync(self, module: pl.LightningModule) -> float:
        if module.device.type == "cuda":
            torch.cuda.synchronize(module.device)
        return time.perf_counter()

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        self.start = self._sync(module)
        if trainer.global_step == self.warmup:
            self.first = self.start

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        end = self._sync(module)
        if trainer.global_step > self.warmup:  # global_step counts the step just taken
            self.step_s.append(end - self.start)
            self.samples += len(batch["z"])
            self.last = end


def train_steps(preset: str, dataset: Path, steps: int, cuda: bool) -> dict:
    """Train ``preset`` for ``steps`` steps after the warm-up; return its throughput."""
    from mantis.config import config_file
    from mantis.models import MantisCLI

    warmup = WARMUP_STEPS if cuda else 0
    with tempfile.TemporaryDirectory() as root:
        args = [f"--config={config_file(preset)}", f"--data.path={dataset}",
                f"--trainer.default_root_dir={root}"]  # fmt: skip
        if not cuda:
            args += ["--trainer.accelerator=cpu", f"--data.batch_size={DRY_RUN_BATCH}",
                     "--data.num_workers=0"]  # fmt: skip
        cli = MantisCLI(args=args, run=False)
        timer = StepTimer(warmup)
        trainer = pl.Trainer(
            accelerator="gpu" if cuda else "cpu",
            devices=1,
            precision=cli.trainer.precision if cuda else DRY_RUN_PRECISION,
            benchmark=cuda,
            max_steps=warmup + steps,
            limit_val_batches=0,
            num_sanity_val_steps=0,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            logger=False,
            callbacks=[timer],
            default_root_dir=root,
        )
        trainer.fit(cli.model, datamodule=cli.datamodule)
    wall = timer.last - timer.first
    batch = cli.datamodule.batch_size
    return {
        "name": preset,
        "kind": "train",
        "net": cli.model.hparams["net"],
        "batch": batch,
        "precision": str(cli.trainer.precision if cuda else DRY_RUN_PRECISION),
        "steps": len(timer.step_s),
        "samples_per_s": timer.samples / wall if timer.step_s else None,
        "step_median_s": statistics.median(timer.step_s) if timer.step_s else None,
    }


def _network_and_inputs(name: str, batch: int, device: str) -> tuple:
    """A registered network on the shipped grids (``configs/build.yaml``) and random inputs."""
    from mantis.config import load_settings
    from mantis.models import create_model
    from mantis.surveys import SURVEY_NAMES, bands_of

    grids = load_settings("build")["grids"]
    if name.startswith("early_"):
        groups = {"early": (18, grids["early"]["size"])}  # nine bands and their masks
        net = create_model(name, in_chans=18, size=grids["early"]["size"])
    else:
        groups = {s: (2 * len(bands_of(s)), grids[s]["size"]) for s in SURVEY_NAMES}
        net = create_model(name, in_chans={s: c for s, (c, _) in groups.items()},
                           sizes={s: size for s, (_, size) in groups.items()})  # fmt: skip
    inputs = {g: torch.randn(batch, c, size, size, device=device)
              for g, (c, size) in groups.items()}  # fmt: skip
    return net.to(device).eval(), inputs


def time_inference(name: str, batch: int, repeats: int, cuda: bool) -> dict:
    """Samples per second of one registered network's forward pass (bf16 autocast on a GPU)."""
    device = "cuda" if cuda else "cpu"
    net, inputs = _network_and_inputs(name, batch, device)
    ebv = torch.zeros(batch, 1, device=device)
    warmup = 3 if cuda else 0  # untimed passes: cuDNN picks its kernels
    seconds = []
    with torch.no_grad(), torch.autocast(device, dtype=torch.bfloat16, enabled=cuda):
        for k in range(warmup + repeats):
            start = time.perf_counter()
            net(inputs, ebv)
            if cuda:
                torch.cuda.synchronize()
            if k >= warmup:
                seconds.append(time.perf_counter() - start)
    median = statistics.median(seconds)
    return {"name": name, "kind": "inference", "net": name, "batch": batch,
            "precision": "bf16 autocast" if cuda else "32-true", "steps": repeats,
            "samples_per_s": batch / median, "step_median_s": median}  # fmt: skip


def print_table(rows: list[dict]) -> None:
    """Samples per second, one row per preset or network."""
    print(f"{'name':<26} {'kind':<10} {'batch':>6} {'precision':<14} {'samples/s':>11}")
    for row in rows:
        rate = row["samples_per_s"]
        shown = f"{rate:11.1f}" if rate is not None else f"{'–':>11}"
        print(f"{row['name']:<26} {row['kind']:<10} {row['batch']:>6} {row['precision']:<14} "
              f"{shown}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Run the check; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, default=None,
                        help=f"dataset to train on (default {DEFAULT_DATASET.relative_to(REPO)}, "
                        "else the smoke sky, built on first use)")  # fmt: skip
    parser.add_argument("--steps", type=int, default=200, help="timed training steps (GPU)")
    parser.add_argument("--batch", type=int, default=256, help="inference batch (GPU)")
    parser.add_argument("--repeats", type=int, default=20, help="timed inference passes (GPU)")
    parser.add_argument("--out", type=Path, default=os.environ.get("OUT") or None,
                        help="folder for gpu_check.json (default $OUT when set)")  # fmt: skip
    args = parser.parse_args(argv)
    from mantis.models import list_models

    cuda = torch.cuda.is_available()
    if not cuda:
        print(f"gpu_check: no CUDA device on this machine; CPU dry run of {DRY_RUN_STEPS} steps "
              "per preset, not a measurement", flush=True)  # fmt: skip
    dataset = args.dataset
    if dataset is None:
        dataset = DEFAULT_DATASET if DEFAULT_DATASET.exists() else SMOKE_DATASET
        if dataset == SMOKE_DATASET:
            print(f"gpu_check: no {DEFAULT_DATASET.relative_to(REPO)}; using the smoke sky")
            build_smoke_dataset(SMOKE_DATASET)
    if not dataset.is_file():
        print(f"gpu_check: error: dataset {str(dataset)!r} does not exist", file=sys.stderr)
        return 2
    steps = args.steps if cuda else DRY_RUN_STEPS
    rows = [train_steps(preset, dataset, steps, cuda) for preset in PRESETS]
    batch, repeats = (args.batch, args.repeats) if cuda else (2, 1)
    rows += [time_inference(name, batch, repeats, cuda) for name in list_models()]
    print_table(rows)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        report = {
            "cuda": cuda,
            "device": torch.cuda.get_device_name(0) if cuda else platform.processor() or "cpu",
            "torch": torch.__version__,
            "cuda_version": torch.version.cuda,
            "dataset": str(dataset),
            "rows": rows,
        }
        (args.out / "gpu_check.json").write_text(json.dumps(report, indent=2))
        print(f"gpu_check: wrote {args.out / 'gpu_check.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
