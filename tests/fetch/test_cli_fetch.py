"""``mantis fetch`` end to end in-process: summary, exit status, bad input."""

from __future__ import annotations

import pandas as pd
import yaml

from mantis.cli import main
from mantis.fetch import CutoutCache


def _write(tmp_path, fast_config, rows):
    catalog = tmp_path / "cat.parquet"
    pd.DataFrame(rows).to_parquet(catalog)
    config = tmp_path / "fetch.yaml"
    config.write_text(yaml.safe_dump(fast_config()))
    return catalog, config


def _run(fake_surveys, catalog, config, out, *extra):
    return main(
        [
            "fetch",
            str(catalog),
            "--out",
            str(out),
            "--endpoint",
            fake_surveys.base_url,
            "--config",
            str(config),
            "--no-progress",
            *extra,
        ]
    )


def test_fetch_prints_summary_and_exits_zero(fake_surveys, fast_config, tmp_path, capsys):
    catalog, config = _write(tmp_path, fast_config, {"ra": [10.0, 20.0], "dec": [5.0, -45.0]})
    status = _run(
        fake_surveys, catalog, config, tmp_path / "out", "--surveys", "ps1,galex", "--size", "20"
    )
    out = capsys.readouterr().out
    assert status == 0
    assert "ps1" in out and "galex" in out and "unwise" not in out
    cache = CutoutCache(tmp_path / "out")
    assert cache.statuses("ps1") == {
        "J010.00000+05.00000": "done",
        "J020.00000-45.00000": "no_coverage",
    }
    sizes = {r["size"] for kind, r in fake_surveys.requests if kind.startswith("ps1-")}
    assert sizes == {"80"}  # 20 arcsec at 0.25"/px


def test_remaining_failures_exit_one_with_reasons(fake_surveys, fast_config, tmp_path, capsys):
    catalog, config = _write(tmp_path, fast_config, {"ra": [10.0], "dec": [5.0]})
    fake_surveys.script["unwise"] = ["html"] * 4
    status = _run(fake_surveys, catalog, config, tmp_path / "out")
    captured = capsys.readouterr()
    assert status == 1
    assert "unwise failed: 1 x HTML instead of data" in captured.out
    assert "1 product(s) failed; rerun to retry them" in captured.err


def test_invalid_rows_and_options_are_clear_errors(fake_surveys, fast_config, tmp_path, capsys):
    catalog, config = _write(tmp_path, fast_config, {"ra": [10.0, 12.0], "dec": [95.0, 5.0]})
    assert _run(fake_surveys, catalog, config, tmp_path / "out") == 2
    assert "dec outside [-90, 90] degrees: row 0" in capsys.readouterr().err
    catalog, config = _write(tmp_path, fast_config, {"ra": [10.0], "dec": [5.0]})
    assert _run(fake_surveys, catalog, config, tmp_path / "out", "--surveys", "ps1,sdss") == 2
    assert "unknown survey(s) sdss; allowed: galex, ps1, unwise" in capsys.readouterr().err
    assert _run(fake_surveys, catalog, config, tmp_path / "out", "--concurrency", "0") == 2
    assert "--concurrency must be at least 1, got 0" in capsys.readouterr().err
    assert _run(fake_surveys, catalog, config, tmp_path / "out", "--size", "-1") == 2
    assert "positive number of arcsec, got -1.0" in capsys.readouterr().err
    assert fake_surveys.counts.total() == 0


def test_an_id_too_long_for_a_file_name_is_named_and_skipped(
    fake_surveys, fast_config, tmp_path, capsys
):
    long_id = "x" * 300
    rows = {"id": ["a", long_id, "b"], "ra": [10.0, 11.0, 12.0], "dec": [5.0, 5.0, 5.0]}
    catalog, config = _write(tmp_path, fast_config, rows)
    status = _run(fake_surveys, catalog, config, tmp_path / "out", "--surveys", "galex")
    captured = capsys.readouterr()
    assert status == 1  # a row could not be done: a run-time failure
    [line] = captured.err.strip().splitlines()
    assert "row 1" in line and "x" * 40 in line and "300 characters" in line
    assert "skipped" in line
    # the run went on: the other rows were fetched
    assert CutoutCache(tmp_path / "out").statuses("galex") == {"a": "done", "b": "done"}
    assert not any(len(p.name) > 255 for p in (tmp_path / "out").rglob("*"))


def test_a_cutout_size_past_the_services_limit_is_one_line(
    fake_surveys, fast_config, tmp_path, capsys
):
    catalog, config = _write(tmp_path, fast_config, {"ra": [10.0], "dec": [5.0]})
    status = _run(fake_surveys, catalog, config, tmp_path / "out", "--size", "1e9")
    err = capsys.readouterr().err.strip()
    assert status == 2
    assert err.count("\n") == 0
    assert "1e+09 arcsec is too large for ps1: at most 600 arcsec" in err
    assert "2400 pixels" in err  # the reason: the largest cutout the service is known to serve
    assert not (tmp_path / "out").exists()
    assert fake_surveys.counts.total() == 0  # nothing was sent
