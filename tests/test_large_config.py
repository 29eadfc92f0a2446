"""The large skies (``configs/large.yaml``, ``xlarge.yaml``): the default's fields, more area."""

from mantis.config import load_settings
from mantis.pipeline import PipelineConfig


def _area(field: dict) -> float:
    return field["size"] ** 2  # small square fields: the cos(dec) factors cancel in the ratio


def test_large_pipeline_loads_and_trains_the_early_default_only():
    config = PipelineConfig.load("large")
    assert config["sky"]["config"] == "large"
    assert list(config["models"]) == ["early"]
    assert config["models"]["early"].endswith("configs/train/early.yaml")
    assert config.run_dir.name == "large"
    assert config.cache_dir.name.startswith("large-")  # its own cutout cache


def test_large_sky_is_the_default_sky_on_twice_the_area():
    default, large = load_settings("sky", "default"), load_settings("sky", "large")
    centres = [(f["name"], f["ra"], f["dec"]) for f in default["fields"]]
    assert [(f["name"], f["ra"], f["dec"]) for f in large["fields"]] == centres
    for small, big in zip(default["fields"], large["fields"], strict=True):
        assert 1.99 < _area(big) / _area(small) < 2.01
    # the same population and spec-z selection: only the fields differ
    assert {k: v for k, v in large.items() if k != "fields"} == {
        k: v for k, v in default.items() if k != "fields"
    }


def test_xlarge_sky_is_the_default_sky_on_four_times_the_area():
    default, xlarge = load_settings("sky", "default"), load_settings("sky", "xlarge")
    for small, big in zip(default["fields"], xlarge["fields"], strict=True):
        assert (big["name"], big["ra"], big["dec"]) == (small["name"], small["ra"], small["dec"])
        assert 3.99 < _area(big) / _area(small) < 4.01
    assert {k: v for k, v in xlarge.items() if k != "fields"} == {
        k: v for k, v in default.items() if k != "fields"
    }
    config = PipelineConfig.load("xlarge")
    assert config.cache_dir.name.startswith("xlarge-")
    # it trains the learning curve's images-only network, the config bench_learning records
    assert config["models"]["early"].endswith("configs/train/early_images.yaml")
