"""Against the imitation server `mantis sky serve`: injected faults, kill -9 and resume."""

from __future__ import annotations

import gzip
import io
import os
import signal
import sqlite3
import subprocess
import sys
import tarfile
import time

import numpy as np
import pandas as pd
import yaml
from astropy.io import fits

from mantis.fetch import CutoutCache, fetch_catalog
from mantis.sky._coverage import galex_pointings_near
from mantis.sky.testing import running_server

SIZE_ARCSEC = 20.0  # small cutouts keep the server's rendering cheap


def _galex_hole(dec: float = 10.0) -> float:
    for ra in np.arange(0.0, 360.0, 0.25):
        if not galex_pointings_near(float(ra), dec, 0.05):
            return float(ra)
    raise AssertionError("no GALEX hole found")


def _catalog(n_field: int) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    ra = [*(150.1 + rng.uniform(-0.08, 0.08, n_field)), 53.1, _galex_hole()]
    dec = [*(2.2 + rng.uniform(-0.08, 0.08, n_field)), -40.0, 10.0]
    ids = [*(f"field{i}" for i in range(n_field)), "south", "galexhole"]
    return pd.DataFrame({"id": ids, "ra": ra, "dec": dec})


def _config(fast_config, **client):
    config = fast_config(
        **{"total_timeout_s": 10.0, "read_timeout_s": 8.0, "max_attempts": 6, **client}
    )
    config["ps1"]["lookup_chunk"] = 4
    return config


def _fetch(catalog, cache_dir, url, fast_config):
    return fetch_catalog(
        catalog,
        cache_dir=cache_dir,
        endpoint=url,
        progress=False,
        size_arcsec=SIZE_ARCSEC,
        config=_config(fast_config),
    )


def _open_everything(cache: CutoutCache, catalog: pd.DataFrame) -> int:
    """Open every cached product with astropy, warnings as errors; return files opened."""
    opened = 0
    for oid in catalog["id"]:
        for survey in ("ps1", "galex", "unwise"):
            for path in cache.product_paths(oid, survey):
                if path.name.endswith(".tar.gz"):
                    with tarfile.open(path) as tar:
                        for member in tar.getmembers():
                            content = tar.extractfile(member).read()
                            if member.name.endswith(".gz"):
                                content = gzip.decompress(content)
                            with fits.open(io.BytesIO(content)) as hdul:
                                assert np.isfinite(hdul[0].data).any()
                else:
                    with fits.open(path) as hdul:
                        hdul.verify("exception")
                        assert np.isfinite(hdul[0].data).any()
                opened += 1
    return opened


def test_ten_percent_faults_of_every_kind_end_done_or_no_coverage(tmp_path, fast_config):
    catalog = _catalog(5)
    with running_server(fail_rate=0.1, stall_s=12, threads=True) as url:
        summary = _fetch(catalog, tmp_path, url, fast_config)
    assert summary.ok, summary.format()
    assert sum(summary.retries.values()) > 0  # faults were met and survived
    cache = CutoutCache(tmp_path)
    for survey in ("ps1", "galex", "unwise"):
        assert set(cache.statuses(survey).values()) <= {"done", "no_coverage"}
    assert cache.status("south", "ps1") == "no_coverage"
    assert cache.status("galexhole", "galex") == "no_coverage"
    assert all(
        cache.status(f"field{i}", s) == "done" for i in range(5) for s in ("ps1", "galex", "unwise")
    )
    assert _open_everything(cache, catalog) >= 5 * 7
    assert not list(tmp_path.rglob("*.part-*"))


def _manifest_done(path) -> int:
    if not path.exists():
        return 0
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as db:
        try:
            return db.execute("SELECT COUNT(*) FROM products WHERE status='done'").fetchone()[0]
        except sqlite3.OperationalError:
            return 0


def test_kill_9_then_rerun_refetches_nothing_finished(tmp_path, fast_config):
    catalog = _catalog(6)
    catalog_path = tmp_path / "cat.csv"
    catalog.to_csv(catalog_path, index=False)
    config_path = tmp_path / "fetch.yaml"
    config_path.write_text(yaml.safe_dump(_config(fast_config, concurrency_per_host=2)))
    cache_dir = tmp_path / "cache"
    with running_server(latency_ms=200, threads=True) as url:
        command = [
            sys.executable,
            "-m",
            "mantis",
            "fetch",
            str(catalog_path),
            "--out",
            str(cache_dir),
            "--endpoint",
            url,
            "--config",
            str(config_path),
            "--size",
            str(SIZE_ARCSEC),
            "--no-progress",
        ]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 240
        while _manifest_done(cache_dir / "manifest.sqlite") < 4 and process.poll() is None:
            assert time.monotonic() < deadline, "fetch made no progress"
            time.sleep(0.05)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        assert process.returncode == -signal.SIGKILL, "the fetch ended before it was killed"

        cache = CutoutCache(cache_dir)
        before = {
            (r["object_id"], r["survey"]): r for r in cache.iter_rows() if r["status"] == "done"
        }
        assert 4 <= len(before) < 3 * len(catalog)
        _open_everything(cache, catalog)  # what was done before the kill is complete
        cache.close()

        summary = _fetch(catalog_path, cache_dir, url, fast_config)
    assert summary.ok, summary.format()
    assert sum(summary.skipped.values()) >= len(before)
    cache = CutoutCache(cache_dir)
    for key, row in before.items():
        after = cache.record(*key)
        assert after["attempts"] == 1 and after["updated"] == row["updated"]
        assert after["sha256"] == row["sha256"]
    assert _open_everything(cache, catalog) >= 6 * 7
    assert not list(cache_dir.rglob("*.part-*"))
