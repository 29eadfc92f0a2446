"""Running the imitation services: ``mantis sky serve`` in a subprocess, or in this process.

`running_server` is how the pipeline (``make train``) and the tests put the imitation services
up; it lives with the server so that production code never imports a test-support module.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any

from mantis.exceptions import MantisError

__all__ = ["SERVER_START_TIMEOUT_S", "running_server", "serving_in_process"]

SERVER_START_TIMEOUT_S = 300.0  # first start may build and cache the sky population


@contextlib.contextmanager
def running_server(
    *,
    config: str = "test",
    seed: int = 0,
    latency_ms: float = 0,
    fail_rate: float = 0.0,
    faults: str | Iterable[str] | None = None,
    stall_s: float = 30.0,
    workers: int = 2,
    threads: bool = False,
) -> Iterator[str]:
    """Run ``mantis sky serve --port 0`` on 127.0.0.1 and yield its base URL.

    Parameters
    ----------
    config, seed : str, int
        Sky configuration and seed.
    latency_ms, fail_rate, faults, stall_s : float, float, str or iterable, float
        Fault settings, as the command-line options of the same names.
    workers, threads : int, bool
        Rendering pool size and kind.

    Yields
    ------
    str
        ``http://127.0.0.1:PORT``. The server stops when the block exits.

    Raises
    ------
    MantisError
        If the server exits or stays silent for `SERVER_START_TIMEOUT_S` before it is ready.
    """
    command = [
        sys.executable, "-m", "mantis", "sky", "serve", "--port", "0",
        "--config", str(config), "--seed", str(seed), "--latency-ms", str(latency_ms),
        "--fail-rate", str(fail_rate), "--stall-s", str(stall_s), "--workers", str(workers),
    ]  # fmt: skip
    if faults is not None:
        command += ["--faults", faults if isinstance(faults, str) else ",".join(faults)]
    if threads:
        command.append("--threads")
    with tempfile.TemporaryFile(mode="w+") as stderr:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env
        )
        try:
            yield _wait_until_ready(process, stderr)
        finally:
            _stop(process)


def _wait_until_ready(process: subprocess.Popen, stderr) -> str:
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        for line in process.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            continue
        if line is None:
            break
        if line.startswith("serving on "):
            return line.split()[-1].strip()
    process.poll()
    stderr.seek(0)
    tail = stderr.read()[-3000:]
    raise MantisError(
        f"mantis sky serve did not become ready (exit status {process.returncode}):\n{tail}"
    )


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process.stdout is not None:
        process.stdout.close()


@contextlib.asynccontextmanager
async def serving_in_process(universe: Any, **settings: Any) -> AsyncIterator[str]:
    """Serve ``universe`` from this process's event loop (threads render); yield the base URL.

    Faster to start than `running_server` and accepts any universe object (for example a
    `PointSourceUniverse`); ``settings`` are `mantis.sky._server.ServerSettings` fields.
    """
    from aiohttp import web

    from mantis.sky._server import SHUTDOWN_TIMEOUT_S, ServerSettings, create_app

    settings.setdefault("executor", "thread")
    app = create_app(ServerSettings(**settings), universe=universe)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_S)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()
