"""The imitation survey server: PS1 fitscut, unwise.me and the Legacy Survey viewer on loopback.

Paths, parameters, formats and failure behaviour follow the real services (see
``reference/services.md``): ``/cgi-bin/ps1filenames.py`` (GET and POST),
``/cgi-bin/fitscut.cgi``, ``/cutout_fits`` and ``/viewer/fits-cutout`` (alias
``/viewer/cutout.fits``, ``layer=galex``). Requests are parsed on the event loop; pixels are
rendered in a process pool (each worker holds the universe) or a thread pool, so many
connections are served at once. Faults come from `mantis.sky._faults.FaultPlan`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import html
import importlib
import multiprocessing
import os
import sys
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from mantis.exceptions import ConfigError, NoCoverageError
from mantis.sky import _faults as fault_mod
from mantis.sky import _formats as formats
from mantis.sky._coverage import ps1_skycell
from mantis.sky._params import (
    BadRequest,
    parse_fitscut,
    parse_galex,
    parse_ps1_filenames,
    parse_unwise,
)

__all__ = ["LOOPBACK_HOSTS", "ServerSettings", "build_product", "create_app", "serve"]

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
HTML_ERROR_PAGE = (
    "<!DOCTYPE html><html><head><title>{title}</title></head>"
    "<body><h1>{title}</h1><p>{detail}</p></body></html>"
)
LATENCY_FAULT_S = 2.0  # extra delay of a 'latency' fault, on top of --latency-ms
SHUTDOWN_TIMEOUT_S = 1.0  # on stop, stalled answers are dropped rather than awaited

_WORKER_UNIVERSE: Any = None


@dataclass(frozen=True)
class ServerSettings:
    """Everything that decides the server's answers.

    Attributes
    ----------
    config : str
        Universe configuration: a name under ``mantis/configs/sky/``, a YAML path, or
        ``'package.module:factory'``, which imports and runs that module (trusted code only).
    seed : int
        Universe and fault seed.
    latency_ms : float
        Delay added to every answer, milliseconds.
    fail_rate : float
        Probability in [0, 1] that an attempt fails (see `mantis.sky._faults`).
    faults : tuple of str or None
        Fault kinds to draw from; None means all.
    stall_s : float
        How long a ``stall`` fault holds the connection before answering, seconds.
    workers : int
        Rendering processes (or threads with ``executor='thread'``).
    executor : str
        ``'process'`` or ``'thread'``.
    """

    config: str = "default"
    seed: int = 0
    latency_ms: float = 0.0
    fail_rate: float = 0.0
    faults: tuple[str, ...] | None = None
    stall_s: float = 30.0
    workers: int = 2
    executor: str = "process"

    def __post_init__(self) -> None:
        if self.latency_ms < 0:
            raise ConfigError(f"--latency-ms must be >= 0, got {self.latency_ms!r}")
        if not 0.0 <= self.fail_rate <= 1.0:
            raise ConfigError(f"--fail-rate must lie in [0, 1], got {self.fail_rate!r}")
        if self.stall_s < 0:
            raise ConfigError(f"--stall-s must be >= 0, got {self.stall_s!r}")
        if self.workers < 1:
            raise ConfigError(f"--workers must be >= 1, got {self.workers!r}")
        if self.executor not in ("process", "thread"):
            raise ConfigError(f"executor must be 'process' or 'thread', got {self.executor!r}")


def load_universe(config: str, seed: int) -> Any:
    """Load the simulated universe for (config, seed).

    A ``config`` of the form ``'package.module:factory'`` imports ``package.module`` and calls
    ``factory(seed=seed)`` instead (any object with ``render`` and ``psf_fwhm``, e.g. a user's
    own sky). Importing runs that module's code with the server's rights: give only modules
    you trust.
    """
    if ":" in config:
        module_name, _, attribute = config.partition(":")
        try:
            factory = getattr(importlib.import_module(module_name), attribute)
        except (ImportError, AttributeError) as err:
            raise ConfigError(f"cannot load universe factory {config!r}: {err}") from None
        return factory(seed=seed)
    from mantis.sky._universe import Universe

    return Universe.from_config(config, seed=seed)


def _init_worker(config: str, seed: int) -> None:
    global _WORKER_UNIVERSE
    if _WORKER_UNIVERSE is None:  # forked workers inherit the parent's universe
        _WORKER_UNIVERSE = load_universe(config, seed)


def _ping() -> int:
    return os.getpid()


def build_product(
    kind: str, params: dict, seed: int, all_nan: bool = False, universe: Any = None
) -> bytes:
    """Render one product (runs in a worker). ``kind``: ``'ps1'``, ``'unwise'`` or ``'galex'``.

    Raises
    ------
    NoCoverageError
        For a GALEX cutout outside every pointing.
    """
    universe = _WORKER_UNIVERSE if universe is None else universe
    if kind == "ps1":
        skycell = ps1_skycell(params["projcell"], params["subcell"])
        body = formats.ps1_cutout(
            universe, skycell, params["band"], params["ra"], params["dec"], params["size"],
            seed=seed, product=params["product"], all_nan=all_nan,
        )  # fmt: skip
        if params["format"] != "fits":
            body = formats.fits_to_picture(body, params["format"])
        return body
    if kind == "unwise":
        return formats.unwise_tar(
            universe, params["ra"], params["dec"], params["size"], params["bands"],
            params["file_types"], seed=seed, all_nan=all_nan,
        )  # fmt: skip
    if kind == "galex":
        return formats.galex_cutout(
            universe, params["ra"], params["dec"], params["width"], params["height"],
            params["pixscale"], params["bands"], invvar=params["invvar"], seed=seed,
            all_nan=all_nan,
        )  # fmt: skip
    raise ValueError(f"unknown product kind {kind!r}")


class _App:
    """Request handlers sharing the executor, the settings and the fault plan."""

    def __init__(self, settings: ServerSettings, universe: Any = None) -> None:
        self.settings = settings
        self.plan = fault_mod.FaultPlan(settings.seed, settings.fail_rate, settings.faults)
        self.universe = universe  # set: render in threads with this object (tests)
        self.pool: concurrent.futures.Executor | None = None

    def start_pool(self) -> None:
        """Create the rendering pool; process workers are started (and loaded) right away."""
        s = self.settings
        if self.universe is not None or s.executor == "thread":
            if self.universe is None:
                self.universe = load_universe(s.config, s.seed)
            self.pool = concurrent.futures.ThreadPoolExecutor(s.workers, "mantis-render")
            return
        global _WORKER_UNIVERSE
        _WORKER_UNIVERSE = load_universe(s.config, s.seed)  # fail early, fill the cache
        methods = multiprocessing.get_all_start_methods()
        context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
        self.pool = concurrent.futures.ProcessPoolExecutor(
            s.workers, mp_context=context, initializer=_init_worker, initargs=(s.config, s.seed)
        )
        for future in [self.pool.submit(_ping) for _ in range(s.workers)]:
            future.result()

    def stop_pool(self) -> None:
        """Shut the rendering pool down."""
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.pool = None

    async def render(self, kind: str, params: dict, all_nan: bool) -> bytes:
        loop = asyncio.get_running_loop()
        seed = self.settings.seed
        if self.universe is not None:
            args = (kind, params, seed, all_nan, self.universe)
        else:
            args = (kind, params, seed, all_nan)
        return await loop.run_in_executor(self.pool, build_product, *args)

    # ------------------------------------------------------------------ fault wrapper
    async def answer(self, request: web.Request, produce, *, image: bool) -> web.StreamResponse:
        """Apply latency and the planned fault around ``produce(all_nan) -> Response``."""
        body = await _form_bytes(request) if request.method == "POST" else b""
        key = fault_mod.request_key(request.method, request.path, request.query.items(), body)
        fault = self.plan.decide(key, image=image)
        delay = self.settings.latency_ms / 1000.0
        if fault == "latency":
            delay += LATENCY_FAULT_S
        elif fault == "stall":
            delay += self.settings.stall_s
        if delay:
            await asyncio.sleep(delay)
        if fault == "http500":
            return _html(500, "Internal Server Error", "The server encountered an error.")
        if fault == "http503":
            page = _html(503, "Service Unavailable", "The server is temporarily overloaded.")
            page.headers["Retry-After"] = "1"
            return page
        if fault == "html":
            return _html(200, "Maintenance", "This service is down for maintenance.")
        response = await produce(fault == "nan")
        if fault == "truncated" and isinstance(response, web.Response) and response.body:
            response.body = fault_mod.truncate_body(bytes(response.body))
        return response

    # ------------------------------------------------------------------ PS1
    async def ps1_filenames(self, request: web.Request) -> web.StreamResponse:
        async def produce(_all_nan: bool) -> web.Response:
            form = dict(request.query)
            upload = None
            if request.method == "POST":
                try:
                    post = await request.post()
                except ValueError as err:
                    return web.Response(status=400, text=f"malformed form data: {err}")
                for name, value in post.items():
                    if name == "file" and hasattr(value, "file"):
                        upload = value.file.read().decode("utf-8", "replace")
                    elif isinstance(value, str):
                        form[name] = value
            try:
                positions, filters, types = parse_ps1_filenames(form, upload)
            except BadRequest as err:
                return web.Response(status=err.status, text=err.text)
            text = formats.ps1_filenames_table(positions, filters, types)
            return web.Response(text=text, content_type="text/plain")

        return await self.answer(request, produce, image=False)

    # ------------------------------------------------------------------ image products
    async def product(self, request: web.Request, kind: str) -> web.StreamResponse:
        """Answer a fitscut (``'ps1'``), unwise.me (``'unwise'``) or viewer (``'galex'``) call."""
        parse, content_type, attachment = _PRODUCTS[kind]

        async def produce(all_nan: bool) -> web.Response:
            try:
                params = parse(request.query)
            except BadRequest as err:
                if err.status == 500:  # the real services crash with a Django/HTML 500
                    return _html(500, "Server Error (500)", err.text)
                # unwise.me and the viewer are Django apps: bare text labelled text/html, so
                # the reflected values in it are escaped
                if kind == "ps1":
                    return web.Response(status=err.status, text=err.text)
                text = html.escape(err.text, quote=False)
                return web.Response(status=err.status, text=text, content_type="text/html")
            try:
                body = await self.render(kind, params, all_nan)
            except NoCoverageError as err:
                return _html(500, "Server Error (500)", f"NoOverlapError: {err}")
            headers = {}
            if attachment:
                name = attachment.format(**params)
                headers["Content-Disposition"] = f'attachment; filename="{name}"'
            if "format" in params:  # fitscut answers JPEG unless format=fits
                headers["Content-Type"] = _PICTURE_TYPES[params["format"]]
            else:
                headers["Content-Type"] = content_type
            return web.Response(body=body, headers=headers)

        return await self.answer(request, produce, image=True)


_PICTURE_TYPES = {"fits": "image/fits", "png": "image/png", "jpg": "image/jpeg"}
# kind -> (parser, content type, attachment file name pattern)
_PRODUCTS = {
    "ps1": (parse_fitscut, "image/fits", ""),
    "unwise": (parse_unwise, "application/x-compressed", "cutouts-fits_{ra:.4f}_{dec:.4f}.tar.gz"),
    "galex": (parse_galex, "image/fits", "cutout_{ra:.4f}_{dec:.4f}.fits"),
}


async def _form_bytes(request: web.Request) -> bytes:
    """Canonical bytes of a POSTed form (fields and uploaded files), for the fault key."""
    try:
        post = await request.post()
    except ValueError:  # malformed multipart: the handler answers it
        return b"malformed"
    parts = []
    for name, value in post.items():
        if hasattr(value, "file"):
            content = value.file.read()
            value.file.seek(0)
            parts.append(name.encode() + b"=" + content)
        else:
            parts.append(f"{name}={value}".encode())
    return b"&".join(sorted(parts))


HANDLERS = web.AppKey("handlers", _App)


def _html(status: int, title: str, detail: str) -> web.Response:
    # detail may reflect query values: escaped, so the page cannot carry markup or script
    page = HTML_ERROR_PAGE.format(
        title=html.escape(title, quote=False), detail=html.escape(detail, quote=False)
    )
    return web.Response(status=status, text=page, content_type="text/html")


def create_app(settings: ServerSettings, *, universe: Any = None) -> web.Application:
    """Build the aiohttp application. With ``universe`` given, render it in threads (tests).

    The rendering pool starts with the application and stops with it.
    """
    handlers = _App(settings, universe)
    app = web.Application(client_max_size=64 * 1024**2)
    app.router.add_route("GET", "/cgi-bin/ps1filenames.py", handlers.ps1_filenames)
    app.router.add_route("POST", "/cgi-bin/ps1filenames.py", handlers.ps1_filenames)
    routes = {
        "/cgi-bin/fitscut.cgi": "ps1",
        "/cutout_fits": "unwise",
        "/cutout_fits/": "unwise",
        "/viewer/fits-cutout": "galex",
        "/viewer/cutout.fits": "galex",
    }
    for path, kind in routes.items():
        app.router.add_route("GET", path, functools.partial(handlers.product, kind=kind))

    async def pool_context(_app: web.Application):
        if handlers.pool is None:
            handlers.start_pool()
        yield
        handlers.stop_pool()

    app.cleanup_ctx.append(pool_context)
    app[HANDLERS] = handlers
    return app


def check_loopback(host: str) -> None:
    """Raise `ConfigError` unless ``host`` is a loopback address."""
    if host not in LOOPBACK_HOSTS:
        raise ConfigError(
            f"refusing to bind the imitation server to host {host!r}: it serves loopback only "
            f"(allowed: {', '.join(LOOPBACK_HOSTS)})"
        )


async def _serve_forever(app: web.Application, host: str, port: int, stop: asyncio.Event) -> None:
    runner = web.AppRunner(
        app, access_log=None, handle_signals=False, shutdown_timeout=SHUTDOWN_TIMEOUT_S
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, backlog=1024, reuse_address=True)
        try:
            await site.start()
        except OSError as err:
            raise ConfigError(f"cannot bind {host}:{port}: {err.strerror or err}") from None
        bound_port = runner.addresses[0][1]
        shown = f"[{host}]" if ":" in host else ("127.0.0.1" if host == "localhost" else host)
        print(f"serving on http://{shown}:{bound_port}", flush=True)
        await stop.wait()
    finally:
        await runner.cleanup()


def serve(settings: ServerSettings, *, host: str = "127.0.0.1", port: int = 0) -> None:
    """Run the server until SIGINT or SIGTERM; prints ``serving on URL`` once ready.

    Raises
    ------
    ConfigError
        For a non-loopback host, a bad port or bad settings.
    """
    import signal

    check_loopback(host)
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port must lie in 0..65535 (0 picks a free port), got {port!r}")
    app = create_app(settings)
    app[HANDLERS].start_pool()  # before the loop starts: fork a single-threaded process

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await _serve_forever(app, host, port, stop)

    try:
        asyncio.run(main())
    finally:
        app[HANDLERS].stop_pool()
        sys.stdout.flush()
