import pytest

from mantis.config import config_hash, load_config, load_yaml
from mantis.exceptions import ConfigError


def test_endpoints_default_to_the_real_services():
    endpoints = load_config("endpoints")
    assert endpoints["ps1"]["base_url"] == "https://ps1images.stsci.edu"
    assert endpoints["unwise"]["cutout_path"] == "/cutout_fits"
    assert endpoints["galex"]["layer"] == "galex"


def test_missing_and_malformed_configs_are_named(tmp_path, monkeypatch):
    monkeypatch.setenv("MANTIS_CONFIG_DIR", str(tmp_path))
    with pytest.raises(ConfigError, match="no configuration named 'nope'"):
        load_config("nope")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_yaml(bad)
    listed = tmp_path / "list.yaml"
    listed.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(str(listed))


def test_config_dir_from_environment_wins(tmp_path, monkeypatch):
    (tmp_path / "endpoints.yaml").write_text("ps1: {base_url: http://127.0.0.1:1}\n")
    monkeypatch.setenv("MANTIS_CONFIG_DIR", str(tmp_path))
    assert load_config("endpoints")["ps1"]["base_url"] == "http://127.0.0.1:1"


def test_config_hash_ignores_key_order_but_not_values():
    assert config_hash({"a": 1, "b": 2}) == config_hash({"b": 2, "a": 1})
    assert config_hash({"a": 1}) != config_hash({"a": 2})
