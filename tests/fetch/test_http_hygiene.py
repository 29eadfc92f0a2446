"""HTTP hygiene against a loopback server: same-host redirects only, capped bodies."""

from __future__ import annotations

import asyncio

import pandas as pd
import pytest
from aiohttp import web

from mantis.fetch import CutoutCache, HttpClient, RequestFailedError
from mantis.fetch._client import contacted_host

BIG = b"x" * (3 * 2**20)


def _app(hits: dict[str, int]) -> web.Application:
    async def data(request: web.Request) -> web.Response:
        hits["data"] = hits.get("data", 0) + 1
        return web.Response(body=b"payload " + request.query.get("tag", "").encode())

    async def hop(request: web.Request) -> web.Response:
        raise web.HTTPFound(f"/data?tag={request.query.get('tag', 'hopped')}")

    async def away(request: web.Request) -> web.Response:
        # the same machine under another name: another host as far as politeness goes
        port = request.url.port
        raise web.HTTPFound(f"http://localhost:{port}/data?tag=away")

    async def loop_forever(request: web.Request) -> web.Response:
        raise web.HTTPFound("/loop")

    async def big(request: web.Request) -> web.Response:
        return web.Response(body=BIG)

    async def big_streamed(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()  # chunked: no Content-Length to trust
        await response.prepare(request)
        for start in range(0, len(BIG), 2**16):
            await response.write(BIG[start : start + 2**16])
        await response.write_eof()
        return response

    app = web.Application()
    for path, handler in [
        ("/data", data),
        ("/hop", hop),
        ("/away", away),
        ("/loop", loop_forever),
        ("/big", big),
        ("/big-streamed", big_streamed),
    ]:
        app.router.add_get(path, handler)
    return app


def _request(make_settings, path: str, **kwargs):
    """Serve `_app` on a free loopback port and send one request to ``path``."""
    hits: dict[str, int] = {}

    async def go():
        runner = web.AppRunner(_app(hits), handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}{path}"
        try:
            async with HttpClient(make_settings(max_attempts=2), seed=0) as client:
                return await client.request("GET", url, host_key="galex", **kwargs), client
        finally:
            await runner.cleanup()

    reply, client = asyncio.run(go())
    return reply, client, hits


def test_a_redirect_on_the_same_host_is_followed(make_settings):
    reply, client, hits = _request(make_settings, "/hop?tag=kept")
    assert reply.body == b"payload kept" and reply.status == 200
    assert hits == {"data": 1}
    assert client.stats.requests["galex"] == 1  # one request, two hops


def test_a_redirect_to_another_host_is_refused_before_contacting_it(make_settings):
    with pytest.raises(RequestFailedError, match="to another host") as info:
        _request(make_settings, "/away")
    assert info.value.reason == "redirect to another host"
    assert "http://localhost:" in str(info.value)


def test_a_redirect_loop_stops(make_settings):
    with pytest.raises(RequestFailedError, match="more than 5 redirects") as info:
        _request(make_settings, "/loop")
    assert info.value.reason == "too many redirects"


@pytest.mark.parametrize("path", ["/big", "/big-streamed"])
def test_an_answer_over_the_cap_fails_at_once_naming_the_cap(make_settings, path):
    with pytest.raises(
        RequestFailedError, match=r"cap of 1 MB \(fetch setting galex\.max_body_mb\)"
    ):
        _request(make_settings, path, max_bytes=2**20, cap_name="galex.max_body_mb")
    # under the client's own cap (256 MB by default) the same answer is read whole
    reply, client, _ = _request(make_settings, path)
    assert reply.body == BIG
    assert client.stats.requests["galex"] == 1


def test_the_client_cap_applies_when_no_kind_cap_is_given(make_settings):
    async def go(url):
        async with HttpClient(make_settings(max_body_mb=1.0)) as client:
            return await client.request("GET", url, host_key="ps1")

    async def served():
        runner = web.AppRunner(_app({}), handle_signals=False)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        try:
            return await go(f"http://127.0.0.1:{runner.addresses[0][1]}/big")
        finally:
            await runner.cleanup()

    with pytest.raises(RequestFailedError, match=r"fetch setting client\.max_body_mb"):
        asyncio.run(served())


def test_politeness_key_is_scheme_host_and_port():
    assert contacted_host("http://127.0.0.1:8765/a?b=1") == "http://127.0.0.1:8765"
    assert contacted_host("https://unwise.me/cutout_fits") == "https://unwise.me:443"
    assert contacted_host("http://localhost:8765/") != contacted_host("http://127.0.0.1:8765/")


def test_an_oversized_product_is_recorded_failed_naming_the_cap(fetch_fake, fast_config, tmp_path):
    catalog = pd.DataFrame({"id": ["a", "b"], "ra": [10.0, 11.0], "dec": [5.0, 6.0]})
    config = fast_config()
    config["galex"]["max_body_mb"] = 0.001  # ~1 kB: smaller than any GALEX cutout
    summary = fetch_fake(catalog, surveys=("galex", "unwise"), config=config)
    assert summary.statuses["galex"]["failed"] == 2
    assert summary.statuses["unwise"]["done"] == 2  # the run went on with the other survey
    rows = [r for r in CutoutCache(tmp_path).iter_rows(["galex"])]
    assert all("galex.max_body_mb" in r["last_error"] for r in rows)
