"""The shared client: retries, back-off, validation, politeness cap, loopback guard."""

from __future__ import annotations

import asyncio
import random

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


def test_per_host_cap_bounds_requests_in_flight(fake_surveys, make_settings):
    in_flight, peak = 0, 0
    settings = make_settings(concurrency_per_host=3)

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
                *(
                    client.request("GET", _galex_url(fake_surveys, ra=i), host_key="galex")
                    for i in range(12)
                ),
                *(
                    client.request("GET", _galex_url(fake_surveys, ra=i), host_key="ps1")
                    for i in range(12)
                ),
            )

    asyncio.run(go())
    assert peak == 6  # three per host key, two host keys


def test_backoff_grows_exponentially_with_jitter_and_a_ceiling():
    settings = ClientSettings(backoff_base_s=1.0, backoff_max_s=10.0)
    rng = random.Random(1)
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 10.0), (9, 10.0)]:
        draws = [settings.backoff(attempt, rng) for _ in range(200)]
        assert min(draws) >= ceiling / 2 and max(draws) <= ceiling
        assert len(set(draws)) > 100  # jittered, not a fixed delay


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"concurrency_per_host": 0}, "concurrency_per_host must be a positive number, got 0"),
        ({"concurrency_per_host": 2.5}, "must be a whole number, got 2.5"),
        ({"total_timeout_s": -1}, "total_timeout_s must be a positive number, got -1"),
    ],
)
def test_bad_settings_are_rejected_with_the_value(overrides, message):
    with pytest.raises(ConfigError, match=message):
        ClientSettings(**overrides)


def test_unknown_config_key_is_named():
    with pytest.raises(ConfigError, match=r"unknown fetch client setting.*retry_forever"):
        ClientSettings.from_config({"client": {"retry_forever": True}})


@pytest.mark.parametrize(
    "url", ["http://ps1images.stsci.edu/cgi-bin/ps1filenames.py", "http://93.184.216.34/"]
)
def test_loopback_guard_trips_on_real_hosts(make_settings, url):
    with pytest.raises(RequestFailedError, match="loopback guard") as info:
        _get(make_settings(max_attempts=1), url)
    assert info.value.reason == "connection error"
