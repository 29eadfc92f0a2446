"""``mantis serve`` refuses bad arguments with one line and status 2, before loading anything."""

from __future__ import annotations

import pytest

from mantis.cli import main


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--checkpoint", "nowhere.ckpt"], ["checkpoint 'nowhere.ckpt' does not exist"]),
        (["--checkpoint", "x.ckpt", "--port", "70000"], ["--port", "70000"]),
        (["--checkpoint", "x.ckpt", "--max-radius", "0"], ["--max-radius", "> 0"]),
        (["--checkpoint", "x.ckpt", "--rate", "-1"], ["--rate", "-1"]),
        (["--checkpoint", "x.ckpt", "--max-positions", "0"], ["--max-positions", ">= 1"]),
    ],
)
def test_bad_arguments_exit_2_with_one_line(args, words, capsys):
    assert main(["serve", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("mantis: error:")
    for word in words:
        assert word in err


def test_a_calibration_file_that_is_not_one_is_refused(tmp_path, capsys):
    from mantis.serve._engine import _read_calibration

    bad = tmp_path / "cal.json"
    bad.write_text('{"method": "nonsense"}')
    from mantis.serve import ServeError

    with pytest.raises(ServeError, match="is not a mantis calibration"):
        _read_calibration(bad)
    bad.write_text("[1, 2")
    with pytest.raises(ServeError, match="cannot read calibration file"):
        _read_calibration(bad)
