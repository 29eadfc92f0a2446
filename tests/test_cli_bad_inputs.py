"""Bad files on the command line: one line on stderr naming the value, exit 2, nothing written.

Fetch's cases (an id too long for a file name, a cutout size past the services' limits) are in
tests/fetch/test_cli_fetch.py, next to the fake services they need.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from mantis.cli import main
from mantis.data.testing import write_synthetic_dataset


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return write_synthetic_dataset(tmp_path_factory.mktemp("ds") / "ds.h5", 8, seed=0)


@pytest.fixture
def workdir(tmp_path, monkeypatch, dataset) -> Path:
    """A working folder holding every kind of wrong file, and a stand-in checkpoint."""
    monkeypatch.chdir(tmp_path)
    pd.DataFrame({"id": ["a"], "ra": [10.0], "dec": [5.0]}).to_csv("cat.csv", index=False)
    Path("empty.csv").write_bytes(b"")
    Path("truncated.h5").write_bytes(dataset.read_bytes()[:4096])
    Path("model.ckpt").write_bytes(b"not read: every check runs before the checkpoint loads")
    Path("predictions.parquet").write_bytes(b"")
    Path("folder").mkdir()
    return tmp_path


def _files(root: Path) -> set[Path]:
    return {p.relative_to(root) for p in root.rglob("*")}


CASES = {
    "show --out x.xyz": (
        ["show", "{dataset}", "--out", "x.xyz"],
        ["'x.xyz'", "'.xyz'", ".png"],
    ),
    "evaluate --dataset CSV": (
        ["evaluate", "--checkpoint", "model.ckpt", "--dataset", "cat.csv", "--out", "ev"],
        ["--dataset 'cat.csv'", "not an HDF5 file"],
    ),
    "evaluate --dataset truncated HDF5": (
        ["evaluate", "--checkpoint", "model.ckpt", "--dataset", "truncated.h5", "--out", "ev"],
        ["--dataset 'truncated.h5'", "truncated"],
    ),
    "evaluate --truth CSV": (
        ["evaluate", "--checkpoint", "model.ckpt", "--dataset", "{dataset}", "--out", "ev",
         "--truth", "cat.csv"],
        ["--truth 'cat.csv'", "not a parquet file"],
    ),
    "predict 0-byte catalogue": (
        ["predict", "empty.csv", "--checkpoint", "model.ckpt", "--out", "p.parquet"],
        ["'empty.csv'", "0 bytes"],
    ),
    "priors --out into a missing folder": (
        ["priors", "{dataset}", "--format", "table", "--out", "nowhere/priors.csv"],
        ["'nowhere/priors.csv'", "'nowhere' does not exist"],
    ),
    "priors --out onto a folder": (
        ["priors", "{dataset}", "--format", "table", "--out", "folder"],
        ["--out 'folder' is a folder"],
    ),
    "build 0-byte catalogue": (
        ["build", "empty.csv", "--cutouts", "folder", "--out", "d.h5"],
        ["'empty.csv'", "0 bytes"],
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_line_exit_two_and_leaves_nothing(case, workdir, dataset, capsys):
    argv, expected = CASES[case]
    before = _files(workdir)
    status = main([arg.format(dataset=dataset) for arg in argv])
    captured = capsys.readouterr()
    assert status == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("mantis: error: ")
    assert "Traceback" not in captured.err
    for part in expected:
        assert part in lines[0]
    assert _files(workdir) == before  # no output, no folder, no temporary left behind
