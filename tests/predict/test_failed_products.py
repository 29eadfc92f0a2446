"""Rows whose products failed are flagged, never predicted from blank pixels, and redone.

`mantis predict` against a closed port and against an imitation server failing 30 % of its
answers: no row with a failed product is valid, the exit status says so, and a rerun against a
healthy server predicts exactly those rows and writes the bytes of one clean run.
"""

from __future__ import annotations

import hashlib
import socket
from contextlib import closing

import pandas as pd
import pytest

from mantis.cli import main
from mantis.fetch import CutoutCache
from mantis.predict import CutoutSource, predict_catalog, read_predictions

SURVEYS = ("galex", "ps1", "unwise")


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def closed_port() -> int:
    with closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A one-epoch model (its grids decide what predict builds)."""
    from mantis.data.testing import write_synthetic_dataset
    from mantis.models import train_model

    root = tmp_path_factory.mktemp("failed-products")
    data = write_synthetic_dataset(root / "synthetic.h5", 64, seed=0)
    return train_model(
        "configs/train/smoke_early.yaml",
        data,
        root / "run",
        overrides={"trainer.max_epochs": 1, "trainer.enable_progress_bar": False},
    )


@pytest.fixture(scope="module")
def sky_catalog(tmp_path_factory):
    """Galaxies of the served `test` sky from both fields (the south lies outside PS1)."""
    from mantis.sky import Universe

    spec = Universe.from_config("test", seed=0).spec_catalog()
    rows = pd.concat([spec[spec["dec"] >= -30].head(12), spec[spec["dec"] < -30].head(6)])
    path = tmp_path_factory.mktemp("catalog") / "cat.csv"
    rows[["id", "ra", "dec"]].to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def clean(checkpoint, sky_catalog, sky_server, tmp_path_factory):
    """The same catalogue predicted once through a healthy server and a fresh cache."""
    root = tmp_path_factory.mktemp("clean")
    out = root / "clean.parquet"
    summary = predict_catalog(sky_catalog, out, checkpoint=checkpoint, endpoint=sky_server,
                              cache_dir=root / "cache", batch_size=5, progress=False)  # fmt: skip
    assert summary.n_failed == 0 and summary.n_invalid == 0
    return out


def configs(checkpoint):
    """(build config with the checkpoint's grids, fetch config making a single attempt)."""
    from mantis.config import load_config
    from mantis.models import load_predictor

    build = {**load_config("build")}
    build["grids"] = {**build["grids"], **load_predictor(checkpoint).grids}
    once = load_config("fetch")
    once["client"] = {**once["client"], "max_attempts": 1, "connect_timeout_s": 5,
                      "read_timeout_s": 10, "total_timeout_s": 20}  # fmt: skip
    return build, once


def manifest_failures(cache_dir, ids):
    with CutoutCache(cache_dir) as cache:
        return {i: sorted(s for s in SURVEYS if cache.status(i, s) == "failed") for i in ids}


def test_closed_port_flags_every_row_and_a_rerun_predicts_exactly_those(
    checkpoint, sky_catalog, sky_server, clean, tmp_path
):
    build, once = configs(checkpoint)
    out, cache = tmp_path / "out.parquet", tmp_path / "cache"
    source = CutoutSource(str(cache), f"http://127.0.0.1:{closed_port()}", build_config=build,
                          fetch_config=once)  # fmt: skip
    first = predict_catalog(sky_catalog, out, checkpoint=checkpoint, source=source, batch_size=5,
                            progress=False)  # fmt: skip
    assert (first.n_failed, first.n_invalid) == (18, 18)
    assert first.fetch.statuses["ps1"]["failed"] == 18 and first.fetch.n_failed == 54
    df = read_predictions(out)[0]
    assert not df["valid"].any() and df["z_mean"].isna().all()
    assert df["flag"].str.contains("fetch failed: galex .*ps1 .*unwise .*rerun to retry").all()
    assert not df[["has_galex", "has_ps1", "has_unwise"]].any().any()
    healthy = CutoutSource(str(cache), sky_server, build_config=build)
    second = predict_catalog(sky_catalog, out, checkpoint=checkpoint, source=healthy,
                             batch_size=5, progress=False)  # fmt: skip
    assert (second.n_predicted, second.n_failed, second.n_invalid) == (18, 0, 0)
    assert sha(out) == sha(clean)


@pytest.mark.slow  # the client's six attempts with back-off, twice
def test_cli_closed_port_exits_1_allow_failed_exits_0_and_a_rerun_repairs_it(
    checkpoint, sky_catalog, sky_server, clean, tmp_path, capsys
):
    out, cache = tmp_path / "out.parquet", tmp_path / "cache"
    args = ["predict", str(sky_catalog), "--checkpoint", str(checkpoint), "--out", str(out),
            "--cache", str(cache), "--batch-size", "18", "--no-progress"]  # fmt: skip
    assert main([*args, "--endpoint", f"http://127.0.0.1:{closed_port()}"]) == 1
    captured = capsys.readouterr()
    assert "failed" in captured.out.splitlines()[0] and "ps1" in captured.out
    assert len(captured.err.strip().splitlines()) == 1 and "rerun" in captured.err
    df = read_predictions(out)[0]
    assert not df["valid"].any()
    assert df["flag"].str.contains("fetch failed: galex .*ps1 .*unwise .*rerun to retry").all()
    assert df["z_mean"].isna().all()
    assert (tmp_path / "out.parquet.parts").is_dir()  # kept: the failed rows are not done
    # partial output on purpose: the flagged rows stay invalid, the exit status is 0
    assert main([*args, "--endpoint", f"http://127.0.0.1:{closed_port()}", "--allow-failed"]) == 0
    capsys.readouterr()
    assert main([*args, "--endpoint", sky_server]) == 0
    assert "18 predicted now, 0 flagged invalid, 0 with failed products" in capsys.readouterr().out
    assert read_predictions(out)[0]["valid"].all()
    assert sha(out) == sha(clean)
    assert not (tmp_path / "out.parquet.parts").exists()


def test_thirty_percent_faults_never_give_a_valid_row_with_a_failed_product(
    checkpoint, sky_catalog, sky_server, clean, tmp_path
):
    from mantis.sky.testing import running_server

    build, once = configs(checkpoint)
    out, cache = tmp_path / "out.parquet", tmp_path / "cache"
    with running_server(seed=0, fail_rate=0.3, faults="http503,truncated,html") as faulty:
        source = CutoutSource(str(cache), faulty, build_config=build, fetch_config=once)
        first = predict_catalog(sky_catalog, out, checkpoint=checkpoint, source=source,
                                batch_size=5, progress=False)  # fmt: skip
    df = read_predictions(out)[0]
    failed = manifest_failures(cache, df["id"])
    flagged = [i for i, surveys in failed.items() if surveys]
    assert flagged, "30 % faults with a single attempt should leave failures"
    assert first.n_failed == len(flagged) and first.fetch.n_failed == sum(map(len, failed.values()))
    for row in df.itertuples():
        if failed[row.id]:
            assert not row.valid
            assert all(f"{s} (" in row.flag for s in failed[row.id]), row.flag
        else:
            assert row.valid and row.flag == ""
    healthy = CutoutSource(str(cache), sky_server, build_config=build)
    second = predict_catalog(sky_catalog, out, checkpoint=checkpoint, source=healthy,
                             batch_size=5, progress=False)  # fmt: skip
    assert second.n_predicted == len(flagged)  # exactly the failed rows again
    assert second.n_failed == 0 and read_predictions(out)[0]["valid"].all()
    assert sha(out) == sha(clean)
