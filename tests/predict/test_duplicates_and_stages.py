"""Ids repeated across chunks, and the fetch / build threads of the pipeline."""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import pytest

from mantis.predict import predict_catalog, read_predictions
from mantis.predict._duplicates import duplicated_rows
from mantis.predict._stages import staged
from mantis.predict.testing import StandInPredictor, StandInSource


def _catalog(path, ids):
    n = len(ids)
    rng = np.random.default_rng(3)
    pd.DataFrame({"id": ids, "ra": rng.uniform(0, 360, n), "dec": rng.uniform(-60, 60, n)}).to_csv(
        path, index=False
    )
    return path


def test_ids_repeated_in_other_chunks_are_flagged_everywhere(tmp_path):
    ids = [f"g{i:04d}" for i in range(200)]
    ids[150] = ids[5]  # chunks 0 and 2 of 64 rows
    ids[190] = ids[189] = "twin"  # both in chunk 2: found by the chunk's own check as well
    cat = _catalog(tmp_path / "cat.csv", ids)
    summary = predict_catalog(cat, tmp_path / "out.parquet", predictor=StandInPredictor(),
                              source=StandInSource(), batch_size=64, progress=False)  # fmt: skip
    df, probs, _ = read_predictions(tmp_path / "out.parquet")
    bad = [5, 150, 189, 190]
    assert summary.n_invalid == 4
    assert np.flatnonzero(~df["valid"].to_numpy(dtype=bool)).tolist() == bad
    assert df["flag"].iloc[bad].tolist() == ["id is duplicated"] * 4  # said once, not twice
    assert np.isnan(probs[bad]).all()
    assert np.isfinite(np.delete(probs, bad, axis=0)).all()
    assert df["id"].tolist() == ids


def test_bucketed_check_matches_a_direct_count(tmp_path):
    rng = np.random.default_rng(0)
    ids = [f"obj{k}" for k in rng.integers(0, 3000, 2000)]  # many repeats, some triples
    cat = _catalog(tmp_path / "cat.csv", ids)
    expected = np.flatnonzero(pd.Series(ids).duplicated(keep=False))
    in_memory = duplicated_rows(cat, len(ids), workdir=tmp_path, chunk_rows=300)
    on_disk = duplicated_rows(cat, len(ids), workdir=tmp_path, chunk_rows=300, bucket_rows=128)
    np.testing.assert_array_equal(in_memory, expected)
    np.testing.assert_array_equal(on_disk, expected)
    assert [p.name for p in tmp_path.iterdir()] == ["cat.csv"]  # bucket files removed


def test_hash_collisions_are_not_duplicates(tmp_path, monkeypatch):
    ids = ["a", "b", "c", "b", "d"]
    cat = _catalog(tmp_path / "cat.csv", ids)
    monkeypatch.setattr(pd.util, "hash_array", lambda values: np.zeros(len(values), np.uint64))
    assert duplicated_rows(cat, 5, workdir=tmp_path).tolist() == [1, 3]


class _OverlapSource:
    """Refuses to build chunk 0 until chunk 1 has been fetched: fails unless fetching runs ahead."""

    def __init__(self) -> None:
        self.fetched: list[str] = []
        self.second_fetched = threading.Event()
        self.inner = StandInSource()

    def fetch(self, chunk: pd.DataFrame) -> None:
        self.fetched.append(chunk["id"].iloc[0])
        if len(self.fetched) == 2:
            self.second_fetched.set()

    def build(self, chunk: pd.DataFrame) -> dict:
        if chunk["id"].iloc[0] == "g0000" and not self.second_fetched.wait(timeout=30):
            raise AssertionError("chunk 1 was not fetched while chunk 0 waited to be built")
        return self.inner.arrays(chunk)


def test_fetching_runs_ahead_of_building_and_gives_the_serial_answer(tmp_path):
    cat = _catalog(tmp_path / "cat.csv", [f"g{i:04d}" for i in range(100)])
    source = _OverlapSource()
    kwargs = {"predictor": StandInPredictor(), "batch_size": 25, "progress": False}
    predict_catalog(cat, tmp_path / "staged.parquet", source=source, **kwargs)
    predict_catalog(cat, tmp_path / "serial.parquet", source=StandInSource(), **kwargs)
    assert source.fetched == ["g0000", "g0025", "g0050", "g0075"]
    staged_bytes = (tmp_path / "staged.parquet").read_bytes()
    assert staged_bytes == (tmp_path / "serial.parquet").read_bytes()


def test_a_failing_stage_stops_the_chain_and_reraises():
    def explode(x):
        if x == 3:
            raise ValueError("stage failed on 3")
        return x

    seen = []
    with pytest.raises(ValueError, match="stage failed on 3"):
        for item in staged(range(100), [(explode, 2), (lambda x: 10 * x, 1)]):
            seen.append(item)
    assert seen == [0, 10, 20]


def test_a_consumer_leaving_early_stops_every_thread():
    before = threading.active_count()
    results = staged(iter(range(10_000)), [(lambda x: x, 2), (lambda x: x + 1, 1)])
    assert [next(results) for _ in range(3)] == [1, 2, 3]
    results.close()
    assert threading.active_count() == before


class _LaneSource:
    """Counts the fetches in flight; each waits a little for a second one to start."""

    def __init__(self, lanes: int) -> None:
        self.lanes = lanes
        self.in_flight = 0
        self.most_in_flight = 0
        self.lock = threading.Lock()
        self.second = threading.Event()
        self.inner = StandInSource()

    def fetch(self, chunk: pd.DataFrame) -> None:
        with self.lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            if self.in_flight == 2:
                self.second.set()
        self.second.wait(timeout=0.5)
        with self.lock:
            self.in_flight -= 1

    def build(self, chunk: pd.DataFrame) -> dict:
        return self.inner.arrays(chunk)


@pytest.mark.parametrize("lanes", [1, 2])
def test_a_source_with_lanes_has_that_many_chunks_fetched_at_once(tmp_path, lanes):
    cat = _catalog(tmp_path / "cat.csv", [f"g{i:04d}" for i in range(100)])
    source = _LaneSource(lanes)
    kwargs = {"predictor": StandInPredictor(), "batch_size": 20, "progress": False}
    predict_catalog(cat, tmp_path / "lanes.parquet", source=source, **kwargs)
    predict_catalog(cat, tmp_path / "plain.parquet", source=StandInSource(), **kwargs)
    assert source.most_in_flight == lanes
    assert (tmp_path / "lanes.parquet").read_bytes() == (tmp_path / "plain.parquet").read_bytes()


def test_cutout_source_lanes_share_the_per_host_cap(tmp_path, monkeypatch):
    import mantis.fetch
    from mantis.predict import CutoutSource

    caps = []
    monkeypatch.setattr(
        mantis.fetch,
        "fetch_catalog",
        lambda *a, config, **k: caps.append(config["client"]["concurrency_per_host"]),
    )
    chunk = pd.DataFrame({"id": ["a"], "ra": [1.0], "dec": [2.0]})
    source = CutoutSource(str(tmp_path), fetch_config={"client": {"concurrency_per_host": 15}})
    assert source.lanes == 2
    source.fetch(chunk)
    alone = CutoutSource(str(tmp_path), fetch_config={"client": {"concurrency_per_host": 1}})
    assert alone.lanes == 1
    alone.fetch(chunk)
    monkeypatch.setattr(CutoutSource, "build", lambda self, chunk: {})
    source.arrays(chunk)  # one call at a time (as `mantis serve` fetches) gets the whole cap
    assert caps == [7, 1, 15]  # two lanes of 7 stay within 15; one lane of 1 within 1
