"""Learning curve and the cost of modality dropout, on the dataset of a `make train` run.

Trains the early-fusion default on 25% and 50% of the training split (the 100% point is the
`make train` model itself), and once more without modality dropout; scores every model on the
test split with all surveys and with GALEX or unWISE withheld. Writes
``bench/results/learning.json`` and ``bench/results/learning.png``.

Usage: ``python scripts/bench_learning.py [--run runs/default]``
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import h5py
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from mantis.evaluate import evaluate_ablations, evaluate_run
from mantis.models import train_model

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
FRACTIONS = (0.25, 0.5)


def _score(checkpoint: Path, dataset: Path, out: Path) -> dict:
    metrics = evaluate_run(checkpoint, dataset, out, split="test", baselines=False, plots=False)
    scores = metrics.get("calibrated", metrics)
    without = evaluate_ablations(checkpoint, dataset, split="test", surveys=["galex", "unwise"])
    keys = ("nmad", "outlier_rate_015", "crps", "bias_median")
    return {
        **{k: scores[k] for k in keys},
        **{f"{k}_without_{s}": without[s][k] for s in without for k in ("nmad", "crps")},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default=str(REPO / "runs" / "default"))
    args = parser.parse_args()
    run = Path(args.run)
    dataset = run / "dataset.h5"
    reference = run / "early" / "evaluation" / "metrics.json"
    if not reference.is_file():
        print(f"bench_learning: no evaluated early model in {run}; run `make train` first")
        return
    config = REPO / "configs" / "train" / "early.yaml"
    with h5py.File(dataset, "r") as h5:
        n_train = int((h5["catalog/split"][:] == b"train").sum())

    rows = []
    for fraction in (*FRACTIONS, 1.0):
        start = time.perf_counter()
        if fraction == 1.0:
            checkpoint = train_model(config, dataset, run / "early")
        else:
            overrides = {"data.train_fraction": fraction}
            checkpoint = train_model(
                config, dataset, run / f"early_frac{fraction}", overrides=overrides
            )
        scores = _score(checkpoint, dataset, run / f"learning_eval_{fraction}")
        rows.append(
            {
                "fraction": fraction,
                "n_train": round(fraction * n_train),
                **scores,
                "seconds": round(time.perf_counter() - start, 1),
            }
        )
        print(rows[-1], flush=True)

    no_dropout = train_model(
        config, dataset, run / "early_no_dropout", overrides={"model.modality_dropout": {}}
    )
    dropout_rows = {
        "with_dropout": rows[-1],
        "without_dropout": _score(no_dropout, dataset, run / "learning_eval_no_dropout"),
    }
    baselines = json.loads(reference.read_text()).get("baselines", {})

    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {
        "curve": rows,
        "modality_dropout": dropout_rows,
        "baselines": {k: v.get("nmad") for k, v in baselines.items()},
    }
    (RESULTS / "learning.json").write_text(json.dumps(payload, indent=2, default=float))

    fig, ax = plt.subplots(figsize=(5, 3.6))
    n = np.array([r["n_train"] for r in rows])
    ax.plot(n, [r["nmad"] for r in rows], "o-", label="early fusion CNN")
    for name, nmad in payload["baselines"].items():
        if nmad is not None:
            ax.axhline(nmad, ls="--", lw=1, label=f"baseline: {name}", color=f"C{len(ax.lines)}")
    ax.set_xscale("log")
    ax.set_xlabel("training objects")
    ax.set_ylabel("NMAD (test split)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(RESULTS / "learning.png", dpi=120)

    print("\n| training objects | NMAD | outliers >0.15 | CRPS |\n|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['n_train']} | {r['nmad']:.4f} | {r['outlier_rate_015']:.3f} | {r['crps']:.4f} |"
        )
    print("\n| model | NMAD | NMAD without GALEX | NMAD without unWISE |\n|---|---|---|---|")
    for name, r in dropout_rows.items():
        print(
            f"| {name} | {r['nmad']:.4f} | {r['nmad_without_galex']:.4f} | "
            f"{r['nmad_without_unwise']:.4f} |"
        )


if __name__ == "__main__":
    main()
