"""A fetch session: chunks through one client give what separate fetches give, within one cap."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import tarfile

import pandas as pd
import pytest

from mantis.exceptions import FetchError
from mantis.fetch import CutoutCache, FetchSession, fetch_catalog


def _chunk(first: int, n: int) -> pd.DataFrame:
    # ra in [200, 210) has no GALEX coverage in the fake services: some of each status
    ra = [20.0 + 0.01 * i if i % 5 else 200.0 + 0.01 * i for i in range(first, first + n)]
    return pd.DataFrame({"id": [f"g{i:03d}" for i in range(first, first + n)], "ra": ra,
                         "dec": [5.0] * n})  # fmt: skip


def _content(path) -> str:
    """A file's hash; for a tar, of its members' names and bytes (the fake stamps its time)."""
    if not path.name.endswith(".tar.gz"):
        return hashlib.sha256(path.read_bytes()).hexdigest()
    with tarfile.open(path) as tar:
        members = sorted((m.name, tar.extractfile(m).read()) for m in tar.getmembers())
    members = [(n, gzip.decompress(b) if n.endswith(".gz") else b) for n, b in members]
    return hashlib.sha256(repr(members).encode()).hexdigest()


def _cache_files(root) -> dict[str, str]:
    return {
        str(p.relative_to(root)): _content(p)
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.startswith("manifest")
    }


def test_chunks_through_a_session_equal_separate_fetches(fake_surveys, fast_config, tmp_path):
    chunks = [_chunk(0, 12), _chunk(12, 9)]
    url = fake_surveys.base_url
    alone = [
        fetch_catalog(
            c, cache_dir=tmp_path / "alone", endpoint=url, progress=False, config=fast_config()
        )
        for c in chunks
    ]
    with FetchSession(tmp_path / "session", endpoint=fake_surveys.base_url,
                      config=fast_config()) as session:  # fmt: skip
        futures = [session.submit(c) for c in chunks]
        shared = [f.result(timeout=60) for f in futures]
    for one, other in zip(alone, shared, strict=True):
        assert one.statuses == other.statuses
        assert one.statuses["galex"]["no_coverage"] > 0 and one.statuses["ps1"]["done"] > 0
        assert one.requests == other.requests  # each chunk counts its own requests
        # the fake unWISE tar carries its write time, so sizes may differ by a few bytes
        assert abs(one.bytes_received - other.bytes_received) < 1024 < one.bytes_received
    assert _cache_files(tmp_path / "alone") == _cache_files(tmp_path / "session")
    a, b = CutoutCache(tmp_path / "alone"), CutoutCache(tmp_path / "session")
    for survey in ("galex", "ps1", "unwise"):
        assert a.statuses(survey) == b.statuses(survey)


def test_chunks_at_once_share_one_per_host_cap(fake_surveys, fast_config, tmp_path, monkeypatch):
    in_flight, peak = 0, 0
    answer = fake_surveys._apply

    async def slow_answer(fault, body, content_type):
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.03)
        in_flight -= 1
        return await answer(fault, body, content_type)

    monkeypatch.setattr(fake_surveys, "_apply", slow_answer)
    config = fast_config(concurrency_per_host=3)
    with FetchSession(tmp_path, endpoint=fake_surveys.base_url, config=config,
                      chunks_at_once=3) as session:  # fmt: skip
        futures = [session.submit(_chunk(10 * k, 10)) for k in range(3)]
        assert all(f.result(timeout=60).ok for f in futures)
    # three chunks at once, each with many requests ready, never more than the one cap
    assert peak == 3


def test_a_closed_session_refuses_chunks_and_a_cancelled_chunk_resumes(
    fake_surveys, fast_config, tmp_path
):
    session = FetchSession(tmp_path, endpoint=fake_surveys.base_url, config=fast_config())
    fake_surveys.script["galex"] = ["stall"]  # the first GALEX answer never comes
    pending = session.submit(_chunk(0, 4))
    session.close()
    assert pending.cancelled()
    with pytest.raises(FetchError, match="closed"):
        session.submit(_chunk(0, 4))
    again = fetch_catalog(_chunk(0, 4), cache_dir=tmp_path, endpoint=fake_surveys.base_url,
                          progress=False, config=fast_config())  # fmt: skip
    assert again.ok and sum(again.statuses["ps1"].values()) == 4
