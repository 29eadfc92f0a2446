"""Checkpoints are read without running code: hostile, empty, text and truncated files."""

from __future__ import annotations

import pickle
import zipfile

import pytest
import torch

from mantis.cli import main
from mantis.exceptions import ConfigError
from mantis.models import UnsafeCheckpointError, load_predictor, read_checkpoint
from mantis.models._checkpoint import ALLOWED_GLOBALS, pickle_globals


class CreatesAFile:
    """Unpickling this creates ``path``: what a hostile checkpoint would do."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (exec, (f"open({self.path!r}, 'w').close()",))


def _data_pkl(path) -> bytes:
    with zipfile.ZipFile(path) as archive:
        return archive.read(next(n for n in archive.namelist() if n.endswith("data.pkl")))


def test_a_trained_checkpoint_holds_only_allowed_globals_and_loads(trained_run):
    _, best = trained_run
    names = set(pickle_globals(_data_pkl(best)))
    assert names and names <= ALLOWED_GLOBALS
    checkpoint = read_checkpoint(best)
    assert checkpoint["mantis"]["net"] == checkpoint["hyper_parameters"]["net"]
    assert load_predictor(best).zgrid.n_bins == checkpoint["hyper_parameters"]["n_z"]


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_globals_are_read_without_unpickling(tmp_path, protocol):
    marker = tmp_path / "ran"
    data = pickle.dumps({"x": [CreatesAFile(marker)], "y": CreatesAFile(marker)}, protocol)
    names = pickle_globals(data)
    assert set(names) == {"builtins.exec" if protocol > 2 else "__builtin__.exec"}
    assert not marker.exists()


def test_a_checkpoint_that_would_run_code_is_refused_before_anything_runs(tmp_path, trained_run):
    marker = tmp_path / "ran"
    hostile = tmp_path / "hostile.ckpt"
    checkpoint = torch.load(trained_run[1], weights_only=True)
    checkpoint["mantis"]["calibration"] = CreatesAFile(marker)
    torch.save(checkpoint, hostile)
    with pytest.raises(UnsafeCheckpointError, match=r"hostile\.ckpt.*exec.*refusing"):
        load_predictor(hostile)
    assert not marker.exists()


def test_predict_with_a_hostile_checkpoint_says_one_line_and_runs_nothing(
    tmp_path, capsys, trained_run
):
    marker = tmp_path / "ran"
    hostile = tmp_path / "hostile.ckpt"
    torch.save({"mantis": CreatesAFile(marker), "hyper_parameters": {}}, hostile)
    catalog = tmp_path / "cat.csv"
    catalog.write_text("id,ra,dec\na,10.0,5.0\n")
    out = tmp_path / "out.parquet"
    status = main(["predict", str(catalog), "--checkpoint", str(hostile), "--out", str(out),
                   "--endpoint", "http://127.0.0.1:9", "--no-progress"])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert status == 2
    assert len(err.splitlines()) == 1 and "hostile.ckpt" in err and "refusing" in err
    assert not marker.exists()
    assert not out.exists() and not (tmp_path / "out.parquet.parts").exists()


def test_a_raw_pickle_is_refused_unread(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "model.ckpt"
    path.write_bytes(pickle.dumps(CreatesAFile(marker)))
    with pytest.raises(ConfigError, match=r"model\.ckpt' is a raw pickle .*expected a \.ckpt"):
        read_checkpoint(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", r"is empty \(0 bytes\); expected"),
        (b"model: early\nweights: none\n", r"is not a zip archive \(\d+ bytes\); expected"),
        ("half", r"is truncated or damaged .*expected"),
    ],
    ids=["empty", "text", "truncated"],
)
def test_unusable_files_get_one_line_naming_the_file(tmp_path, trained_run, content, message):
    path = tmp_path / "model.ckpt"
    if content == "half":
        whole = trained_run[1].read_bytes()
        content = whole[: len(whole) // 2]
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=message) as info:
        read_checkpoint(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_a_damaged_pickle_inside_the_archive_is_named(tmp_path, trained_run):
    path = tmp_path / "model.ckpt"
    with zipfile.ZipFile(trained_run[1]) as src, zipfile.ZipFile(path, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            dst.writestr(
                item, data[: len(data) // 2] if item.filename.endswith("data.pkl") else data
            )
    with pytest.raises(ConfigError, match=r"model\.ckpt' has a damaged pickle"):
        read_checkpoint(path)


def test_a_calibration_with_numpy_numbers_is_stored_plain_and_loads(tmp_path, trained_run):
    import numpy as np

    from mantis.models import attach_calibration

    copy = tmp_path / "model.ckpt"
    copy.write_bytes(trained_run[1].read_bytes())
    attach_calibration(copy, {"temperature": np.float64(1.5), "remap": np.linspace(0, 1, 3)})
    assert set(pickle_globals(_data_pkl(copy))) <= ALLOWED_GLOBALS
    stored = load_predictor(copy).calibration
    assert stored == {"temperature": 1.5, "remap": [0.0, 0.5, 1.0]}
    assert type(stored["temperature"]) is float
