"""Test helper: `running_server` starts ``mantis sky serve`` in a subprocess on a free port."""

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

import numpy as np

from mantis.exceptions import MantisError
from mantis.surveys import BANDS, band, mag_to_nanomaggies

__all__ = [
    "SERVER_START_TIMEOUT_S",
    "PointSourceUniverse",
    "point_source_universe",
    "running_server",
    "serving_in_process",
    "serving_in_thread",
]

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


class PointSourceUniverse:
    """A tiny stand-in sky: Gaussian point sources of known magnitudes, no noise.

    It has the two methods the server needs (`render`, `psf_fwhm`), draws each source with the
    band's typical PSF (flux integrated over each pixel, so totals are exact), and is meant
    for tests that need truth known to the last digit.

    Parameters
    ----------
    sources : iterable of (ra, dec, mags)
        Position in degrees and a mapping band name -> AB magnitude.
    """

    def __init__(self, sources: Iterable[tuple[float, float, dict[str, float]]]) -> None:
        self.sources = [(float(ra), float(dec), dict(mags)) for ra, dec, mags in sources]

    def psf_fwhm(self, band_name: str, ra: float, dec: float) -> float:
        """PSF FWHM in arcsec (the band's typical value everywhere)."""
        return band(band_name).psf_fwhm

    def render(self, band_name: str, wcs, shape: tuple[int, int], *, noise: bool = True):
        """AB nanomaggies per pixel on ``wcs``; ``noise`` is accepted and ignored."""
        from scipy.special import erf

        height, width = shape
        scale = float(np.sqrt(abs(np.linalg.det(wcs.celestial.pixel_scale_matrix)))) * 3600.0
        sigma = band(band_name).psf_fwhm / (2.0 * np.sqrt(2.0 * np.log(2.0))) / scale
        image = np.zeros(shape)
        edges_x = np.arange(width + 1) - 0.5
        edges_y = np.arange(height + 1) - 0.5
        for ra, dec, mags in self.sources:
            x, y = wcs.celestial.all_world2pix(ra, dec, 0)
            if not (-10 * sigma < x < width + 10 * sigma and -10 * sigma < y < height + 10 * sigma):
                continue
            fx = np.diff(erf((edges_x - x) / (np.sqrt(2.0) * sigma))) / 2.0
            fy = np.diff(erf((edges_y - y) / (np.sqrt(2.0) * sigma))) / 2.0
            image += float(mag_to_nanomaggies(mags[band_name])) * np.outer(fy, fx)
        return image.astype(np.float32)


def point_source_universe(seed: int = 0) -> PointSourceUniverse:
    """Stand-in sky for ``--config mantis.sky.testing:point_source_universe``.

    A 5 x 5 grid of sources 30 arcsec apart around (150.1, 2.2), magnitudes 16-18 depending on
    the seed; a second grid around (10.3, -45.0), south of the PS1 footprint.
    """
    rng = np.random.default_rng(seed)
    sources = []
    for ra0, dec0 in ((150.1, 2.2), (10.3, -45.0)):
        for i in range(5):
            for j in range(5):
                mags = {b.name: float(rng.uniform(16.0, 18.0)) for b in BANDS}
                sources.append(
                    (ra0 + (i - 2) * 30.0 / 3600.0, dec0 + (j - 2) * 30.0 / 3600.0, mags)
                )
    return PointSourceUniverse(sources)


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


@contextlib.contextmanager
def serving_in_thread(universe: Any, **settings: Any) -> Iterator[str]:
    """`serving_in_process` on an event loop of its own thread, so synchronous code can fetch.

    Yields
    ------
    str
        ``http://127.0.0.1:PORT``; the server stops when the block exits.
    """
    import asyncio
    import threading

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = serving_in_process(universe, **settings)
    url = asyncio.run_coroutine_threadsafe(server.__aenter__(), loop).result(60)
    try:
        yield url
    finally:
        asyncio.run_coroutine_threadsafe(server.__aexit__(None, None, None), loop).result(60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
