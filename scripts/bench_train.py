"""Training samples/s of the full Lightning loop over the real DataModule against the same loop
over batches already in memory (the network alone), for the early and late default networks.

Three loops per network, alternated in rounds in this one process so that a shared machine
slows them alike: ``network`` (Lightning over a list of prepared batches), ``loop`` (the
`MantisDataModule` as training uses it), ``per-sample`` (the earlier data path, rebuilt here
from its public parts: `H5Dataset` reading each random batch from the file, `RandomDihedral`
per sample, default collation, one worker). Rates are steady state: the first batch of each run
is left out. The dataset is a synthetic one with the store's layout (``mantis build``'s default
grids, 64-object LZF chunks) unless ``--dataset`` names a real one.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader

from mantis.config import load_config
from mantis.data import H5Dataset, MantisDataModule, RandomDihedral, image_groups
from mantis.data.testing import write_synthetic_dataset
from mantis.models import RedshiftModule

RESULTS = Path(__file__).resolve().parent.parent / "bench" / "results" / "train.json"
LOOPS = ("network", "loop", "loop-1-worker", "per-sample", "batches", "per-sample-batches")


class PerSampleData(MantisDataModule):
    """The earlier training loader: per-sample file reads, transform and collation."""

    def train_dataloader(self) -> DataLoader:
        self.setup()
        dataset = H5Dataset(
            self.path, self.rows["train"], image_groups(self.spec), transform=RandomDihedral()
        )
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=True,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            drop_last=True,
        )


class SteadyRate(pl.Callback):
    """Samples/s from the end of the first batch to the end of the last."""

    def __init__(self) -> None:
        self.samples, self.start, self.stop = 0, 0.0, 0.0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        now = time.perf_counter()
        if batch_idx == 0:
            self.start = now
        else:
            self.samples += len(batch["z"])
            self.stop = now

    @property
    def rate(self) -> float:
        return self.samples / (self.stop - self.start)


def batch_rate(loader: DataLoader, n_batches: int) -> float:
    """Samples/s of a loader alone (no training), first batch left out."""
    batches = iter(loader)
    next(batches)
    start, samples = time.perf_counter(), 0
    for _, batch in zip(range(n_batches - 1), batches, strict=False):
        samples += len(batch["z"])
    return samples / (time.perf_counter() - start)


def fit_rate(module: RedshiftModule, n_batches: int, **fit_kwargs) -> float:
    rate = SteadyRate()
    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=1,
        limit_train_batches=n_batches,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        deterministic=True,  # as `mantis train` runs
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[rate],
    )
    trainer.fit(module, **fit_kwargs)
    return rate.rate


def ratios(rates: list[float], reference: list[float]) -> list[float]:
    """Per-round ratios: the two loops of a round ran under the same load."""
    return [a / b for a, b in zip(rates, reference, strict=True)]


def bench_net(path: Path, fusion: str, args: argparse.Namespace) -> dict:
    model_config = load_config(f"train/{fusion}")["model"]
    data = MantisDataModule(str(path), fusion=fusion, batch_size=args.batch, num_workers=0)
    module = RedshiftModule(
        data.spec,
        net=model_config["net"],
        label_sigma=model_config["label_sigma"],
        modality_dropout=model_config["modality_dropout"],
    )
    for group, sigma in data.noise_sigma().items():
        module.stretch[group].set_noise(sigma)  # fitted once, so no loop refits it
    start = time.perf_counter()
    loader = data.train_dataloader()  # reads the training split into memory
    setup_s = time.perf_counter() - start
    held = [batch for _, batch in zip(range(args.batches), loader, strict=False)]
    data.teardown()
    prepared = DataLoader(held, batch_size=None, collate_fn=lambda batch: batch)

    def data(data_class: type[MantisDataModule], workers: int) -> MantisDataModule:
        return data_class(str(path), fusion=fusion, batch_size=args.batch, num_workers=workers)

    def through(data_class: type[MantisDataModule], workers: int) -> float:
        return fit_rate(module, args.batches, datamodule=data(data_class, workers))

    def alone(data_class: type[MantisDataModule]) -> float:
        source = data(data_class, 0)
        rate = batch_rate(source.train_dataloader(), args.batches)
        source.teardown()
        return rate

    loops = {
        "network": lambda: fit_rate(module, args.batches, train_dataloaders=prepared),
        "loop": lambda: through(MantisDataModule, 0),
        "loop-1-worker": lambda: through(MantisDataModule, 1),
        "per-sample": lambda: through(PerSampleData, 1),  # the earlier shipped configs: 1
        "batches": lambda: alone(MantisDataModule),  # the data path alone, in process
        "per-sample-batches": lambda: alone(PerSampleData),
    }
    rates: dict[str, list[float]] = {name: [] for name in LOOPS}
    for round_ in range(args.rounds):
        for name in LOOPS if round_ % 2 == 0 else LOOPS[::-1]:
            rates[name].append(loops[name]())
            print(f"  {module.hparams['net']} round {round_} {name}: {rates[name][-1]:.1f}/s")
    medians = {name: statistics.median(values) for name, values in rates.items()}
    return {
        "net": module.hparams["net"],
        "rates": rates,
        "median": medians,
        "over_network": {name: ratios(rates[name], rates["network"]) for name in LOOPS[1:]},
        "load_train_split_s": setup_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", type=Path, help="an existing dataset (default: synthetic)")
    parser.add_argument("--objects", type=int, default=2000, help="synthetic dataset size")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--batches", type=int, default=12, help="batches per timed run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--nets", nargs="+", default=["early", "late"])
    args = parser.parse_args()
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # one banner per run
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*isinstance.treespec, LeafSpec.*")
    pl.seed_everything(0, verbose=False)
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        path = args.dataset
        if path is None:
            sizes = {g: grid["size"] for g, grid in load_config("build")["grids"].items()}
            path = write_synthetic_dataset(
                Path(tmp) / "bench.h5",
                args.objects,
                sizes=sizes,
                split_fractions=(0.8, 0.1, 0.1),
                chunk_objects=64,
                compression="lzf",
            )
        results = [bench_net(path, fusion, args) for fusion in args.nets]

    print(f"\n{'net':12s} {'loop':20s} {'samples/s':>10s} {'x network':>10s}")
    for r in results:
        for name in LOOPS:
            ratio = statistics.median(r["over_network"][name]) if name != "network" else 1.0
            print(f"{r['net']:12s} {name:20s} {r['median'][name]:10.1f} {ratio:10.2f}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "threads": torch.get_num_threads(),
        "dataset": str(args.dataset) if args.dataset else f"synthetic, {args.objects} objects",
        "batch": args.batch,
        "batches_per_run": args.batches,
        "rounds": args.rounds,
        "results": results,
    }
    tmp_file = RESULTS.with_name(RESULTS.name + ".tmp")
    tmp_file.write_text(json.dumps(payload, indent=2, default=float))
    tmp_file.replace(RESULTS)
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
