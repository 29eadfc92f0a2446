from pathlib import Path

import pytest

from mantis.cli import main
from mantis.config import (
    cache_root,
    config_file,
    config_hash,
    load_config,
    load_settings,
    load_yaml,
)
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


# -- strict schemas: one typo, one wrong type and one out-of-range value per kind ---------------
PIPELINE = "name: t\nsky: {config: test, seed: 0}\nmodels: {early: train/smoke_early}\n"
BAD_FILES = {
    "pipeline": [
        (PIPELINE + "evalute: {split: test}\n", "'evalute' is not a pipeline setting; "
         "did you mean 'evaluate'?"),
        (PIPELINE + "server: {fail_rat: 0.1}\n", "did you mean 'server.fail_rate'?"),
        (PIPELINE + "fetch: {concurrency: sixteen}\n", "fetch.concurrency='sixteen' must be an "
         "integer in [1, 1024]"),
        (PIPELINE + "server: {fail_rate: 1.5}\n", "server.fail_rate=1.5 must be a number in "
         "[0.0, 1.0]"),
        ("name: t\nsky: {config: test}\nmodels: {early: train/smoke_early}\n",
         "pipeline setting 'sky.seed' is missing"),
    ],
    "sky": [
        ("faint_limt: 24\n", "'faint_limt' is not a sky setting; did you mean 'faint_limit'?"),
        ("fields: [{ra: 10, dec: 0, size: big}]\n", "fields[0].size='big' must be a number"),
        ("z_max: 9\n", "z_max=9 must be a number in [0.1, 2.5]"),
    ],
    "fetch": [
        ("client: {concurency_per_host: 4}\n", "'client.concurency_per_host' is not a fetch "
         "setting; did you mean 'client.concurrency_per_host'?"),
        ("fsync: maybe\n", "fsync='maybe' must be true or false"),
        ("client: {max_attempts: 0}\n", "client.max_attempts=0 must be an integer in [1, 100]"),
    ],
    "build": [
        ("chunk_objcts: 8\n", "'chunk_objcts' is not a build setting; did you mean "
         "'chunk_objects'?"),
        ("grids: {ps1: {size: 12.5}}\n", "grids.ps1.size=12.5 must be an integer in [1, 4096]"),
        ("min_valid_fraction: 0\n", "min_valid_fraction=0 must be a number in (0.0, 1.0]"),
    ],
    "endpoints": [
        ("ps1: {base_ulr: 'http://127.0.0.1:1'}\n", "did you mean 'ps1.base_url'?"),
        ("unwise: {version: 7}\n", "unwise.version=7 must be a string"),
        ("galex: {cutout_path: viewer}\n", "galex.cutout_path='viewer' must be a string "
         "matching ^/"),
    ],
}  # fmt: skip


def _argv(kind: str, path: Path, tmp_path: Path) -> list[str]:
    catalog = tmp_path / "cat.csv"
    catalog.write_text("id,ra,dec\na,10,5\n")
    if kind == "pipeline":
        return ["pipeline", "--config", str(path)]
    if kind == "sky":
        return ["sky", "catalog", "--config", str(path), "--out", str(tmp_path / "sky.parquet")]
    if kind == "build":
        (tmp_path / "cutouts").mkdir(exist_ok=True)
        cutouts = str(tmp_path / "cutouts")
        return ["build", str(catalog), "--cutouts", cutouts, "--out", str(tmp_path / "d.h5"),
                "--config", str(path)]  # fmt: skip
    fetch = ["fetch", str(catalog), "--out", str(tmp_path / "cache"), "--no-progress"]
    if kind == "fetch":
        return [*fetch, "--config", str(path)]
    return fetch  # endpoints.yaml is found through $MANTIS_CONFIG_DIR


@pytest.mark.parametrize(
    ("kind", "text", "message"),
    [(kind, text, message) for kind, cases in BAD_FILES.items() for text, message in cases],
)
def test_a_bad_setting_in_any_config_file_is_one_line_naming_it(
    kind, text, message, tmp_path, monkeypatch, capsys
):
    folder = tmp_path / "configs"
    folder.mkdir()
    path = folder / ("endpoints.yaml" if kind == "endpoints" else f"my_{kind}.yaml")
    path.write_text(text)
    monkeypatch.setenv("MANTIS_CONFIG_DIR", str(folder))
    monkeypatch.chdir(tmp_path)
    argv = _argv(kind, path, tmp_path)
    before = set(tmp_path.rglob("*"))
    status = main(argv)
    err = capsys.readouterr().err
    assert status == 2
    [line] = err.strip().splitlines()
    assert message in line
    assert str(path) in line  # the file is named
    assert set(tmp_path.rglob("*")) == before  # nothing was started


def test_a_users_file_overrides_only_the_keys_it_names(tmp_path):
    mine = tmp_path / "fetch.yaml"
    mine.write_text("client: {concurrency_per_host: 2}\nps1: {lookup_chunk: 10}\n")
    settings = load_settings("fetch", mine)
    shipped = load_settings("fetch")
    assert settings["client"]["concurrency_per_host"] == 2
    assert settings["ps1"]["lookup_chunk"] == 10
    # everything else, nested keys included, is the shipped default
    assert settings["client"]["max_attempts"] == shipped["client"]["max_attempts"] == 6
    assert settings["ps1"]["type"] == "stack"
    assert settings["galex"] == shipped["galex"]


def test_shipped_configs_are_valid_and_found_by_name():
    for kind, name in [("fetch", None), ("endpoints", None), ("build", None),
                       ("sky", "default"), ("sky", "smoke"), ("sky", "test"),
                       ("pipeline", "default"), ("pipeline", "smoke")]:  # fmt: skip
        assert load_settings(kind, name)
    assert config_file("train/early").name == "early.yaml"
    assert config_file("configs/train/early.yaml") == config_file("train/early")  # old paths


def test_user_path_wins_over_the_shipped_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "early.yaml").write_text("model: {}\n")
    assert config_file("train/early.yaml") == Path("train/early.yaml")
    assert config_file("train/early") != Path("train/early.yaml")  # a bare name is shipped


def test_caches_go_to_the_user_cache_folder_or_the_environment(tmp_path, monkeypatch):
    import mantis
    from mantis.sky import Universe

    monkeypatch.delenv("MANTIS_CACHE_DIR", raising=False)
    monkeypatch.delenv("MANTIS_SKY_CACHE", raising=False)
    package = Path(mantis.__file__).parent
    assert package not in cache_root().parents
    monkeypatch.setenv("MANTIS_CACHE_DIR", str(tmp_path))
    assert cache_root() == tmp_path
    Universe.from_config("test", seed=3)
    assert len(list((tmp_path / "sky").glob("*-3.parquet"))) == 1


def test_sky_cache_option_moves_the_population_cache(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("MANTIS_SKY_CACHE", raising=False)  # restored after the test
    cache = tmp_path / "populations"
    out = tmp_path / "cat.parquet"
    argv = ["sky", "catalog", "--config", "test", "--seed", "4", "--out", str(out)]
    assert main([*argv, "--cache", str(cache)]) == 0
    assert len(list(cache.glob("*-4.parquet"))) == 1
    assert out.is_file()
