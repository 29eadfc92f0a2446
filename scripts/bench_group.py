"""Grouped against per-object fetching, and a local mirror against loopback services.

Side by side in one run, from the imitation server (`mantis.sky` app, 200 ms latency on every
answer, the default politeness cap of 16 requests in flight per host):

* a sparse field: the default sky's spec-z objects in a 0.4 deg box of the COSMOS field
  (about 1 200 per square degree);
* a dense field: uniform positions at 6 000 per square degree in one box.

The server draws a flat sky (constant pixels), so what is measured is the client: requests
sent, latency overlapped within the cap, and the local cutting of group cutouts. Each
(field, mode) fetch starts from an empty cache.

With ``--mirror``, a local survey mirror of the dense field (``mantis sky mirror``) is read
with ``--source local:DIR`` and compared with the same fetch from loopback services without
latency.

Usage: ``python scripts/bench_group.py [--sparse-box 0.4] [--dense 200] [--latency-ms 200]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from mantis.fetch import fetch_catalog

RESULTS = Path(__file__).resolve().parent.parent / "bench" / "results" / "group.json"
DENSE_CENTRE = (150.1, 2.2)
DENSE_PER_DEG2 = 6000.0


class FlatSky:
    """A sky of constant pixels: rendering costs nothing next to the latency."""

    supports_frames = False

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def psf_fwhm(self, band_name: str, ra: float, dec: float) -> float:
        return 1.5

    def render(self, band_name, wcs, shape, *, noise: bool = True, **_):
        return np.full(shape, 0.5, dtype=np.float32)


def _serve(latency_ms: float, ready) -> None:
    from aiohttp import web

    from mantis.sky._server import ServerSettings, create_app

    async def main() -> None:
        settings = ServerSettings(latency_ms=latency_ms, executor="thread", workers=4)
        app = create_app(settings, universe=FlatSky())
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
        ready.send(runner.addresses[0][1])
        await asyncio.Event().wait()

    asyncio.run(main())


def sparse_catalog(box: float) -> pd.DataFrame:
    from mantis.sky import Universe

    spec = Universe.from_config("default", seed=0).spec_catalog()
    near = (np.abs(spec["ra"] - 150.1) < box / 2) & (np.abs(spec["dec"] - 2.2) < box / 2)
    return spec.loc[near, ["id", "ra", "dec"]].reset_index(drop=True)


def dense_catalog(n: int) -> pd.DataFrame:
    side = float(np.sqrt(n / DENSE_PER_DEG2))
    rng = np.random.default_rng(5)
    ra = DENSE_CENTRE[0] + rng.uniform(-side / 2, side / 2, n)
    dec = DENSE_CENTRE[1] + rng.uniform(-side / 2, side / 2, n)
    return pd.DataFrame({"id": [f"d{i:05d}" for i in range(n)], "ra": ra, "dec": dec})


def one_fetch(catalog: pd.DataFrame, url: str, groups: bool, **kwargs) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        summary = fetch_catalog(catalog, cache_dir=tmp, endpoint=url, progress=False,
                                groups=groups, **kwargs)  # fmt: skip
        elapsed = time.perf_counter() - started
    first = sum(summary.requests.values()) - sum(summary.retries.values())
    return {
        "objects": len(catalog),
        "ok": summary.ok,
        "seconds": round(elapsed, 2),
        "objects_per_s": round(len(catalog) / elapsed, 2),
        "requests_per_object": round(first / len(catalog), 3),
        "requests": dict(summary.requests),
        "retries": sum(summary.retries.values()),
        "mb_received": round(summary.bytes_received / 1e6, 1),
    }


def bench_mirror(catalog: pd.DataFrame, side: float) -> dict:
    """Objects/s cut from a local mirror against fetched from loopback services (no latency).

    Only PS1 and unWISE (a mirror holds no GALEX); the build of the same products is timed
    too, since a mirror should leave the build as the limit.
    """
    from mantis.sky._mirror import write_mirror
    from mantis.stack import build_objects

    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    server = context.Process(target=_serve, args=(0.0, send), daemon=True)
    server.start()
    url = f"http://127.0.0.1:{receive.recv()}"
    out: dict = {"objects": len(catalog)}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            write_mirror(
                Path(tmp) / "mirror", [(*DENSE_CENTRE, side)], config="bench_group:FlatSky"
            )
            out["mirror_write_s"] = round(time.perf_counter() - t0, 1)
            for name, endpoint in (
                ("loopback", url),
                ("mirror", f"local:{tmp}/mirror"),
                ("loopback again", url),
                ("mirror again", f"local:{tmp}/mirror"),
            ):
                cache = Path(tmp) / name.replace(" ", "_")
                t0 = time.perf_counter()
                summary = fetch_catalog(
                    catalog,
                    cache_dir=cache,
                    endpoint=endpoint,
                    surveys=("ps1", "unwise"),
                    progress=False,
                )
                dt = time.perf_counter() - t0
                out[name] = {
                    "ok": summary.ok,
                    "seconds": round(dt, 2),
                    "objects_per_s": round(len(catalog) / dt, 1),
                }
                print(name, out[name], flush=True)
            t0 = time.perf_counter()
            build_objects(catalog, Path(tmp) / "mirror_again")
            dt = time.perf_counter() - t0
            out["build"] = {"seconds": round(dt, 2), "objects_per_s": round(len(catalog) / dt, 1)}
            print("build", out["build"], flush=True)
    finally:
        server.terminate()
        server.join(5)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sparse-box", type=float, default=0.4, help="sparse box side, deg")
    parser.add_argument("--dense", type=int, default=200, help="objects in the dense field")
    parser.add_argument("--latency-ms", type=float, default=200.0)
    parser.add_argument("--mirror", action="store_true", help="also: local mirror vs loopback")
    parser.add_argument("--only-mirror", action="store_true", help="only the mirror comparison")
    args = parser.parse_args()
    if args.mirror or args.only_mirror:
        side = float(np.sqrt(args.dense / DENSE_PER_DEG2))
        mirror = bench_mirror(dense_catalog(args.dense), side)
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.with_name("mirror.json").write_text(json.dumps(mirror, indent=1))
        if args.only_mirror:
            return 0

    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    server = context.Process(target=_serve, args=(args.latency_ms, send), daemon=True)
    server.start()
    url = f"http://127.0.0.1:{receive.recv()}"
    fields = {
        "sparse": sparse_catalog(args.sparse_box),
        "dense": dense_catalog(args.dense),
    }
    results: dict = {"latency_ms": args.latency_ms, "cap_per_host": 16, "runs": {}}
    try:
        for field, catalog in fields.items():
            area = args.sparse_box**2 if field == "sparse" else args.dense / DENSE_PER_DEG2
            for mode, groups in (("per-object", False), ("grouped", True)):
                run = one_fetch(catalog, url, groups)
                run["per_deg2"] = round(len(catalog) / area)
                results["runs"][f"{field}/{mode}"] = run
                print(f"{field:<7} {mode:<11} {json.dumps(run)}", flush=True)
    finally:
        server.terminate()
        server.join(5)
    print("\n| field | objects/deg² | mode | requests/object | objects/s | MB |")
    print("|---|---|---|---|---|---|")
    for key, run in results["runs"].items():
        field, mode = key.split("/")
        print(f"| {field} | {run['per_deg2']} | {mode} | {run['requests_per_object']} | "
              f"{run['objects_per_s']} | {run['mb_received']} |")  # fmt: skip
    for field in fields:
        a, b = results["runs"][f"{field}/per-object"], results["runs"][f"{field}/grouped"]
        print(f"{field}: grouped / per-object rate = {b['objects_per_s'] / a['objects_per_s']:.2f}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
