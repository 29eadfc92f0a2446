"""Fetch throughput: mantis against a sequential per-object client in the earlier system's style.

Both clients fetch from the same loopback service, side by side in one run, alternating, a few
repeats each. The service answers the four paths (ps1filenames, fitscut, cutout_fits,
fits-cutout) with fixed, realistic bodies after a fixed latency (200 ms by default), so the
service itself costs nothing and what is measured is how well each client overlaps the
latency within its politeness limits. (`mantis sky serve --latency-ms` adds the same latency
but renders every cutout, which on a small machine makes rendering, not latency, the limit.)

The baseline imitates the earlier system: for each object in turn, one ps1filenames POST, then
seven blocking GETs (five fitscut bands, GALEX, unWISE) through a ten-thread pool, each with
its own connection, each written to a file.

The politeness bound is ``cap / latency`` requests per second per host; PS1 takes five of the
seven requests per object, so it bounds mantis at ``cap / (5 * latency)`` objects per second.
As with the real services, each survey is served from its own host (here: its own loopback
port), since mantis caps requests per host contacted.

Usage: ``python scripts/bench_fetch.py [--objects 100] [--latency-ms 200] [--caps 16,32]``
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import gzip
import io
import json
import multiprocessing
import os
import statistics
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import requests
from aiohttp import web
from astropy.io import fits

from mantis.fetch import fetch_catalog, load_fetch_config

HEADER = "projcell subcell ra dec filter mjd type filename shortname badflag"
RESULTS = Path(__file__).resolve().parent.parent / "bench" / "results" / "fetch.json"


def _fits(data: np.ndarray, extra: np.ndarray | None = None) -> bytes:
    hdus = [fits.PrimaryHDU(data)] + ([fits.ImageHDU(extra)] if extra is not None else [])
    buffer = io.BytesIO()
    fits.HDUList(hdus).writeto(buffer)
    return buffer.getvalue()


def _bodies() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    ps1 = _fits(rng.normal(0, 1, (170, 170)).astype(np.float32))
    cube = rng.normal(0, 1e-3, (2, 32, 32)).astype(np.float32)
    galex = _fits(cube, np.ones_like(cube))
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for band in (1, 2):
            for product in ("img-m.fits", "invvar-m.fits.gz", "n-m.fits.gz", "std-m.fits.gz"):
                content = _fits(rng.normal(0, 1, (32, 32)).astype(np.float32))
                if product.endswith(".gz"):
                    content = gzip.compress(content)
                info = tarfile.TarInfo(f"unwise-1497p015-w{band}-{product}")
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    return {"ps1": ps1, "galex": galex, "unwise": gzip.compress(raw.getvalue())}


class LatencyService:
    """The four service paths on 127.0.0.1, each answer delayed by ``latency_s``.

    The same application listens on three ports, one per survey (``urls``), as three hosts.
    """

    def __init__(self, latency_s: float) -> None:
        self.latency_s = latency_s
        self.bodies = _bodies()
        self.requests = 0
        self.loop = asyncio.new_event_loop()
        self.urls: dict[str, str] = {}

    async def _lookup(self, request: web.Request) -> web.Response:
        if request.method == "POST":
            form = await request.post()
            text, filters = form["file"].file.read().decode(), form["filters"]
        else:
            text, filters = f"{request.query['ra']} {request.query['dec']}", "grizy"
        rows = [HEADER]
        for line in filter(None, text.splitlines()):
            ra, dec = line.split()
            for f in filters:
                name = f"rings.v3.skycell.1384.059.stk.{f}.unconv.fits"
                rows.append(
                    f"1384 59 {ra} {dec} {f} 0.0 stack /rings.v3.skycell/1384/059/{name} {name} 0"
                )
        return await self._answer("\n".join(rows).encode(), "text/plain")

    async def _answer(self, body: bytes, content_type: str) -> web.Response:
        self.requests += 1
        await asyncio.sleep(self.latency_s)
        return web.Response(body=body, content_type=content_type)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/cgi-bin/ps1filenames.py", self._lookup)
        for path, key, kind in [
            ("/cgi-bin/fitscut.cgi", "ps1", "image/fits"),
            ("/cutout_fits", "unwise", "application/x-compressed"),
            ("/viewer/fits-cutout", "galex", "image/fits"),
        ]:
            body = self.bodies[key]
            app.router.add_get(path, lambda _r, b=body, k=kind: self._answer(b, k))
        return app

    def __enter__(self) -> LatencyService:
        ready = threading.Event()

        async def start() -> None:
            runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=0.5)
            await runner.setup()
            for survey in ("ps1", "unwise", "galex"):
                await web.TCPSite(runner, "127.0.0.1", 0, backlog=1024).start()
                self.urls[survey] = f"http://127.0.0.1:{runner.addresses[-1][1]}"
            self._runner = runner
            ready.set()

        def serve() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(start())
            self.loop.run_forever()

        self.thread = threading.Thread(target=serve, daemon=True)
        self.thread.start()
        ready.wait(30)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def _serve_forever(latency_s: float, urls: multiprocessing.Queue) -> None:
    with LatencyService(latency_s) as service:
        urls.put(service.urls)
        threading.Event().wait()


@contextlib.contextmanager
def service_process(latency_s: float):
    """Run `LatencyService` in its own process, so it never competes with a client for the GIL."""
    context = multiprocessing.get_context("spawn")
    urls = context.Queue()
    process = context.Process(target=_serve_forever, args=(latency_s, urls), daemon=True)
    process.start()
    try:
        yield urls.get(timeout=120)
    finally:
        process.terminate()
        process.join(10)


def baseline_fetch(url: str, catalog: pd.DataFrame, out: Path) -> None:
    """The earlier system's pattern: per object, one lookup then seven GETs in ten threads."""
    out.mkdir(parents=True, exist_ok=True)

    def get(target: str, params: dict, path: Path) -> None:
        response = requests.get(target, params=params, timeout=60)
        if response.status_code == 200:
            path.write_bytes(response.content)

    with concurrent.futures.ThreadPoolExecutor(max_workers=10) as pool:
        for index, row in catalog.iterrows():
            positions = io.BytesIO(f"{row.ra} {row.dec}\n".encode())
            table = requests.post(
                f"{url}/cgi-bin/ps1filenames.py",
                data={"filters": "grizy", "type": "stack"},
                files={"file": positions},
                timeout=60,
            ).text
            jobs = []
            for line in table.splitlines()[1:]:
                values = line.split()
                params = {
                    "ra": row.ra,
                    "dec": row.dec,
                    "size": 170,
                    "format": "fits",
                    "red": values[7],
                }
                jobs.append(
                    pool.submit(
                        get, f"{url}/cgi-bin/fitscut.cgi", params, out / f"{index}.{values[4]}.fits"
                    )
                )
            for survey, path in [("galex", "/viewer/fits-cutout"), ("unwise", "/cutout_fits")]:
                params = {"ra": row.ra, "dec": row.dec, "size": 32}
                jobs.append(pool.submit(get, url + path, params, out / f"{index}.{survey}.fits"))
            for job in jobs:
                job.result()


def mantis_fetch(urls: dict[str, str], catalog: pd.DataFrame, out: Path, cap: int) -> None:
    # one base URL per survey, through an endpoints.yaml in $MANTIS_CONFIG_DIR
    folder = out.with_name(out.name + "-config")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "endpoints.yaml").write_text(
        "".join(f"{survey}: {{base_url: '{url}'}}\n" for survey, url in urls.items())
    )
    os.environ["MANTIS_CONFIG_DIR"] = str(folder)
    try:
        summary = fetch_catalog(catalog, cache_dir=out, concurrency=cap, progress=False)
    finally:
        del os.environ["MANTIS_CONFIG_DIR"]
    if not summary.ok:
        raise RuntimeError(summary.format())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=100, help="objects per mantis run")
    parser.add_argument("--baseline-objects", type=int, default=15)
    parser.add_argument("--latency-ms", type=float, default=200.0)
    parser.add_argument(
        "--caps",
        default=None,
        help="per-host caps to try (default: the configured one and twice it)",
    )
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    default_cap = int(load_fetch_config()["client"]["concurrency_per_host"])
    caps = [int(c) for c in args.caps.split(",")] if args.caps else [default_cap, 2 * default_cap]
    latency = args.latency_ms / 1000.0
    rng = np.random.default_rng(1)
    catalog = pd.DataFrame(
        {"ra": rng.uniform(140, 160, args.objects), "dec": rng.uniform(0, 10, args.objects)}
    )
    timings: dict[str, list[float]] = {"baseline": []} | {f"mantis cap {c}": [] for c in caps}
    with service_process(latency) as urls, tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            started = time.perf_counter()
            baseline_fetch(
                urls["ps1"], catalog.iloc[: args.baseline_objects], Path(tmp) / f"baseline{repeat}"
            )
            timings["baseline"].append(args.baseline_objects / (time.perf_counter() - started))
            for cap in caps:
                started = time.perf_counter()
                mantis_fetch(urls, catalog, Path(tmp) / f"mantis{cap}-{repeat}", cap)
                timings[f"mantis cap {cap}"].append(args.objects / (time.perf_counter() - started))

    base = statistics.median(timings["baseline"])
    rows = []
    print(
        f"latency {args.latency_ms:.0f} ms, {args.repeats} repeats, medians; "
        f"baseline {args.baseline_objects} objects, mantis {args.objects} objects"
    )
    print(
        f"{'client':<16} {'objects/s':>10} {'vs baseline':>12} {'PS1 req/s':>10} "
        f"{'bound req/s':>12} {'of bound':>9}"
    )
    for name, values in timings.items():
        rate = statistics.median(values)
        ps1_rate = rate * 5  # five fitscut requests per object (lookups are batched)
        cap = int(name.rsplit(" ", 1)[-1]) if name != "baseline" else None
        bound = cap / latency if cap else None
        row = {
            "client": name,
            "objects_per_s": rate,
            "ratio": rate / base,
            "ps1_requests_per_s": ps1_rate,
            "bound_requests_per_s": bound,
            "fraction_of_bound": ps1_rate / bound if bound else None,
            "runs": values,
        }
        rows.append(row)
        print(
            f"{name:<16} {rate:>10.2f} {rate / base:>11.1f}x {ps1_rate:>10.1f} "
            + (f"{bound:>12.1f} {ps1_rate / bound:>8.0%}" if bound else f"{'-':>12} {'-':>9}")
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "latency_ms": args.latency_ms,
                "objects": args.objects,
                "baseline_objects": args.baseline_objects,
                "default_cap": default_cap,
                "rows": rows,
            },
            indent=2,
        )
    )
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
