"""Fixtures for the fetcher tests: a loopback guard and a small scriptable survey service."""

from __future__ import annotations

import asyncio
import gzip
import io
import ipaddress
import socket
import tarfile
import threading
from collections import Counter, defaultdict
from collections.abc import Iterator

import numpy as np
import pytest
from aiohttp import web
from astropy.io import fits

from mantis.fetch import ClientSettings

LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "ip6-localhost"}


class LoopbackGuardError(OSError):
    """A test tried to reach beyond the loopback interface."""


def _is_loopback(host: object) -> bool:
    if host is None:
        return False
    text = host.decode() if isinstance(host, bytes) else str(host)
    if text in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(text).is_loopback
    except ValueError:
        return False


@pytest.fixture(autouse=True)
def loopback_only(request, monkeypatch):
    """Refuse every name lookup and connection that is not loopback (except remote tests)."""
    if request.node.get_closest_marker("remote") is not None:
        yield
        return
    real_getaddrinfo, real_connect = socket.getaddrinfo, socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def getaddrinfo(host, *args, **kwargs):
        if not _is_loopback(host):
            raise LoopbackGuardError(f"loopback guard: refused name lookup of {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    def check(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address[0]):
            raise LoopbackGuardError(f"loopback guard: refused connection to {address!r}")

    def connect(sock, address):
        check(sock, address)
        return real_connect(sock, address)

    def connect_ex(sock, address):
        check(sock, address)
        return real_connect_ex(sock, address)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    yield


FAST_CLIENT = {
    "concurrency_per_host": 4,
    "connect_timeout_s": 2.0,
    "read_timeout_s": 1.0,
    "total_timeout_s": 3.0,
    "max_attempts": 4,
    "backoff_base_s": 0.01,
    "backoff_max_s": 0.05,
}


def fast_settings(**overrides) -> ClientSettings:
    """Client settings for tests: short timeouts and back-off."""
    return ClientSettings(**{**FAST_CLIENT, **overrides})


def fast_config(**client) -> dict:
    """A whole fetch configuration with `FAST_CLIENT` settings and small PS1 lookup chunks."""
    return {
        "client": {**FAST_CLIENT, **client},
        "size_arcsec": 42.5,
        "ps1": {"lookup_chunk": 3},
        "galex": {"min_pixels": 32, "no_coverage_after_500s": 3},
        "unwise": {"min_pixels": 32},
    }


def fits_bytes(data: np.ndarray, **header) -> bytes:
    hdu = fits.PrimaryHDU(np.asarray(data))
    for key, value in header.items():
        hdu.header[key] = value
    buffer = io.BytesIO()
    hdu.writeto(buffer)
    return buffer.getvalue()


def galex_bytes(cube: np.ndarray) -> bytes:
    hdul = fits.HDUList(
        [
            fits.PrimaryHDU(cube.astype(np.float32)),
            fits.ImageHDU(np.ones_like(cube, dtype=np.float32)),
        ]
    )
    hdul[0].header["SURVEY"] = "GALEX"
    buffer = io.BytesIO()
    hdul.writeto(buffer)
    return buffer.getvalue()


def unwise_tar(n_tiles: int = 1, size: int = 32) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for tile in range(n_tiles):
            for band in (1, 2):
                for product, compress in (("img-m", False), ("invvar-m", True)):
                    content = fits_bytes(np.full((size, size), band, np.float32), MAGZP=22.5)
                    name = f"unwise-{1000 + tile:04d}p015-w{band}-{product}.fits"
                    if compress:
                        content, name = gzip.compress(content), name + ".gz"
                    info = tarfile.TarInfo(name)
                    info.size = len(content)
                    tar.addfile(info, io.BytesIO(content))
    return gzip.compress(raw.getvalue())


PS1_HEADER = "projcell subcell ra dec filter mjd type filename shortname badflag"


class FakeSurveys:
    """An aiohttp app answering the three services' paths, with faults scripted per request.

    ``script[key]`` is a list of fault kinds consumed one per request whose key matches (the
    key is ``'lookup'``, ``'ps1-<band>'``, ``'unwise'`` or ``'galex'``), e.g.
    ``{'galex': ['http503', 'truncated']}``. Positions with dec < -30 have no PS1 files;
    ra in [200, 210) is outside GALEX (HTTP 500), ra in [210, 220) is a GALEX gap (zeros),
    ra in [220, 230) has an all-NaN PS1 y band.
    """

    def __init__(self) -> None:
        self.script: dict[str, list[str]] = defaultdict(list)
        self.counts: Counter = Counter()
        self.requests: list[tuple[str, dict]] = []
        # 'echo': lookup rows carry the requested ra/dec; 'centre': the skycell centre;
        # 'scrambled': skycell centres with the blocks in reverse order (unmatchable)
        self.lookup_mode = "echo"
        self.base_url = ""

    def _fault(self, key: str) -> str | None:
        return self.script[key].pop(0) if self.script[key] else None

    async def _apply(self, fault: str | None, body: bytes, content_type: str) -> web.Response:
        if fault == "http500":
            return web.Response(status=500, text="Server Error (500)")
        if fault == "http503":
            return web.Response(status=503, text="Service Unavailable")
        if fault == "html":
            return web.Response(
                text="<html><body>Maintenance</body></html>", content_type="text/html"
            )
        if fault == "text":
            return web.Response(text="failed to parse request", content_type="text/plain")
        if fault == "stall":
            await asyncio.sleep(30)
        if fault == "truncated":
            # a correct Content-Length is sent, then the body stops short
            return web.Response(body=body[: len(body) * 2 // 3], content_type=content_type)
        return web.Response(body=body, content_type=content_type)

    def _lookup_rows(self, ra: float, dec: float, filters: str) -> list[str]:
        if dec < -30:
            return []
        cell = int(ra * 10) % 2000
        shown = (ra, dec) if self.lookup_mode == "echo" else (round(ra, 1) + 0.05, round(dec, 1))
        return [
            f"{cell} 51 {shown[0]:.8f} {shown[1]:.8f} {f} 0.0 stack "
            f"/rings.v3.skycell/{cell:04d}/051/rings.v3.skycell.{cell:04d}.051.stk.{f}.unconv.fits "
            f"rings.v3.skycell.{cell:04d}.051.stk.{f}.unconv.fits 0"
            for f in filters
        ]

    async def ps1filenames(self, request: web.Request) -> web.Response:
        if request.method == "POST":
            form = await request.post()
            text = form["file"].file.read().decode()
            positions = [tuple(map(float, line.split())) for line in text.splitlines() if line]
            filters = form["filters"]
        else:
            positions = [(float(request.query["ra"]), float(request.query["dec"]))]
            filters = request.query["filters"]
        self.counts["lookup"] += 1
        self.requests.append(("lookup", {"n": len(positions), "method": request.method}))
        if self.lookup_mode == "scrambled":
            positions = positions[::-1]
        rows = [row for ra, dec in positions for row in self._lookup_rows(ra, dec, filters)]
        body = "\n".join([PS1_HEADER, *rows]).encode() + b"\n"
        return await self._apply(self._fault("lookup"), body, "text/plain")

    async def fitscut(self, request: web.Request) -> web.Response:
        q = request.query
        band = q["red"].split(".stk.")[1][0]
        self.counts[f"ps1-{band}"] += 1
        self.requests.append((f"ps1-{band}", dict(q)))
        size, ra = int(q["size"]), float(q["ra"])
        data = np.full((size, size), 5.0, np.float32)
        data[:, : size // 4] = np.nan  # a skycell edge: partly NaN is kept
        fault = self._fault(f"ps1-{band}")
        if (220 <= ra < 230 and band == "y") or fault == "nan":
            data[:] = np.nan
            fault = None
        body = fits_bytes(data, EXPTIME=100.0, **{"HIERARCH FPA.ZP": 25.0})
        return await self._apply(fault, body, "image/fits")

    async def unwise(self, request: web.Request) -> web.Response:
        self.counts["unwise"] += 1
        self.requests.append(("unwise", dict(request.query)))
        size = int(request.query["size"])
        body = unwise_tar(n_tiles=2 if float(request.query["ra"]) >= 300 else 1, size=size)
        return await self._apply(self._fault("unwise"), body, "application/x-compressed")

    async def galex(self, request: web.Request) -> web.Response:
        self.counts["galex"] += 1
        self.requests.append(("galex", dict(request.query)))
        ra, size = float(request.query["ra"]), int(request.query["size"])
        if 200 <= ra < 210:
            return web.Response(status=500, text="Server Error (500)")
        cube = np.zeros((2, size, size), np.float32)
        if not 210 <= ra < 220:
            cube += 0.01
        return await self._apply(self._fault("galex"), galex_bytes(cube), "image/fits")

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/cgi-bin/ps1filenames.py", self.ps1filenames)
        app.router.add_get("/cgi-bin/fitscut.cgi", self.fitscut)
        app.router.add_get("/cutout_fits", self.unwise)
        app.router.add_get("/viewer/fits-cutout", self.galex)
        return app


@pytest.fixture
def fake_surveys() -> Iterator[FakeSurveys]:
    """A `FakeSurveys` app served on 127.0.0.1 from a background thread."""
    service = FakeSurveys()
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    runner_box = {}

    async def start() -> None:
        runner = web.AppRunner(service.app(), handle_signals=False, shutdown_timeout=0.1)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        service.base_url = f"http://127.0.0.1:{port}"
        runner_box["runner"] = runner
        ready.set()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(start())
        except BaseException as err:  # surface startup errors in the test, not the thread
            runner_box["error"] = err
            ready.set()
            return
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(10), "fake survey service did not start"
    if "error" in runner_box:
        raise runner_box["error"]
    yield service
    asyncio.run_coroutine_threadsafe(runner_box["runner"].cleanup(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


@pytest.fixture
def make_settings():
    """`fast_settings` as a fixture (test modules do not import conftest)."""
    return fast_settings


@pytest.fixture
def fetch_fake(fake_surveys, tmp_path):
    """Call `fetch_catalog` against the fake services into ``tmp_path`` with fast settings."""
    from mantis.fetch import fetch_catalog

    def run(catalog, *, client=None, **kwargs):
        kwargs.setdefault("config", fast_config(**(client or {})))
        return fetch_catalog(
            catalog, cache_dir=tmp_path, endpoint=fake_surveys.base_url, progress=False, **kwargs
        )

    return run


@pytest.fixture(name="fast_config")
def fast_config_fixture():
    """`fast_config` as a fixture."""
    return fast_config
