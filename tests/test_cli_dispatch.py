import subprocess
import sys

import pytest

from mantis.cli import build_parser, main
from mantis.exceptions import ConfigError


def test_help_lists_the_verbs(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "pipeline" in out


def test_no_verb_prints_help_and_fails(capsys):
    assert main([]) == 2
    assert "usage: mantis" in capsys.readouterr().out


def test_unknown_verb_is_refused(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["frobnicate"])
    assert exc.value.code == 2
    assert "frobnicate" in capsys.readouterr().err


def test_mantis_errors_become_one_line_and_status_2(tmp_path, capsys):
    missing = tmp_path / "nope.yaml"
    assert main(["pipeline", "--config", str(missing)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mantis: error:")
    assert "nope.yaml" in err
    assert "Traceback" not in err


def test_pipeline_config_names_missing_sections(tmp_path):
    from mantis.pipeline import PipelineConfig

    path = tmp_path / "p.yaml"
    path.write_text("name: x\nsky: {config: test, seed: 0}\n")
    with pytest.raises(ConfigError, match=r"pipeline setting 'models' is missing \[in .*p\.yaml\]"):
        PipelineConfig.load(path)


def test_importing_mantis_does_not_import_torch():
    # predict with a stand-in network (and its shift columns) must not pay for torch either
    modules = "mantis, mantis.cli, mantis.surveys, mantis.predict, mantis.explain"
    code = f"import sys, {modules}; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_every_registered_verb_has_a_parser():
    parser = build_parser(["pipeline"])
    args = parser.parse_args(["pipeline", "--config", "x.yaml"])
    assert args.config == "x.yaml"
    assert callable(args.func)
