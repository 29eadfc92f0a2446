"""Benchmark `mantis predict`: end-to-end galaxies/s and peak memory against catalogue size.

1. End to end against ``mantis sky serve`` with 200 ms latency per request: the fetch alone
   (one `fetch_catalog` call over the whole catalogue, the pace the politeness cap allows),
   then fetch (cold cache) → build → network → write with one chunk fetched at a time and
   with two at once (one fetch session: both share the whole cap, the default), then the
   same catalogue again with the cache warm;
   ``--serial`` adds fetch and build of a chunk in turn in one thread (the earliest pipeline).
   ``--flat-sky`` serves constant pixels instead, so that the server's rendering does not
   compete with the client for the CPU. Beyond the 105 spec-z galaxies of the ``test`` sky,
   any of its sources are added. The network is the deterministic stand-in unless
   ``--checkpoint`` names a trained one.
2. Peak resident memory (VmHWM of a fresh subprocess) predicting 1e4 and 2e5 rows with
   the stand-in network and stand-in arrays (no fetching), to show memory does not grow
   with catalogue length.

Prints a table and writes bench/results/predict.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

# VmHWM is this process's own peak: ru_maxrss would carry over the parent's peak through exec.
MEMORY_SCRIPT = """
import re, sys, time
from mantis.predict import predict_catalog
from mantis.predict.testing import StandInPredictor, StandInSource
t0 = time.perf_counter()
predict_catalog(sys.argv[1], sys.argv[2], predictor=StandInPredictor(), source=StandInSource(),
                batch_size=2048, progress=False)
status = open("/proc/self/status").read()
print(re.search(r"VmHWM:\\s+(\\d+) kB", status)[1], time.perf_counter() - t0)
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


@dataclass(frozen=True)
class SerialSource:
    """The source with ``arrays`` only: fetch and build of a chunk in one thread, in turn."""

    inner: Any

    def arrays(self, chunk: pd.DataFrame) -> dict:
        return self.inner.arrays(chunk)


def fetch_alone(spec: pd.DataFrame, cache: Path, url: str, latency_ms: float) -> dict:
    """The fetch of the whole catalogue in one call: the pace the services allow."""
    from mantis.fetch import fetch_catalog

    t0 = time.perf_counter()
    fetch_catalog(spec[["id", "ra", "dec"]], cache_dir=cache, endpoint=url, progress=False)
    dt = time.perf_counter() - t0
    return {"case": "fetch alone, cold cache", "latency_ms": latency_ms, "objects": len(spec),
            "batch_size": len(spec), "seconds": dt, "galaxies_per_s": len(spec) / dt}  # fmt: skip


def bench_end_to_end(
    tmp: Path,
    n: int,
    latency_ms: float,
    checkpoint: str | None,
    batch_size: int,
    serial: bool,
    flat: bool,
) -> list[dict]:
    from mantis.config import load_config
    from mantis.predict import CutoutSource, predict_catalog
    from mantis.predict.testing import StandInPredictor
    from mantis.sky import Universe, running_server

    universe = Universe.from_config("test", seed=0)
    spec = universe.spec_catalog()
    if n > len(spec):  # beyond the spec-z galaxies, any source of the sky
        others = universe.sources.loc[~universe.sources["id"].isin(spec["id"])]
        spec = pd.concat([spec, others], ignore_index=True)
    spec = spec.head(n)
    spec[["id", "ra", "dec"]].to_csv(tmp / "e2e.csv", index=False)
    predictor = None
    if checkpoint:
        from mantis.models import load_predictor

        predictor = load_predictor(checkpoint)
    predictor = predictor or StandInPredictor()
    config = load_config("build")
    if predictor.grids:
        config["grids"] = {**config["grids"], **predictor.grids}
    cases = [  # (label, cache, serial, chunks fetched at once in the session)
        ("cold cache, 1 chunk fetched at a time", "cache-1", False, 1),
        ("cold cache, 2 chunks at once (default)", "cache", False, 2),
        ("warm cache, 2 chunks at once (default)", "cache", False, 2),
    ]
    if serial:
        cases.insert(0, ("cold cache, fetch+build serial", "cache-serial", True, 1))
    rows = []
    server_sky = "test"
    if flat:  # bench_group's sky of constant pixels: the server's rendering costs nothing
        scripts = str(Path(__file__).resolve().parent)
        os.environ["PYTHONPATH"] = os.pathsep.join(
            p for p in (scripts, os.environ.get("PYTHONPATH")) if p
        )
        server_sky = "bench_group:FlatSky"
    with running_server(config=server_sky, seed=0, latency_ms=latency_ms) as url:
        rows.append(fetch_alone(spec, tmp / "cache-fetch", url, latency_ms))
        for k, (label, cache, one_thread, lanes) in enumerate(cases):
            source = CutoutSource(str(tmp / cache), url, build_config=config, fetch_lanes=lanes)
            t0 = time.perf_counter()
            predict_catalog(tmp / "e2e.csv", tmp / f"e2e-{k}.parquet", predictor=predictor,
                            source=SerialSource(source) if one_thread else source,
                            batch_size=batch_size, progress=False)  # fmt: skip
            dt = time.perf_counter() - t0
            rows.append({"case": label, "latency_ms": latency_ms, "objects": len(spec),
                         "batch_size": batch_size, "seconds": dt,
                         "galaxies_per_s": len(spec) / dt})  # fmt: skip
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=128, help="objects for end to end")
    parser.add_argument("--batch-size", type=int, default=32, help="rows per chunk, end to end")
    parser.add_argument("--latency-ms", type=float, default=200.0)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 200_000])
    parser.add_argument("--checkpoint", default=None, help="trained model (default: stand-in)")
    parser.add_argument("--skip-e2e", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    flat_help = "serve constant pixels (bench_group's FlatSky), not the test sky"
    parser.add_argument("--flat-sky", action="store_true", help=flat_help)
    parser.add_argument("--serial", action="store_true", help="also fetch+build in one thread")
    args = parser.parse_args()
    result: dict = {"network": args.checkpoint or "stand-in"}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if not args.skip_e2e:
            e2e = bench_end_to_end(tmp, args.objects, args.latency_ms, args.checkpoint,
                                   args.batch_size, args.serial, args.flat_sky)  # fmt: skip
            result["server_sky"] = "flat" if args.flat_sky else "test"
            result["end_to_end"] = e2e
            rate = {r["case"]: r["galaxies_per_s"] for r in e2e}
            staged_cold = rate["cold cache, 2 chunks at once (default)"]
            alone = rate["fetch alone, cold cache"]
            result["staged_cold_over_fetch_alone"] = staged_cold / alone
            one_chunk = rate["cold cache, 1 chunk fetched at a time"]
            result["one_lane_over_fetch_alone"] = one_chunk / alone
            if args.serial:
                serial_cold = rate["cold cache, fetch+build serial"]
                result["staged_over_serial_cold"] = staged_cold / serial_cold
            print(f"{'case (' + str(args.latency_ms) + ' ms latency)':<40} {'objects':>8} "
                  f"{'seconds':>9} {'galaxies/s':>11}")  # fmt: skip
            for r in e2e:
                print(f"{r['case']:<40} {r['objects']:>8} {r['seconds']:>9.2f} "
                      f"{r['galaxies_per_s']:>11.1f}")  # fmt: skip
            for key in ("staged_over_serial_cold", "one_lane_over_fetch_alone",
                        "staged_cold_over_fetch_alone"):  # fmt: skip
                if key in result:
                    print(f"{key}: {result[key]:.3f}")
        if not args.skip_memory:
            result["memory"] = bench_memory(tmp, args.sizes)
    out = Path("bench/results/predict.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.skip_memory:
        out.write_text(json.dumps(result, indent=1))
        return 0
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
    out.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
