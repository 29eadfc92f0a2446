"""Benchmark of the simulated sky: rendering throughput of complete nine-band sets.

Each set is what the imitation services render for one object: PS1 g r i z y at 170 px
(0.25"/px), GALEX FUV NUV at 32 px (1.5"/px) and unWISE W1 W2 at 32 px (2.75"/px), with noise,
centred on spec-z objects of the ``test`` sky. Prints a table and writes
``bench/results/sky.json``. Other parts (the server's requests per second) add functions here.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from astropy.wcs import WCS

from mantis.sky import Universe
from mantis.surveys import BANDS, survey

RESULTS = Path(__file__).resolve().parent.parent / "bench" / "results" / "sky.json"
CUTOUT_PIXELS = {"ps1": 170, "galex": 32, "unwise": 32}


def tan_wcs(ra: float, dec: float, scale: float, n: int) -> WCS:
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [ra, dec]
    wcs.wcs.crpix = [(n + 1) / 2, (n + 1) / 2]
    wcs.wcs.cdelt = [-scale / 3600.0, scale / 3600.0]
    return wcs


def render_set(universe: Universe, ra: float, dec: float) -> dict[str, float]:
    """Render one nine-band set; return seconds spent per survey."""
    spent = dict.fromkeys(CUTOUT_PIXELS, 0.0)
    for b in BANDS:
        n = CUTOUT_PIXELS[b.survey]
        wcs = tan_wcs(ra, dec, survey(b.survey).pixel_scale, n)
        start = time.perf_counter()
        universe.render(b.name, wcs, (n, n))
        spent[b.survey] += time.perf_counter() - start
    return spent


def bench_render(config: str = "test", n_sets: int = 40, repeats: int = 3) -> dict:
    """Nine-band sets per second over ``n_sets`` spec-z positions, ``repeats`` times.

    Reports wall-clock rates and rates per CPU-second of this process: on a shared machine
    the second is the one that does not depend on what else is running.
    """
    universe = Universe.from_config(config, seed=0)
    spec = universe.spec_catalog()
    positions = list(zip(spec["ra"], spec["dec"], strict=True))
    positions = (positions * (n_sets // max(len(positions), 1) + 1))[:n_sets]
    render_set(universe, *positions[0])  # warm-up: GalSim tables, renderer index
    rates, cpu_rates, per_survey = [], [], {s: [] for s in CUTOUT_PIXELS}
    for _ in range(repeats):
        start, cpu_start = time.perf_counter(), time.process_time()
        totals = dict.fromkeys(CUTOUT_PIXELS, 0.0)
        for ra, dec in positions:
            for s, t in render_set(universe, ra, dec).items():
                totals[s] += t
        rates.append(n_sets / (time.perf_counter() - start))
        cpu_rates.append(n_sets / (time.process_time() - cpu_start))
        for s in CUTOUT_PIXELS:
            per_survey[s].append(1e3 * totals[s] / n_sets)
    return {
        "config": config,
        "n_sets": n_sets,
        "repeats": repeats,
        "sets_per_s": rates,
        "median_sets_per_s": statistics.median(rates),
        "sets_per_cpu_s": cpu_rates,
        "median_sets_per_cpu_s": statistics.median(cpu_rates),
        "load_average_1min": os.getloadavg()[0],
        "median_ms_per_set_by_survey": {s: statistics.median(v) for s, v in per_survey.items()},
        "n_sources": len(universe.sources),
    }


def main() -> int:
    render = bench_render()
    results = {"render": render, "python": sys.version.split()[0], "numpy": np.__version__}
    print("| measure | value |")
    print("|---|---|")
    print(f"| nine-band sets per second (median of {render['repeats']}) | "
          f"{render['median_sets_per_s']:.1f} |")  # fmt: skip
    print(f"| nine-band sets per CPU-second (median) | {render['median_sets_per_cpu_s']:.1f} |")
    print(f"| load average during the run (1 min) | {render['load_average_1min']:.1f} |")
    for s, ms in render["median_ms_per_set_by_survey"].items():
        print(f"| ms per set, {s} ({CUTOUT_PIXELS[s]} px) | {ms:.1f} |")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    tmp = RESULTS.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=2))
    tmp.replace(RESULTS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
