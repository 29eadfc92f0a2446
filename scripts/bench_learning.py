"""Learning curve of the early-fusion default against the photometric baselines.

Trains the early-fusion default (`mantis/configs/train/early.yaml`, as it stands in this tree;
``--train-config`` names another, e.g. an earlier commit's) on nested, seeded random subsets of
a run's training split -- 1/2, 1/4, ... of it (``--halvings``, default 4: five sizes); the whole
split is the run's own early model (``<run>/early``) when its pipeline trained that with a
config of the same content, else a model trained here. Each model is recalibrated on the
validation split and scored on the test split. The kNN baseline is fitted on exactly the same
training galaxies (`MantisDataModule` picks them, as in training) and the template fit, which
learns nothing, is run once; both on the aperture photometry `mantis evaluate` uses, scored on
the same test galaxies. ``--dropout-comparison`` also trains the full-size model without
modality dropout and scores both with GALEX or unWISE withheld; ``--only-trained`` trains
nothing and scores the networks already trained (the baselines at every size). Models already
trained are reused (refused when this script trained them with a config of other content).
Writes ``bench/results/learning.json`` and ``bench/results/learning.png``.

Usage: ``python scripts/bench_learning.py [--run runs/default] [--halvings 4]
[--train-config train/early] [--dropout-comparison]``; the large sky: ``mantis pipeline
--config large``, then ``python scripts/bench_learning.py --run runs/large``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from mantis.zgrid import ZGrid

# the heavy modules (torch, Lightning, matplotlib) are imported where they are used, so that
# the arguments are checked at once

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
DEFAULT_TRAIN_CONFIG = "train/early"
KEYS = ("nmad", "outlier_rate_015", "crps", "bias_median")
ESTIMATORS = ("early fusion", "kNN", "template fit")


def _flat(result: dict) -> dict:
    """The headline numbers of one `evaluate_densities` result (as `mantis evaluate` keeps)."""
    flat = {**result["point"][result["point_estimator"]], **result["density"]}
    return {k: float(flat[k]) for k in KEYS}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _pipeline_trained_it(run: Path, train_config: Path) -> bool:
    """Whether the run's own early model was trained with a config of the curve's content."""
    from mantis.config import config_file, load_yaml
    from mantis.exceptions import ConfigError

    try:
        early = load_yaml(run / "pipeline.yaml")["models"]["early"]
        return _sha256(config_file(early)) == _sha256(train_config)
    except (ConfigError, KeyError, TypeError):  # no pipeline file or early model
        return False


def _model_dir(run: Path, train_config: Path, fraction: float, n_train: int) -> Path:
    if fraction == 1.0 and _pipeline_trained_it(run, train_config):
        return run / "early"
    return run / f"early_train{n_train}"


def _train(
    run: Path, dataset: Path, train_config: Path, fraction: float, n_train: int
) -> tuple[Path, float | None]:
    """Train (or reuse) one model; wall seconds of its training, None when not known."""
    from mantis.models import train_model
    from mantis.models._train import FINISHED

    folder = _model_dir(run, train_config, fraction, n_train)
    record = folder / "bench_train_seconds.json"
    sha = _sha256(train_config)
    trained_with = (
        json.loads(record.read_text()).get("train_config_sha256") if record.exists() else None
    )
    if trained_with not in (None, sha):  # a model of another config must not join this curve
        print(
            f"{folder} was trained with a config of sha256 {trained_with}, not {sha} "
            f"({train_config}); move it away or pass that config as --train-config",
            file=sys.stderr,
        )
        raise SystemExit(2)
    overrides = {} if fraction == 1.0 else {"data.train_fraction": fraction}
    trained_before = (folder / FINISHED).is_file()
    start = time.perf_counter()
    checkpoint = train_model(train_config, dataset, folder, overrides=overrides)
    if not trained_before and not record.exists():
        seconds = round(time.perf_counter() - start, 1)
        record.write_text(json.dumps({"seconds": seconds, "train_config_sha256": sha}))
    if record.exists():
        return checkpoint, json.loads(record.read_text())["seconds"]
    timings = run / "timings.json"  # the pipeline trained the full-size model
    if folder == run / "early" and timings.exists():
        return checkpoint, json.loads(timings.read_text()).get("train early")
    return checkpoint, None


def _score_network(checkpoint: Path, dataset: Path, out: Path) -> dict:
    from mantis.evaluate import calibrate_run, evaluate_run

    calibrate_run(checkpoint, dataset)  # every size recalibrated alike, on the validation split
    metrics = evaluate_run(
        checkpoint, dataset, out, split="test", baselines=False, plots=False, progress=False
    )
    return {k: float(metrics["calibrated"][k]) for k in KEYS}


class _Baselines:
    """The photometric baselines on one dataset's test split, fitted on chosen training rows."""

    def __init__(self, dataset: Path, cache: Path, zgrid: ZGrid) -> None:
        import h5py

        from mantis.evaluate._baselines import template_fit
        from mantis.evaluate._photometry import dataset_photometry
        from mantis.surveys import BANDS

        if not cache.exists():  # the photometry of every object, measured once per dataset
            phot = dataset_photometry(dataset, progress=False)
            names = [b.name for b in BANDS]
            np.savez(
                cache,
                flux=phot[[f"flux_{n}" for n in names]].to_numpy(),
                flux_err=phot[[f"flux_err_{n}" for n in names]].to_numpy(),
            )
        stored = np.load(cache)
        self.flux, self.flux_err = stored["flux"], stored["flux_err"]
        with h5py.File(dataset, "r") as h5:
            self.z = h5["catalog/z"][:].astype(float)
            split = h5["catalog/split"][:].astype(str)
        self.test = np.flatnonzero((split == "test") & np.isfinite(self.z))  # as evaluate_run
        self.zgrid = zgrid
        self.template = self._score(
            template_fit(self.flux[self.test], self.flux_err[self.test], zgrid)
        )

    def _score(self, probs: np.ndarray) -> dict:
        from mantis.evaluate import evaluate_densities

        n_slices = int(np.clip(self.test.size // 100, 2, 8))
        return _flat(evaluate_densities(probs, self.z[self.test], self.zgrid, n_slices=n_slices))

    def knn(self, train_rows: np.ndarray) -> dict:
        from mantis.evaluate._baselines import TabularBaseline

        model = TabularBaseline(self.zgrid).fit(
            self.flux[train_rows], self.flux_err[train_rows], self.z[train_rows]
        )
        return self._score(model.predict(self.flux[self.test]))


def _grid(dataset: Path) -> ZGrid:
    """The redshift grid of the training data (that of every shipped network)."""
    from mantis.data import MantisDataModule

    return MantisDataModule(str(dataset)).zgrid


def _training_rows(dataset: Path, fraction: float) -> np.ndarray:
    """The training galaxies of one fraction, picked exactly as training picks them."""
    from mantis.data import MantisDataModule

    module = MantisDataModule(str(dataset), train_fraction=fraction)
    module.setup()
    return module.rows["train"]


def overtaking_size(n: list[int], network: list[float], other: list[float]) -> float | None:
    """Training size where the network's score falls below another's and stays there.

    Interpolated linearly in log2(size) between the two sizes that bracket the crossing;
    the smallest size when the network is ahead everywhere, None when it never stays ahead
    (or no size is scored).
    """
    ahead = np.asarray(network) < np.asarray(other)
    if ahead.size == 0 or not ahead[-1]:  # no network scored yet, or behind at the largest
        return None
    first = int(len(ahead) - np.argmin(ahead[::-1])) if not ahead.all() else 0
    if first == 0:
        return float(n[0])
    lo, hi = first - 1, first
    gap_lo, gap_hi = network[lo] - other[lo], network[hi] - other[hi]
    t = gap_lo / (gap_lo - gap_hi)
    return float(2 ** (np.log2(n[lo]) + t * (np.log2(n[hi]) - np.log2(n[lo]))))


def _dropout_comparison(run: Path, dataset: Path, train_config: Path, full: Path) -> dict:
    from mantis.evaluate import evaluate_ablations
    from mantis.models import train_model

    no_dropout = train_model(
        train_config, dataset, run / "early_no_dropout", overrides={"model.modality_dropout": {}}
    )
    rows = {}
    for name, checkpoint in (("with_dropout", full), ("without_dropout", no_dropout)):
        scores = _score_network(checkpoint, dataset, run / f"learning_eval_{name}")
        surveys = ["galex", "unwise"]
        without = evaluate_ablations(checkpoint, dataset, split="test", surveys=surveys)
        rows[name] = {**scores, **{f"nmad_without_{s}": without[s]["nmad"] for s in surveys}}
    return rows


def _plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = [r["n_train"] for r in rows]
    panels = (("nmad", "NMAD"), ("outlier_rate_015", "outlier rate |Δ|>0.15"), ("crps", "CRPS"))
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.4))
    for ax, (key, label) in zip(axes, panels, strict=True):
        for k, (name, style) in enumerate(zip(ESTIMATORS, ("o-", "s--", "^:"), strict=True)):
            scored = [r for r in rows if r[name] is not None]
            xs, ys = [r["n_train"] for r in scored], [r[name][key] for r in scored]
            ax.plot(xs, ys, style, color=f"C{k}", label=name)
        ax.set_xscale("log", base=2)
        ax.set_xticks(n, [str(x) for x in n], fontsize=7)
        ax.minorticks_off()
        ax.set_xlabel("training galaxies")
        ax.set_ylabel(f"{label} (test split)")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _write(payload: dict, rows: list[dict]) -> None:
    """``learning.json`` and ``learning.png`` of the sizes scored so far, each replaced whole."""
    payload["curve"] = rows
    scored = [r for r in rows if r["early fusion"] is not None]
    n = [r["n_train"] for r in scored]
    payload["overtakes"] = {
        key: {
            other: overtaking_size(
                n, [r["early fusion"][key] for r in scored], [r[other][key] for r in scored]
            )
            for other in ESTIMATORS[1:]
        }
        for key in ("nmad", "outlier_rate_015", "crps")
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    tmp = RESULTS / "learning.json.tmp"
    tmp.write_text(json.dumps(payload, indent=2))
    tmp.replace(RESULTS / "learning.json")
    _plot(rows, RESULTS / "learning.tmp.png")
    (RESULTS / "learning.tmp.png").replace(RESULTS / "learning.png")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default=str(REPO / "runs" / "default"))
    parser.add_argument("--halvings", type=int, default=4, help="sizes below the full split")
    parser.add_argument(
        "--train-config",
        default=DEFAULT_TRAIN_CONFIG,
        help="training config of every network: a YAML path or a shipped name "
        f"(default: {DEFAULT_TRAIN_CONFIG})",
    )
    parser.add_argument("--dropout-comparison", action="store_true")
    parser.add_argument(
        "--only-trained",
        action="store_true",
        help="train nothing: score the networks already trained, the baselines at every size",
    )
    args = parser.parse_args()
    if not 0 <= args.halvings <= 8:
        parser.error(f"--halvings must be an integer from 0 to 8, got {args.halvings}")
    if args.only_trained and args.dropout_comparison:
        parser.error("--only-trained trains nothing; the dropout comparison trains a model")
    from mantis.config import config_file
    from mantis.exceptions import ConfigError

    try:
        config = config_file(args.train_config).resolve()
    except ConfigError:
        parser.error(
            f"--train-config {args.train_config}: no such YAML file or shipped training config "
            "(e.g. train/early)"
        )
    run = Path(args.run)
    dataset = run / "dataset.h5"
    if not dataset.is_file():
        parser.error(f"--run {run}: no dataset.h5 there; run `mantis pipeline` for it first")
    from mantis.models import load_predictor

    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    payload = {
        "run": str(run),
        "train_config": str(config.relative_to(REPO) if config.is_relative_to(REPO) else config),
        "train_config_sha256": _sha256(config),
        "commit": commit,
    }
    rows, baselines = [], None
    for fraction in [2.0**-k for k in range(args.halvings, 0, -1)] + [1.0]:
        train_rows = _training_rows(dataset, fraction)
        folder = _model_dir(run, config, fraction, len(train_rows))
        network = not args.only_trained or (folder / "finished.json").is_file()
        checkpoint, seconds = (
            _train(run, dataset, config, fraction, len(train_rows)) if network else (None, None)
        )
        if baselines is None:  # on the grid the networks predict on
            start = time.perf_counter()
            zgrid = load_predictor(checkpoint).zgrid if network else _grid(dataset)
            baselines = _Baselines(dataset, run / "learning_photometry.npz", zgrid)
            payload["n_test"] = int(baselines.test.size)
            payload["baseline_seconds"] = round(time.perf_counter() - start, 1)
        rows.append(
            {
                "fraction": fraction,
                "n_train": len(train_rows),
                "train_seconds": seconds,
                "early fusion": (
                    _score_network(checkpoint, dataset, folder / "learning_eval")
                    if network
                    else None
                ),
                "kNN": baselines.knn(train_rows),
                "template fit": baselines.template,
            }
        )
        print(json.dumps(rows[-1]), flush=True)
        _write(payload, rows)  # after every size: a long run stopped early keeps its points

    if args.dropout_comparison:
        full = _train(run, dataset, config, 1.0, rows[-1]["n_train"])[0]
        payload["modality_dropout"] = _dropout_comparison(run, dataset, config, full)
        _write(payload, rows)
    print(
        "\n| training galaxies | early NMAD | early η | early CRPS | kNN NMAD | kNN η | "
        "template NMAD | train s |\n|---|---|---|---|---|---|---|---|"
    )
    for r in rows:
        e, k, t = r["early fusion"], r["kNN"], r["template fit"]
        early = (
            f"{e['nmad']:.4f} | {e['outlier_rate_015']:.3f} | {e['crps']:.4f}" if e else "– | – | –"
        )
        print(
            f"| {r['n_train']} | {early} | {k['nmad']:.4f} | {k['outlier_rate_015']:.3f} | "
            f"{t['nmad']:.4f} | {r['train_seconds']} |"
        )
    print("\nthe network overtakes (training galaxies):", json.dumps(payload["overtakes"]))
    for name, r in payload.get("modality_dropout", {}).items():
        print(name, json.dumps(r))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
