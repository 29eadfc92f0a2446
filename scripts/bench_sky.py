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


def bench_server(
    config: str = "test", n_requests: int = 96, clients: int = 64, repeats: int = 3
) -> dict:
    """Requests per second of `mantis sky serve` with ``clients`` concurrent aiohttp clients.

    A bounded mix of fitscut (170 px), unwise.me (32 px) and GALEX viewer (32 px) requests at
    distinct positions, against process-pool and thread-pool servers started side by side and
    measured alternately, plus one client at a time on the process server; medians of
    ``repeats`` rounds.
    """
    import asyncio

    import aiohttp

    from mantis.sky import running_server
    from mantis.sky._coverage import ps1_skycell_at

    def requests(offset: int) -> list[tuple[str, dict]]:
        out = []
        for k in range(n_requests):
            ra, dec = 150.02 + 0.0013 * k + 1e-5 * offset, 2.12 + 0.0011 * k
            if k % 3 == 0:
                red = ps1_skycell_at(ra, dec).filename("grizy"[k % 5])
                params = {"red": red, "ra": ra, "dec": dec, "size": 170, "format": "fits"}
                out.append(("/cgi-bin/fitscut.cgi", params))
            elif k % 3 == 1:
                out.append(("/cutout_fits", {"ra": ra, "dec": dec, "size": 32}))
            else:
                params = {"ra": ra, "dec": dec, "layer": "galex", "size": 32}
                out.append(("/viewer/fits-cutout", params))
        return out

    async def run(base_url: str, batch: list[tuple[str, dict]], limit: int) -> float:
        timeout = aiohttp.ClientTimeout(total=600)
        connector = aiohttp.TCPConnector(limit=limit)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

            async def one(path: str, params: dict) -> int:
                async with session.get(base_url + path, params=params) as response:
                    await response.read()
                    return response.status

            start = time.perf_counter()
            statuses = await asyncio.gather(*(one(p, q) for p, q in batch))
            elapsed = time.perf_counter() - start
        if set(statuses) != {200}:
            raise RuntimeError(f"server answered {sorted(set(statuses))} during the benchmark")
        return len(batch) / elapsed

    workers = min(4, os.cpu_count() or 1)
    rates: dict[str, list[float]] = {"process": [], "thread": [], "process_1_client": []}
    with (
        running_server(config=config, workers=workers) as process_url,
        running_server(config=config, workers=workers, threads=True) as thread_url,
    ):
        for url in (process_url, thread_url):  # warm-up: renderer caches, connections
            asyncio.run(run(url, requests(-1)[:12], clients))
        for repeat in range(repeats):
            rates["process"].append(asyncio.run(run(process_url, requests(repeat), clients)))
            rates["thread"].append(asyncio.run(run(thread_url, requests(repeat), clients)))
            rates["process_1_client"].append(
                asyncio.run(run(process_url, requests(repeat)[:24], 1))
            )
    medians = {mode: statistics.median(values) for mode, values in rates.items()}
    return {
        "config": config,
        "clients": clients,
        "n_requests": n_requests,
        "repeats": repeats,
        "workers": workers,
        "requests_per_s": rates,
        "median_requests_per_s": medians,
        "process_over_thread": medians["process"] / medians["thread"],
        "concurrent_over_one_client": medians["process"] / medians["process_1_client"],
        "load_average_1min": os.getloadavg()[0],
    }


def main() -> int:
    render = bench_render()
    server = bench_server()
    results = {
        "render": render,
        "server": server,
        "python": sys.version.split()[0],
        "numpy": np.__version__,
    }
    print("| measure | value |")
    print("|---|---|")
    print(f"| nine-band sets per second (median of {render['repeats']}) | "
          f"{render['median_sets_per_s']:.1f} |")  # fmt: skip
    print(f"| nine-band sets per CPU-second (median) | {render['median_sets_per_cpu_s']:.1f} |")
    print(f"| load average during the run (1 min) | {render['load_average_1min']:.1f} |")
    for s, ms in render["median_ms_per_set_by_survey"].items():
        print(f"| ms per set, {s} ({CUTOUT_PIXELS[s]} px) | {ms:.1f} |")
    for mode, rate in server["median_requests_per_s"].items():
        clients = 1 if mode == "process_1_client" else server["clients"]
        print(f"| server requests/s, {mode.split('_')[0]} pool, {clients} clients | {rate:.1f} |")
    print(f"| server process pool / thread pool | {server['process_over_thread']:.2f} |")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    tmp = RESULTS.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=2))
    tmp.replace(RESULTS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
