"""Benchmark `mantis predict`: end-to-end galaxies/s and peak memory against catalogue size.

1. End to end against ``mantis sky serve`` with 200 ms latency per request: fetch (cold cache)
   → build → network → write, then the same catalogue again with the cache warm. The network is
   the deterministic stand-in unless ``--checkpoint`` names a trained one.
2. Peak resident memory (ru_maxrss of a fresh subprocess) predicting 1e4 and 2e5 rows with
   the stand-in network and stand-in arrays (no fetching), to show memory does not grow
   with catalogue length.

Prints a table and writes bench/results/predict.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

MEMORY_SCRIPT = """
import resource, sys, time
from mantis.predict import predict_catalog
from mantis.predict.testing import StandInPredictor, StandInSource
t0 = time.perf_counter()
predict_catalog(sys.argv[1], sys.argv[2], predictor=StandInPredictor(), source=StandInSource(),
                batch_size=2048, progress=False)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.perf_counter() - t0)
"""


def write_catalog(path: Path, n: int) -> Path:
    rng = np.random.default_rng(0)
    pd.DataFrame({"id": [f"g{i:07d}" for i in range(n)], "ra": rng.uniform(0, 360, n),
                  "dec": rng.uniform(-60, 60, n), "r_mag": rng.uniform(16, 22, n)}
                 ).to_parquet(path)  # fmt: skip
    return path


def bench_memory(tmp: Path, sizes: list[int]) -> list[dict]:
    rows = []
    for n in sizes:
        cat = write_catalog(tmp / f"mem{n}.parquet", n)
        cmd = [sys.executable, "-c", MEMORY_SCRIPT, str(cat), str(tmp / f"m{n}.parquet")]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.split()
        rows.append({"rows": n, "peak_rss_mib": int(out[0]) / 1024, "seconds": float(out[1]),
                     "rows_per_s": n / float(out[1])})  # fmt: skip
    return rows


def bench_end_to_end(tmp: Path, n: int, latency_ms: float, checkpoint: str | None) -> list[dict]:
    from mantis.config import load_config
    from mantis.predict import CutoutSource, predict_catalog
    from mantis.predict.testing import StandInPredictor
    from mantis.sky import Universe
    from mantis.sky.testing import running_server

    spec = Universe.from_config("test", seed=0).spec_catalog().head(n)
    spec[["id", "ra", "dec"]].to_csv(tmp / "e2e.csv", index=False)
    predictor = None
    if checkpoint:
        from mantis.models import load_predictor

        predictor = load_predictor(checkpoint)
    predictor = predictor or StandInPredictor()
    config = load_config("build")
    if predictor.grids:
        config["grids"] = {**config["grids"], **predictor.grids}
    rows = []
    with running_server(config="test", seed=0, latency_ms=latency_ms) as url:
        source = CutoutSource(str(tmp / "cache"), url, build_config=config)
        for label in ("cold cache", "warm cache"):
            t0 = time.perf_counter()
            predict_catalog(tmp / "e2e.csv", tmp / f"e2e-{label[:4]}.parquet", predictor=predictor,
                            source=source, batch_size=64, progress=False)  # fmt: skip
            dt = time.perf_counter() - t0
            rows.append({"case": f"{label}, {latency_ms:g} ms latency", "objects": len(spec),
                         "seconds": dt, "galaxies_per_s": len(spec) / dt})  # fmt: skip
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=128, help="objects for end to end")
    parser.add_argument("--latency-ms", type=float, default=200.0)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 200_000])
    parser.add_argument("--checkpoint", default=None, help="trained model (default: stand-in)")
    parser.add_argument("--skip-e2e", action="store_true")
    args = parser.parse_args()
    result: dict = {"network": args.checkpoint or "stand-in"}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if not args.skip_e2e:
            result["end_to_end"] = bench_end_to_end(tmp, args.objects, args.latency_ms,
                                                    args.checkpoint)  # fmt: skip
            print(f"{'case':<32} {'objects':>8} {'seconds':>9} {'galaxies/s':>11}")
            for r in result["end_to_end"]:
                print(f"{r['case']:<32} {r['objects']:>8} {r['seconds']:>9.2f} "
                      f"{r['galaxies_per_s']:>11.1f}")  # fmt: skip
        result["memory"] = bench_memory(tmp, args.sizes)
    mem = result["memory"]
    result["memory_ratio_largest_to_smallest"] = mem[-1]["peak_rss_mib"] / mem[0]["peak_rss_mib"]
    print(f"\n{'rows':>8} {'peak RSS MiB':>13} {'seconds':>9} {'rows/s':>9}")
    for r in mem:
        print(
            f"{r['rows']:>8} {r['peak_rss_mib']:>13.1f} {r['seconds']:>9.1f} "
            f"{r['rows_per_s']:>9.0f}"
        )
    print(f"peak memory ratio {mem[-1]['rows']}/{mem[0]['rows']} rows: "
          f"{result['memory_ratio_largest_to_smallest']:.3f}")  # fmt: skip
    out = Path("bench/results/predict.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
