"""The simulated population: determinism, statistics, catalogues and bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mantis.exceptions import CatalogError, ConfigError
from mantis.sky import Universe, write_catalog
from mantis.sky._population import field_area_deg2, generate_population
from mantis.surveys import BANDS

pytestmark = pytest.mark.filterwarnings(
    "ignore:The TestRunner:astropy.utils.exceptions.AstropyDeprecationWarning"
)


@pytest.fixture(scope="module")
def universe() -> Universe:
    return Universe.from_config("test", seed=0)


def test_same_config_and_seed_give_same_sources(universe, tmp_path):
    cfg = {"fields": [{"ra": 150.1, "dec": 2.2, "size": 0.05}], "cache_dir": str(tmp_path)}
    first = Universe.from_config(cfg, seed=3).sources
    again = Universe.from_config(cfg, seed=3).sources  # read back from the parquet cache
    fresh = generate_population({k: v for k, v in cfg.items() if k != "cache_dir"}, 3)
    pd.testing.assert_frame_equal(first, again)
    pd.testing.assert_frame_equal(first, fresh)
    other = Universe.from_config(cfg, seed=4).sources
    assert not np.array_equal(first["ra"].to_numpy()[:10], other["ra"].to_numpy()[:10])
    assert len(list(tmp_path.glob("*.parquet"))) == 2
    assert not list(tmp_path.glob("*.tmp"))


def test_sources_lie_inside_their_fields_with_the_expected_density(universe):
    src = universe.sources
    for field in universe.config["fields"]:
        part = src[src["field"] == field["name"]]
        half = field["size"] / 2
        assert part["dec"].between(field["dec"] - half, field["dec"] + half).all()
        dra = (part["ra"] - field["ra"] + 180) % 360 - 180
        assert (dra.abs() <= half / np.cos(np.radians(field["dec"])) + 1e-9).all()
        # r < 24.5 galaxy counts are ~3-9e4 per deg2 in deep surveys
        density = (part["kind"] == "galaxy").sum() / field_area_deg2(field)
        assert 2e4 < density < 1.2e5
    assert src["id"].is_unique
    assert (src["mag_r"] <= universe.config["faint_limit"]).all()


def test_galaxy_counts_rise_toward_faint_magnitudes(universe):
    gal = universe.sources[universe.sources["kind"] == "galaxy"]
    counts, _ = np.histogram(gal["mag_r"], bins=np.arange(18.0, 24.01, 1.0))
    assert np.all(np.diff(counts) > 0), counts


def test_red_galaxies_are_redder_than_blue_at_the_same_redshift(universe):
    gal = universe.sources[universe.sources["kind"] == "galaxy"]
    for lo, hi in ((0.1, 0.3), (0.3, 0.6), (0.6, 1.0)):
        sl = gal[gal["z"].between(lo, hi)]
        g_r = sl["mag_g"] - sl["mag_r"]
        red = g_r[sl["sed_class"] == "red"].median()
        blue = g_r[sl["sed_class"] == "blue"].median()
        assert red > blue + 0.2, (lo, hi, red, blue)
    # the 4000 A break moves through g-r: red galaxies redden with redshift up to z ~ 0.4
    red = gal[gal["sed_class"] == "red"]
    low = (red["mag_g"] - red["mag_r"])[red["z"].between(0.05, 0.15)].median()
    high = (red["mag_g"] - red["mag_r"])[red["z"].between(0.35, 0.45)].median()
    assert high > low + 0.4


def test_extinction_follows_ebv_and_band_coefficients(universe):
    src = universe.sources
    assert (src["ebv"] > 0).all() and src["ebv"].max() < 1.0
    # the south field and the COSMOS field have different SFD values
    per_field = src.groupby("field")["ebv"].median()
    assert per_field.nunique() == len(per_field)


def test_spec_catalog_is_realistic(universe):
    spec = universe.spec_catalog()
    assert list(spec.columns) == ["id", "ra", "dec", "z"]
    assert 60 <= len(spec) <= 160
    assert spec["z"].between(0.0, 1.6, inclusive="neither").all()
    assert 0.3 <= spec["z"].median() <= 0.5
    assert spec["z"].max() > 1.0  # a tail from the ELG-like sample
    kinds = universe.sources.set_index("id").loc[spec["id"], "kind"]
    assert (kinds == "galaxy").all()


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".fits"])
def test_write_catalog_and_truth(universe, tmp_path, suffix):
    cat_path, truth_path = write_catalog(universe, tmp_path / f"spec{suffix}")
    assert truth_path == tmp_path / "spec.truth.parquet"
    if suffix == ".parquet":
        cat = pd.read_parquet(cat_path)
    elif suffix == ".csv":
        cat = pd.read_csv(cat_path)
    else:
        from astropy.table import Table

        cat = Table.read(cat_path).to_pandas()
    spec = universe.spec_catalog()
    np.testing.assert_allclose(cat["z"], spec["z"])
    ids = [i.decode() if isinstance(i, bytes) else str(i) for i in cat["id"]]
    assert ids == list(spec["id"])
    truth = pd.read_parquet(truth_path)
    assert list(truth["id"]) == list(spec["id"])
    for b in BANDS:
        # errors follow the depths: 5 sigma at the depth, 1.0857/5 mag
        at_depth = 2.5 / np.log(10) / 5.0
        expect = at_depth * 10 ** (0.4 * (truth[f"mag_{b.name}"] - b.depth_5sigma))
        np.testing.assert_allclose(truth[f"magerr_{b.name}"], expect, rtol=1e-9)
    assert {"kind", "ebv", "hlr_arcsec", "q_disk", "pa_deg", "coeff_0"} <= set(truth.columns)
    assert not list(tmp_path.glob("*.tmp"))


def test_write_catalog_rejects_unknown_extension(universe, tmp_path):
    with pytest.raises(CatalogError, match=r"'\.txt'.*allowed: \.parquet, \.csv, \.fits"):
        write_catalog(universe, tmp_path / "spec.txt")


def test_truth_rejects_unknown_ids(universe):
    with pytest.raises(CatalogError, match="nope"):
        universe.truth(["nope"])


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"fields": []}, "non-empty list"),
        ({"fields": [{"ra": 10, "dec": 95, "size": 1}]}, r"fields\[0\]\.dec=95"),
        ({"fields": [{"ra": 10, "dec": 0, "size": -1}]}, r"fields\[0\]\.size=-1"),
        ({"fields": [{"ra": "x", "dec": 0, "size": 1}]}, r"fields\[0\]\.ra='x'"),
        ({"faint_limit": 40}, r"faint_limit=40 must be a number in \[15\.0, 27\.0\]"),
        ({"colour": 1}, r"'colour' is not a sky setting"),
        ({"spec": {"lrg": {"rate": 2}}}, r"spec\.lrg\.rate=2"),
    ],
)
def test_bad_configs_are_named(config, message):
    with pytest.raises(ConfigError, match=message):
        Universe.from_config(config)


def test_unknown_config_name_and_bad_seed():
    with pytest.raises(ConfigError, match="no configuration named 'sky/nosuch'"):
        Universe.from_config("nosuch")
    with pytest.raises(ConfigError, match="seed must be a non-negative integer, got -1"):
        Universe.from_config("test", seed=-1)


def _user_table(**overrides) -> pd.DataFrame:
    table = pd.DataFrame({"id": ["a", "b"], "ra": [10.0, 10.01], "dec": [5.0, 5.0], "z": [0.3, 0.0],
                          "kind": ["galaxy", "star"], "size_arcsec": [0.8, 0.0],
                          "ellipticity": [0.3, 0.0], "pa_deg": [30.0, 0.0]})  # fmt: skip
    for b in BANDS:
        table[f"mag_{b.name}"] = 19.0
    for key, value in overrides.items():
        table[key] = value
    return table


def test_from_catalog_reads_a_user_table(tmp_path):
    path = tmp_path / "mine.csv"
    _user_table().to_csv(path, index=False)
    uni = Universe.from_catalog(path)
    assert list(uni.sources["id"]) == ["a", "b"]
    np.testing.assert_allclose(uni.sources["q_disk"], [0.7 / 1.3, 1.0])
    assert list(uni.spec_catalog()["id"]) == ["a"]


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (_user_table().drop(columns=["mag_W2"]), r"lacks columns \['mag_W2'\]"),
        (_user_table(ra=[400.0, 10.0]), r"'ra' must lie in \[0\.0, 360\.0\); bad rows \[0\]"),
        (_user_table(dec=[0.0, np.nan]), r"'dec' must be finite numbers; bad rows \[1\]"),
        (_user_table(ellipticity=[1.2, 0.0]), r"'ellipticity' must lie in \[0\.0, 1\.0\)"),
        (_user_table(kind=["galaxy", "qso"]), r"'kind' must be 'galaxy' or 'star'; bad rows \[1\]"),
        (_user_table(id=["a", "a"]), r"duplicate ids: \['a'\]"),
        (_user_table(mag_g=[np.inf, 19.0]), r"'mag_g' must be AB magnitudes"),
    ],
)
def test_from_catalog_rejects_bad_tables(tmp_path, table, message):
    path = tmp_path / "bad.parquet"
    table.to_parquet(path)
    with pytest.raises(CatalogError, match=message):
        Universe.from_catalog(path)


def test_from_catalog_rejects_missing_and_unknown_files(tmp_path):
    with pytest.raises(CatalogError, match="does not exist"):
        Universe.from_catalog(tmp_path / "none.csv")
    path = tmp_path / "cat.txt"
    path.write_text("ra,dec\n")
    with pytest.raises(CatalogError, match=r"extension '\.txt'; allowed: \.csv, \.parquet"):
        Universe.from_catalog(path)


def test_spec_samples_select_what_they_claim(universe):
    src = universe.sources
    bright = src[src["spec_sample"] == "bright"]
    assert (bright["mag_r"] < 17.8).all() and bright["z"].median() < 0.2
    lrg = src[src["spec_sample"] == "lrg"]
    assert (lrg["sed_class"] == "red").mean() > 0.8
    assert (lrg["mag_r"] - lrg["mag_z"] > 1.0).all()
    elg = src[src["spec_sample"] == "elg"]
    assert (elg["sed_class"] == "blue").mean() > 0.8
    assert elg["z"].median() > lrg["z"].median()
