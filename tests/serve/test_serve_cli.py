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


def test_a_calibration_file_that_is_not_one_is_refused(tmp_path):
    """The service loads calibrations as `mantis predict` does: wrong files stop it at start."""
    from mantis.data.testing import write_synthetic_dataset
    from mantis.models import train_model
    from mantis.serve import PredictionEngine, ServeError

    data = write_synthetic_dataset(tmp_path / "synthetic.h5", 32, seed=0)
    checkpoint = train_model(
        "train/smoke_early",
        data,
        tmp_path / "run",
        overrides={"trainer.max_epochs": 1, "trainer.enable_progress_bar": False},
    )
    bad = tmp_path / "cal.json"
    bad.write_text('{"method": "nonsense"}')
    with pytest.raises(ServeError, match="calibration"):
        PredictionEngine.from_checkpoint(checkpoint, calibration=bad, cache_dir=tmp_path)
    bad.write_text("[1, 2")
    with pytest.raises(ServeError, match="is not JSON"):
        PredictionEngine.from_checkpoint(checkpoint, calibration=bad, cache_dir=tmp_path)
