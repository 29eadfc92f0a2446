"""Seeded fault injection: every kind, determinism, and eventual success on retry."""

from __future__ import annotations

import asyncio
import gzip
import io
import tarfile
import zlib

import aiohttp
import numpy as np
import pytest
from astropy.io import fits
from astropy.utils.exceptions import AstropyUserWarning

from mantis.cli import main
from mantis.exceptions import ConfigError
from mantis.sky._coverage import ps1_skycell_at
from mantis.sky._faults import FAULT_KINDS, MAX_FAULTY_ATTEMPTS, FaultPlan, parse_fault_kinds
from mantis.sky.testing import point_source_universe, serving_in_process

SKY = point_source_universe(seed=0)
FITSCUT = (
    "/cgi-bin/fitscut.cgi",
    {"red": ps1_skycell_at(150.1, 2.2).filename("g"), "ra": 150.1, "dec": 2.2, "size": 40,
     "format": "fits"},
)  # fmt: skip
UNWISE = ("/cutout_fits", {"ra": 150.02, "dec": 1.51, "size": 20})
GALEX = ("/viewer/fits-cutout", {"ra": 150.1, "dec": 2.5, "layer": "galex", "size": 20})
TABLE = ("/cgi-bin/ps1filenames.py", {"ra": 150.1, "dec": 2.2})


def send(requests, *, timeout=60.0, **settings):
    """GET each (path, params) in order; answers are (status, headers, body) or 'timeout'."""

    async def main_():
        async with (
            serving_in_process(SKY, **settings) as url,
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session,
        ):
            answers = []
            for path, params in requests:
                try:
                    async with session.get(url + path, params=params) as response:
                        answers.append((response.status, response.headers, await response.read()))
                except TimeoutError:
                    answers.append("timeout")
            return answers

    return asyncio.run(main_())


def only(kind, requests, **kwargs):
    return send(requests, fail_rate=1.0, faults=(kind,), **kwargs)


def test_http_500_and_503():
    (status, headers, _), *_ = only("http500", [FITSCUT])
    assert status == 500 and headers["Content-Type"].startswith("text/html")
    (status, headers, _), *_ = only("http503", [UNWISE])
    assert status == 503 and headers["Retry-After"] == "1"


def test_html_page_instead_of_fits():
    for answer in only("html", [FITSCUT, UNWISE, GALEX, TABLE]):
        status, headers, body = answer
        assert status == 200 and headers["Content-Type"].startswith("text/html")
        assert body.startswith(b"<!DOCTYPE html>")


def test_truncated_bodies_do_not_parse():
    clean = send([FITSCUT, UNWISE, GALEX])
    cut = only("truncated", [FITSCUT, UNWISE, GALEX])
    for (_, _, whole), (status, _, part) in zip(clean, cut, strict=True):
        assert status == 200 and part == whole[: len(whole) // 2]
    with pytest.warns(AstropyUserWarning, match="File may have been truncated"):
        fits.open(io.BytesIO(cut[0][2])).readall()
    with (
        pytest.raises((EOFError, tarfile.ReadError, zlib.error, gzip.BadGzipFile)),
        tarfile.open(fileobj=io.BytesIO(cut[1][2]), mode="r:gz") as tar,
    ):
        for member in tar.getmembers():
            tar.extractfile(member).read()


def test_all_nan_cutouts():
    ps1, unwise, galex = only("nan", [FITSCUT, UNWISE, GALEX])
    assert np.isnan(fits.getdata(io.BytesIO(ps1[2]))).all()
    with tarfile.open(fileobj=io.BytesIO(unwise[2]), mode="r:gz") as tar:
        image = next(m for m in tar.getmembers() if m.name.endswith("img-m.fits"))
        assert np.isnan(fits.getdata(tar.extractfile(image))).all()
    assert np.isnan(fits.getdata(io.BytesIO(galex[2]))).all()


def test_nan_fault_leaves_the_text_table_alone():
    (status, _, body), *_ = only("nan", [TABLE])
    assert status == 200 and body.startswith(b"projcell subcell")


def test_stall_holds_the_connection_then_answers():
    # a client that waits less than the stall gives up; one that waits longer gets the answer
    assert only("stall", [FITSCUT], stall_s=2.0, timeout=0.3) == ["timeout"]
    (status, _, body), *_ = only("stall", [FITSCUT], stall_s=0.2)
    assert status == 200 and fits.getdata(io.BytesIO(body)).shape == (40, 40)


def test_latency_fault_and_latency_option_delay_answers():
    assert only("latency", [FITSCUT], timeout=0.5) == ["timeout"]
    assert send([FITSCUT], latency_ms=1500, timeout=0.3) == ["timeout"]


def test_faults_replay_exactly_and_depend_on_the_seed():
    requests = [(GALEX[0], dict(GALEX[1], ra=150.1 + 0.001 * k)) for k in range(12)]
    first = [a[0] for a in send(requests, fail_rate=0.5, faults=("http500", "http503"))]
    again = [a[0] for a in send(requests, fail_rate=0.5, faults=("http500", "http503"))]
    other = [a[0] for a in send(requests, fail_rate=0.5, faults=("http500", "http503"), seed=9)]
    assert first == again
    assert first != other
    assert {500, 503} <= set(first) | set(other) and 200 in first


def test_a_retried_request_eventually_succeeds_with_the_clean_answer():
    clean = send([FITSCUT])[0][2]
    answers = send([FITSCUT] * (MAX_FAULTY_ATTEMPTS + 1), fail_rate=0.99)
    assert [a[0] for a in answers[:MAX_FAULTY_ATTEMPTS]] != [200] * MAX_FAULTY_ATTEMPTS
    status, _, body = answers[MAX_FAULTY_ATTEMPTS]
    assert status == 200 and body == clean


def test_fail_rate_one_fails_every_attempt():
    answers = send([FITSCUT] * (MAX_FAULTY_ATTEMPTS + 2), fail_rate=1.0, faults=("http503",))
    assert [a[0] for a in answers] == [503] * (MAX_FAULTY_ATTEMPTS + 2)


def test_fault_kind_parsing_and_validation():
    assert parse_fault_kinds(None) == FAULT_KINDS == parse_fault_kinds("all")
    assert parse_fault_kinds("stall, http500,stall") == ("stall", "http500")
    with pytest.raises(ConfigError, match=r"unknown fault kind\(s\) 'boom'; allowed: latency"):
        parse_fault_kinds("http500,boom")
    with pytest.raises(ConfigError, match=r"fail rate must lie in \[0, 1\], got 1.5"):
        FaultPlan(fail_rate=1.5)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--faults", "explode"], "unknown fault kind(s) 'explode'"),
        (["--fail-rate", "-0.1"], "--fail-rate must lie in [0, 1], got -0.1"),
        (["--latency-ms", "-5"], "--latency-ms must be >= 0"),
        (["--host", "0.0.0.0"], "refusing to bind the imitation server to host '0.0.0.0'"),
        (["--host", "192.168.1.20"], "serves loopback only (allowed: 127.0.0.1, localhost, ::1)"),
        (["--port", "70000"], "--port must lie in 0..65535"),
    ],
)
def test_serve_rejects_bad_options_with_a_clear_error(argv, message, capsys):
    full = ["sky", "serve", "--port", "0", "--config", "mantis.sky.testing:point_source_universe"]
    assert main(full + argv) == 2
    assert message in capsys.readouterr().err
