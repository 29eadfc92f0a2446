"""Benchmark recalibration and the metric suite on 10⁶ densities of 400 bins.

1. `fit_calibration` on 10⁶ validation densities (it scores candidates on a seeded subset of
   10⁵, the default) and `Calibration.apply` for temperature scaling and PIT remapping on 10⁶
   test densities: objects per second.
2. The metric suite: `evaluate_densities` without bootstrap (per-object scores, PIT tests,
   point metrics, slices) on 10⁶, and the cost of one bootstrap resample.
3. Side by side on the same 10⁴ densities: the vectorised remapping against a per-object loop
   (``np.interp`` row by row), and our PIT + KS/CvM/AD against qp-prob's ``PIT`` on a
   ``qp.hist`` ensemble. Ratios of medians over repeats.

The densities are over-confident Gaussians (float32, 1.6 GB per 10⁶). Prints a table and
writes bench/results/calibrate.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import warnings
from pathlib import Path

import numpy as np

from mantis.calibration import Calibration
from mantis.evaluate import evaluate_densities, fit_calibration, pit_statistics, score_densities
from mantis.evaluate._summary import _bootstrap_once
from mantis.zgrid import ZGrid

RESULTS = Path(__file__).resolve().parent.parent / "bench" / "results" / "calibrate.json"


def overconfident_densities(zgrid: ZGrid, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian densities (evaluated at bin centres, float32) half as wide as their scatter."""
    rng = np.random.default_rng(seed)
    z_true = rng.uniform(0.05, 1.4, n)
    sigma = 0.03 * (1 + z_true)
    mu = z_true + sigma * rng.normal(size=n)
    probs = np.empty((n, zgrid.n_bins), dtype=np.float32)
    centres = zgrid.centres.astype(np.float32)
    for start in range(0, n, 65536):
        stop = min(start + 65536, n)
        x = (centres[None, :] - mu[start:stop, None].astype(np.float32)) / (
            0.5 * sigma[start:stop, None].astype(np.float32)
        )
        block = np.exp(-0.5 * np.minimum(x * x, 170.0))
        block /= block.sum(axis=1, keepdims=True)
        probs[start:stop] = block
    return probs, z_true


def timed(fn, *args, repeats: int = 1, **kwargs) -> tuple[float, object]:
    """Median wall time over ``repeats`` calls (the fastest is kept in ``timed.best``)."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn(*args, **kwargs)
        times.append(time.perf_counter() - start)
    timed.best = float(np.min(times))
    return float(np.median(times)), result


def per_object_remap(calibration: Calibration, probs: np.ndarray) -> np.ndarray:
    knots = np.linspace(0.0, 1.0, calibration.remap.size)
    out = np.empty_like(probs)
    for i, row in enumerate(probs):
        mapped = np.interp(np.cumsum(row), knots, calibration.remap)
        out[i] = np.diff(mapped, prepend=0.0)
        out[i] /= out[i].sum()
    return out


def qp_pit_suite(probs: np.ndarray, z: np.ndarray, zgrid: ZGrid) -> dict:
    import qp
    from qp.metrics.pit import PIT

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ensemble = qp.Ensemble(qp.hist, data={"bins": zgrid.edges, "pdfs": probs / zgrid.width})
        return PIT(ensemble, z).calculate_pit_meta_metrics()


def our_pit_suite(probs: np.ndarray, z: np.ndarray, zgrid: ZGrid) -> dict:
    return pit_statistics(score_densities(probs, z, zgrid)["pit"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="densities (default 1e6)")
    parser.add_argument("--n-compare", type=int, default=10_000, help="side-by-side size")
    args = parser.parse_args()
    zgrid = ZGrid()
    rows: list[dict] = []

    def record(task: str, n: int, seconds: float, note: str = "") -> None:
        best = min(getattr(timed, "best", seconds), seconds)
        rows.append({"task": task, "objects": n, "seconds_median": seconds,
                     "objects_per_s_median": n / seconds, "objects_per_s_best": n / best,
                     "note": note})  # fmt: skip
        print(f"{task:<40s} {n:>9d} {seconds:>8.2f} s {n / seconds:>11,.0f} /s "
              f"{n / best:>11,.0f} /s  {note}")  # fmt: skip

    print(f"{'task':<40s} {'objects':>9s} {'median':>10s} {'rate':>14s} {'best':>14s}")
    val, z_val = overconfident_densities(zgrid, args.n, seed=1)
    seconds, calibration = timed(fit_calibration, val, z_val, zgrid)
    record("fit_calibration (all candidates)", args.n, seconds,
           f"chose {calibration.method}; scores a 1e5 subset")  # fmt: skip
    fits = {
        m: fit_calibration(val[:200_000], z_val[:200_000], zgrid, methods=(m,))
        for m in ("temperature", "pit_remap")
    }
    del val, z_val
    test, z_test = overconfident_densities(zgrid, args.n, seed=2)
    for method, fitted in fits.items():
        seconds, _ = timed(fitted.apply, test, repeats=3)
        record(f"Calibration.apply ({method})", args.n, seconds)
    seconds, _ = timed(evaluate_densities, test, z_test, zgrid, n_boot=0)
    record("evaluate_densities (no bootstrap)", args.n, seconds, "scores, PIT tests, slices")
    scores = score_densities(test, z_test, zgrid)
    rng = np.random.default_rng(0)
    seconds, _ = timed(
        lambda: _bootstrap_once(scores, z_test, rng.integers(0, args.n, args.n), "mean"),
        repeats=5,
    )
    record("  one bootstrap resample", args.n, seconds, "added per resample (default 100)")

    n_cmp = args.n_compare
    sub, z_sub = test[:n_cmp], z_test[:n_cmp]
    remap = fits["pit_remap"]
    loop_s, _ = timed(per_object_remap, remap, sub, repeats=5)
    record("  remap, per-object loop", n_cmp, loop_s)
    vec_s, _ = timed(remap.apply, sub, repeats=5)
    record("  remap, vectorised", n_cmp, vec_s, f"{loop_s / vec_s:.1f}x faster (medians)")
    qp_s, _ = timed(qp_pit_suite, sub.astype(np.float64), z_sub, zgrid, repeats=5)
    record("  PIT + KS/CvM/AD, qp-prob", n_cmp, qp_s)
    ours_s, _ = timed(our_pit_suite, sub, z_sub, zgrid, repeats=5)
    record("  PIT + KS/CvM/AD, mantis", n_cmp, ours_s, f"{qp_s / ours_s:.1f}x faster (medians)")

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    payload = {"n": args.n, "n_compare": n_cmp, "n_bins": zgrid.n_bins, "rows": rows,
               "machine": {"cpus": os.cpu_count(), "load_1min": load,
                           "python": platform.python_version()}}  # fmt: skip
    tmp = RESULTS.with_name(RESULTS.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    tmp.replace(RESULTS)
    print(f"load average {load}; wrote {RESULTS}")


if __name__ == "__main__":
    main()
