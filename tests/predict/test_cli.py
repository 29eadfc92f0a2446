from mantis.cli import main


def test_missing_checkpoint_is_named(catalog, tmp_path, capsys):
    rc = main(["predict", str(catalog), "--checkpoint", str(tmp_path / "nope.ckpt"),
               "--out", str(tmp_path / "out.parquet")])  # fmt: skip
    assert rc == 2
    assert "nope.ckpt' does not exist" in capsys.readouterr().err
    assert not (tmp_path / "out.parquet").exists()


def test_catalogue_without_ra_is_named(tmp_path, capsys):
    (tmp_path / "c.csv").write_text("id,dec\na,1.0\n")
    (tmp_path / "m.ckpt").write_bytes(b"")
    rc = main(["predict", str(tmp_path / "c.csv"), "--checkpoint", str(tmp_path / "m.ckpt"),
               "--out", str(tmp_path / "o.parquet")])  # fmt: skip
    assert rc == 2
    assert "lacks column(s) ra" in capsys.readouterr().err


def test_bad_format_choice_is_rejected_by_the_parser(catalog, tmp_path, capsys):
    try:
        main(["predict", str(catalog), "--checkpoint", "x", "--out", "o", "--format", "xlsx"])
    except SystemExit as stop:
        assert stop.code == 2
    assert "invalid choice: 'xlsx'" in capsys.readouterr().err
