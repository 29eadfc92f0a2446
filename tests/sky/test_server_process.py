"""`mantis sky serve` in a subprocess on the test sky: readiness, loopback, concurrency, replay."""

from __future__ import annotations

import asyncio
import io
import re
import socket
import tarfile
from pathlib import Path

import aiohttp
import numpy as np
from astropy.io import fits

from mantis.sky._coverage import ps1_skycell_at
from mantis.sky.testing import running_server

CELL = ps1_skycell_at(150.1, 2.2)


def requests_around(n):
    """n distinct requests spread over the three services, inside the test field."""
    out = []
    for k in range(n):
        ra, dec = 150.05 + 0.002 * k, 2.18 + 0.001 * k
        if k % 3 == 0:
            params = {"red": CELL.filename("grizy"[k % 5]), "ra": ra, "dec": dec, "size": 60,
                      "format": "fits"}  # fmt: skip
            out.append(("/cgi-bin/fitscut.cgi", params))
        elif k % 3 == 1:
            out.append(("/cutout_fits", {"ra": ra, "dec": dec, "size": 24, "bands": "12"}))
        else:
            out.append(("/viewer/fits-cutout", {"ra": ra, "dec": dec, "layer": "galex",
                                                "size": 24, "invvar": ""}))  # fmt: skip
    return out


async def fetch_concurrently(base_url, requests, limit):
    connector = aiohttp.TCPConnector(limit=limit)
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        in_flight = 0
        most = 0

        async def one(path, params):
            nonlocal in_flight, most
            in_flight += 1
            most = max(most, in_flight)
            try:
                async with session.get(base_url + path, params=params) as response:
                    return response.status, await response.read()
            finally:
                in_flight -= 1

        answers = await asyncio.gather(*(one(p, q) for p, q in requests))
        return answers, most


def check_product(path, body):
    if path.endswith("fitscut.cgi"):
        data = fits.getdata(io.BytesIO(body))
        assert data.shape == (60, 60) and np.isfinite(data).all()
    elif path == "/cutout_fits":
        with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as tar:
            assert any(n.endswith("-w2-std-m.fits.gz") for n in tar.getnames())
    else:
        assert fits.open(io.BytesIO(body))[0].data.shape == (2, 24, 24)


def listening_addresses(port):
    """Local addresses of the TCP sockets listening on ``port`` (from /proc/net/tcp{,6})."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                found.append(address)
    return found


def test_ready_line_and_loopback_only(sky_server):
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", sky_server)
    port = int(sky_server.rsplit(":", 1)[1])
    # the kernel's socket table: one listener, bound to 127.0.0.1 (little-endian hex)
    assert listening_addresses(port) == ["0100007F"]
    # and nothing answers on the machine's other addresses
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.connect(("10.255.255.255", 1))  # picks the outward interface; sends nothing
        outward = udp.getsockname()[0]
    if not outward.startswith("127."):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.settimeout(2)
            assert probe.connect_ex((outward, port)) != 0


def test_64_concurrent_connections_are_all_served(sky_server):
    requests = requests_around(64)
    answers, most = asyncio.run(fetch_concurrently(sky_server, requests, limit=64))
    assert most == 64
    assert [status for status, _ in answers] == [200] * 64
    for (path, _), (_, body) in zip(requests, answers, strict=True):
        check_product(path, body)


def test_answers_are_deterministic_across_servers(sky_server):
    requests = requests_around(6)
    first, _ = asyncio.run(fetch_concurrently(sky_server, requests, limit=6))
    with running_server(seed=0, workers=1) as other:
        second, _ = asyncio.run(fetch_concurrently(other, requests[::-1], limit=1))
    assert first == second[::-1]
