"""The shared client: retries, back-off, validation, politeness cap, loopback guard."""

from __future__ import annotations

import asyncio

import pytest

from mantis.exceptions import ConfigError, NoCoverageError
from mantis.fetch import ClientSettings, HttpClient, RequestFailedError
from mantis.fetch._validate import check_fits


def _get(settings, url, **kwargs):
    async def go():
        async with HttpClient(settings, seed=0) as client:
            reply = await client.request("GET", url, host_key="galex", **kwargs)
            return reply, client.stats

    return asyncio.run(go())


def _galex_url(service, ra=10.0):
    return f"{service.base_url}/viewer/fits-cutout?ra={ra}&dec=5&size=32"


@pytest.mark.parametrize("fault", ["http500", "http503", "html", "text", "truncated", "stall"])
def test_every_transient_fault_is_retried_until_a_valid_body(fake_surveys, make_settings, fault):
    fake_surveys.script["galex"] = [fault, fault]
    reply, stats = _get(make_settings(), _galex_url(fake_surveys), validate=check_fits)
    assert reply.attempts == 3
    assert stats.requests["galex"] == 3 and stats.retries["galex"] == 2
    assert check_fits(reply.body)[0].value("SURVEY") == "GALEX"


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("html", "HTML instead of data"),
        ("text", "text error behind HTTP 200"),
        ("truncated", "truncated body"),
        ("http503", "HTTP 503"),
        ("stall", "timeout"),
    ],
)
def test_persistent_fault_fails_with_its_reason_and_url(fake_surveys, make_settings, fault, reason):
    fake_surveys.script["galex"] = [fault] * 3
    with pytest.raises(RequestFailedError) as info:
        _get(make_settings(max_attempts=3), _galex_url(fake_surveys), validate=check_fits)
    assert info.value.reason == reason
    assert "gave up after 3 attempts" in str(info.value)
    assert "/viewer/fits-cutout" in str(info.value)


def test_client_error_is_not_retried(fake_surveys, make_settings):
    with pytest.raises(RequestFailedError) as info:
        _get(make_settings(), f"{fake_surveys.base_url}/no/such/path")
    assert info.value.reason == "HTTP 404"
    assert fake_surveys.counts.total() == 0  # the router answered; no handler ran


def test_repeated_500_means_no_coverage_but_a_single_500_does_not(fake_surveys, make_settings):
    with pytest.raises(NoCoverageError, match="3 attempts in a row"):
        _get(make_settings(), _galex_url(fake_surveys, ra=205.0), no_coverage_status=500)
    assert fake_surveys.counts["galex"] == 3
    fake_surveys.script["galex"] = ["http500"]
    reply, _ = _get(make_settings(), _galex_url(fake_surveys), no_coverage_status=500)
    assert reply.attempts == 2


def _peak_in_flight(settings, urls_and_keys):
    in_flight, peak = 0, 0

    async def go():
        nonlocal in_flight, peak
        async with HttpClient(settings) as client:
            original = client._session.request

            class Tracked:
                def __init__(self, *args, **kwargs):
                    self.cm = original(*args, **kwargs)

                async def __aenter__(self):
                    nonlocal in_flight, peak
                    in_flight += 1
                    peak = max(peak, in_flight)
                    await asyncio.sleep(0.02)
                    return await self.cm.__aenter__()

                async def __aexit__(self, *exc):
                    nonlocal in_flight
                    in_flight -= 1
                    return await self.cm.__aexit__(*exc)

            client._session.request = Tracked
            await asyncio.gather(
                *(client.request("GET", url, host_key=key) for url, key in urls_and_keys)
            )

    asyncio.run(go())
    return peak


def test_per_host_cap_counts_the_host_contacted_not_the_survey(fake_surveys, make_settings):
    settings = make_settings(concurrency_per_host=3)
    # two surveys pointed at one server share that server's cap
    same_host = [
        (_galex_url(fake_surveys, ra=i), key) for i in range(12) for key in ("galex", "ps1")
    ]
    assert _peak_in_flight(settings, same_host) == 3
    # the same service reached under two host names: two hosts, three in flight each
    other_name = fake_surveys.base_url.replace("127.0.0.1", "localhost")
    assert other_name != fake_surveys.base_url
    two_hosts = [(_galex_url(fake_surveys, ra=i), "galex") for i in range(12)] + [
        (f"{other_name}/viewer/fits-cutout?ra={i}&dec=5&size=32", "galex") for i in range(12)
    ]
    assert _peak_in_flight(settings, two_hosts) == 6


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"concurrency_per_host": 0}, r"concurrency_per_host=0 must be an integer in \[1, 1024\]"),
        ({"concurrency_per_host": 2.5}, "concurrency_per_host=2.5 must be an integer"),
        ({"total_timeout_s": -1}, "total_timeout_s=-1 must be a positive number"),
        ({"max_body_mb": "big"}, "max_body_mb='big' must be a number"),
    ],
)
def test_bad_settings_are_rejected_with_the_value(overrides, message):
    with pytest.raises(ConfigError, match=message):
        ClientSettings(**overrides)


def test_unknown_config_key_is_named():
    with pytest.raises(ConfigError, match=r"'retry_forever' is not a fetch client setting"):
        ClientSettings.from_config({"client": {"retry_forever": True}})


@pytest.mark.parametrize(
    "url", ["http://ps1images.stsci.edu/cgi-bin/ps1filenames.py", "http://93.184.216.34/"]
)
def test_loopback_guard_trips_on_real_hosts(make_settings, url):
    with pytest.raises(RequestFailedError, match="loopback guard") as info:
        _get(make_settings(max_attempts=1), url)
    assert info.value.reason == "connection error"
