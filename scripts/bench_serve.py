"""Benchmark `mantis serve`: 64 concurrent clients on /v1/predict against `mantis predict`.

Both run on the same objects with the same trained checkpoint and a warm cutout cache (the
imitation services of ``mantis sky serve`` on loopback fill it first):

1. batch: `predict_catalog` (what ``mantis predict`` runs) on the whole catalogue, timed
   in-process with the checkpoint loaded, as the service has it loaded;
2. service: ``mantis serve`` in a subprocess with the rate limit off; CLIENTS threads each
   send their share of the catalogue in requests of BATCH positions, every request timed.

Bounded: ROUNDS passes over the catalogue, each client stops after DEADLINE seconds. Prints
median and p95 latency, objects/s of both and their ratio; writes bench/results/serve.json.
Without ``--checkpoint`` it trains the smoke early-fusion model for one epoch first.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import requests


def catalogue(n: int) -> pd.DataFrame:
    """``n`` distinct positions around the `test` sky's galaxies (no id: named by position)."""
    from mantis.sky import Universe

    spec = Universe.from_config("test", seed=0).spec_catalog()
    rng = np.random.default_rng(0)
    pick = rng.integers(0, len(spec), n)
    ra = spec["ra"].to_numpy()[pick] + rng.uniform(-0.01, 0.01, n)
    dec = spec["dec"].to_numpy()[pick] + rng.uniform(-0.01, 0.01, n)
    return pd.DataFrame({"ra": np.round(ra % 360, 5), "dec": np.round(dec, 5)}).drop_duplicates()


def run_clients(url: str, cat: pd.DataFrame, clients: int, batch: int, rounds: int,
                deadline_s: float) -> dict:  # fmt: skip
    positions = [{"ra": float(r), "dec": float(d)} for r, d in zip(cat["ra"], cat["dec"],
                                                                  strict=True)]  # fmt: skip
    requests_all = [positions[k : k + batch] for k in range(0, len(positions), batch)] * rounds
    shares = [requests_all[c::clients] for c in range(clients)]
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    start_gate = threading.Barrier(clients + 1)

    def client(share: list) -> None:
        session = requests.Session()
        start_gate.wait()
        stop_at = time.monotonic() + deadline_s
        for body in share:
            if time.monotonic() > stop_at:
                break
            t0 = time.perf_counter()
            answer = session.post(f"{url}/v1/predict", json={"positions": body}, timeout=600)
            elapsed = time.perf_counter() - t0
            ok = answer.status_code == 200 and len(answer.json()["objects"]) == len(body)
            with lock:
                latencies.append(elapsed) if ok else errors.append(answer.text[:200])

    threads = [threading.Thread(target=client, args=(s,)) for s in shares]
    for t in threads:
        t.start()
    start_gate.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    n_objects = len(latencies) * batch
    return {"clients": clients, "batch": batch, "requests": len(latencies), "errors": len(errors),
            "error_examples": errors[:3], "wall_s": wall, "objects_per_s": n_objects / wall,
            "latency_median_s": statistics.median(latencies),
            "latency_p95_s": float(np.percentile(latencies, 95))}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None, help="trained checkpoint (default: train)")
    parser.add_argument("--objects", type=int, default=1024)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16, help="positions per request")
    parser.add_argument("--rounds", type=int, default=2, help="passes over the catalogue")
    parser.add_argument("--deadline", type=float, default=300.0, help="seconds per client")
    args = parser.parse_args()

    from mantis.predict import predict_catalog
    from mantis.serve.testing import running_service, train_small_checkpoint
    from mantis.sky.testing import running_server

    with tempfile.TemporaryDirectory() as tmp, running_server(seed=0) as sky:
        root = Path(tmp)
        checkpoint = (
            Path(args.checkpoint) if args.checkpoint else train_small_checkpoint(root, sky)[1]
        )
        cat = catalogue(args.objects)
        cat.to_csv(root / "cat.csv", index=False)
        cache = root / "cache"
        t0 = time.perf_counter()
        predict_catalog(root / "cat.csv", root / "cold.parquet", checkpoint=checkpoint,
                        endpoint=sky, cache_dir=cache, progress=False)  # fmt: skip
        cold_s = time.perf_counter() - t0

        from mantis.serve import PredictionEngine

        engine = PredictionEngine.from_checkpoint(checkpoint, cache_dir=cache, endpoint=sky)
        batch_runs = []
        for k in range(2):  # the second run is the one with every cache warm
            t0 = time.perf_counter()
            predict_catalog(root / "cat.csv", root / f"warm{k}.parquet", predictor=engine.predictor,
                            source=engine.source, progress=False)  # fmt: skip
            batch_runs.append(time.perf_counter() - t0)
        batch_rate = len(cat) / batch_runs[-1]

        serve_args = ["--checkpoint", str(checkpoint), "--endpoint", sky, "--cache", str(cache),
                      "--state", str(root / "state"), "--rate", "0"]  # fmt: skip
        with running_service(serve_args) as (url, _):
            first = cat.head(args.batch)
            run_clients(url, first, 1, args.batch, 1, 60)  # warm the interpreter and model
            service = run_clients(url, cat, args.clients, args.batch, args.rounds, args.deadline)

    result = {
        "objects": len(cat), "cold_batch_s": cold_s, "warm_batch_s": batch_runs[-1],
        "batch_objects_per_s": batch_rate, "service": service,
        "batch_over_service": batch_rate / service["objects_per_s"],
    }  # fmt: skip
    print(f"objects: {len(cat)} (cache filled in {cold_s:.1f} s)")
    print("| path | objects/s | median latency | p95 latency | errors |")
    print("|---|---|---|---|---|")
    print(f"| mantis predict (batch, warm cache) | {batch_rate:.0f} | - | - | - |")
    print(f"| mantis serve, {service['clients']} clients x {service['batch']} positions | "
          f"{service['objects_per_s']:.0f} | {service['latency_median_s'] * 1000:.0f} ms | "
          f"{service['latency_p95_s'] * 1000:.0f} ms | {service['errors']} of "
          f"{service['requests'] + service['errors']} |")  # fmt: skip
    print(f"batch rate / service rate = {result['batch_over_service']:.2f}")
    out = Path("bench/results/serve.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    return 0 if service["errors"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
