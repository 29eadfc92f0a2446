"""Test helpers: serve an application in a thread, or run ``mantis serve`` in a subprocess."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Any

from mantis.exceptions import MantisError

__all__ = [
    "SERVICE_START_TIMEOUT_S",
    "SMALL_BUILD",
    "running_service",
    "serving_in_thread",
    "train_small_checkpoint",
]

SERVICE_START_TIMEOUT_S = 120.0
# Small grids keep the build and the network fast (as in tests/predict/test_integration.py).
SMALL_BUILD = {
    "grids": {
        "galex": {"pixel_scale": 1.5, "size": 16},
        "ps1": {"pixel_scale": 0.25, "size": 64},
        "unwise": {"pixel_scale": 2.75, "size": 8},
        "early": {"pixel_scale": 1.0, "size": 16},
    },
    "split": {"nside": 4096, "fractions": {"train": 0.7, "val": 0.15, "test": 0.15}, "seed": 0},
}


def train_small_checkpoint(root: Any, endpoint: str) -> tuple[Any, Any]:
    """Fetch the `test` sky's spec-z galaxies from ``endpoint``, build, train one epoch.

    Returns
    -------
    tuple of (pandas.DataFrame, Path)
        The spectroscopic catalogue and the checkpoint (smoke early-fusion model).
    """
    from pathlib import Path

    from mantis.config import load_config
    from mantis.fetch import fetch_catalog
    from mantis.models import train_model
    from mantis.sky import Universe
    from mantis.stack import build_dataset

    root = Path(root)
    spec = Universe.from_config("test", seed=0).spec_catalog().reset_index(drop=True)
    summary = fetch_catalog(spec, cache_dir=root / "train-cache", endpoint=endpoint,
                            progress=False)  # fmt: skip
    if not summary.ok:
        raise MantisError(summary.format())
    build_dataset(spec, root / "train-cache", root / "train.h5",
                  {**load_config("build"), **SMALL_BUILD}, progress=False)  # fmt: skip
    checkpoint = train_model("configs/train/smoke_early.yaml", root / "train.h5", root / "run",
                             overrides={"trainer.max_epochs": 1})  # fmt: skip
    return spec, checkpoint


@contextlib.contextmanager
def serving_in_thread(app: Any) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free loopback port in a thread; yield the base URL."""
    import uvicorn

    from mantis.serve._run import bind

    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + SERVICE_START_TIMEOUT_S
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise MantisError("the application did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


@contextlib.contextmanager
def running_service(args: list[str]) -> Iterator[tuple[str, subprocess.Popen]]:
    """Run ``mantis serve --port 0 ARGS`` and yield ``(base URL, process)``.

    The process is stopped with SIGINT (as Ctrl-C would) when the block exits, unless the
    block stopped it already.
    """
    command = [sys.executable, "-m", "mantis", "serve", "--port", "0", *args]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with tempfile.TemporaryFile(mode="w+") as stderr:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, text=True,
                                   env=env)  # fmt: skip
        found: list[str] = []

        def read() -> None:  # drains stdout until the process ends
            for line in process.stdout:
                if "listening on " in line and not found:
                    found.append(line.split("listening on ", 1)[1].split()[0])

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            yield _wait_for_url(process, stderr, found), process
        finally:
            _stop(process)
            reader.join(timeout=30)
            process.stdout.close()


def _wait_for_url(process: subprocess.Popen, stderr, found: list[str]) -> str:
    deadline = time.monotonic() + SERVICE_START_TIMEOUT_S
    while not found:
        if process.poll() is not None or time.monotonic() > deadline:
            stderr.seek(0)
            raise MantisError(f"mantis serve did not start: {stderr.read()[-2000:]}")
        time.sleep(0.05)
    return found[0]


def _stop(process: subprocess.Popen) -> None:
    import signal

    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
