"""Running the application under uvicorn on a socket bound before start, so port 0 works."""

from __future__ import annotations

import ipaddress
import socket
import sys
from typing import Any

__all__ = ["bind", "is_loopback", "serve"]


def bind(host: str, port: int) -> socket.socket:
    """Open a listening TCP socket on ``host``:``port`` (``port`` 0 picks a free one)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(512)
    return sock


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (only this machine can connect)."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def serve(
    app: Any, host: str = "127.0.0.1", port: int = 8000, *, log_level: str = "warning"
) -> None:
    """Serve ``app`` until interrupted, saying where and whether it is reachable from elsewhere.

    Parameters
    ----------
    app : fastapi.FastAPI
        The application (`mantis.serve.create_app`).
    host : str
        Address to bind; loopback by default, so only this machine can connect.
    port : int
        TCP port (0: any free port; the one chosen is printed).
    log_level : str
        uvicorn's log level.
    """
    import uvicorn

    sock = bind(host, port)
    actual = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    if is_loopback(host):
        reach = "loopback only: other machines cannot connect"
    else:
        reach = "reachable from the network: put an authenticating proxy in front (README)"
    print(f"mantis serve: listening on http://{shown}:{actual} ({reach}); docs at /docs",
          flush=True)  # fmt: skip
    config = uvicorn.Config(app, log_level=log_level, access_log=False, timeout_keep_alive=30)
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        print("mantis serve: stopped", file=sys.stderr, flush=True)
