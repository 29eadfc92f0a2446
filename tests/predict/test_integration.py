"""`predict_catalog` with the real pieces: imitation server → fetch → build → trained network.

A module-scoped fixture fetches the `test` sky's spectroscopic sample from `mantis sky serve`,
builds a small dataset from it, and trains the smoke early-fusion model for one epoch; the tests
then predict a catalogue of those galaxies through a fresh cutout cache.
"""

from __future__ import annotations

import hashlib
import sqlite3
from contextlib import closing

import numpy as np
import pandas as pd
import pytest

from mantis.predict import predict_catalog, read_predictions

# Small grids keep the build and the network fast; a fine HEALPix split puts objects of both
# sky fields into train, val and test.
BUILD_OVERRIDES = {
    "grids": {
        "galex": {"pixel_scale": 1.5, "size": 16},
        "ps1": {"pixel_scale": 0.25, "size": 64},
        "unwise": {"pixel_scale": 2.75, "size": 8},
        "early": {"pixel_scale": 1.0, "size": 16},
    },
    "split": {"nside": 4096, "fractions": {"train": 0.7, "val": 0.15, "test": 0.15}, "seed": 0},
}


@pytest.fixture(scope="module")
def trained(sky_server, tmp_path_factory):
    """(spec catalogue, checkpoint path) of a model trained on the served `test` sky."""
    from mantis.config import load_config
    from mantis.fetch import fetch_catalog
    from mantis.models import train_model
    from mantis.sky import Universe
    from mantis.stack import build_dataset

    root = tmp_path_factory.mktemp("predict-integration")
    spec = Universe.from_config("test", seed=0).spec_catalog().reset_index(drop=True)
    summary = fetch_catalog(
        spec, cache_dir=root / "train-cache", endpoint=sky_server, progress=False
    )
    assert summary.ok, summary.format()
    config = {**load_config("build"), **BUILD_OVERRIDES}
    build_dataset(spec, root / "train-cache", root / "train.h5", config, progress=False)
    checkpoint = train_model(
        "train/smoke_early",
        root / "train.h5",
        root / "run",
        overrides={"trainer.max_epochs": 1},
    )
    return spec, checkpoint


@pytest.fixture(scope="module")
def predicted(trained, sky_server, tmp_path_factory):
    """A user catalogue from both fields (and one bad row), predicted twice through fresh caches."""
    spec, checkpoint = trained
    root = tmp_path_factory.mktemp("predict-run")
    south = spec[spec["dec"] < -30].head(10)
    north = spec[spec["dec"] >= -30].head(14)
    catalog = pd.concat([north, south]).sample(frac=1.0, random_state=1).reset_index(drop=True)
    catalog["mag_hint"] = np.arange(len(catalog), dtype=float)
    bad = pd.DataFrame(
        {"id": ["bad-dec"], "ra": [10.0], "dec": [95.0], "z": [0.1], "mag_hint": [-1]}
    )
    catalog = pd.concat([catalog, bad], ignore_index=True)
    catalog.to_csv(root / "cat.csv", index=False)
    outs = []
    for run in ("first", "second"):
        out = root / f"{run}.parquet"
        predict_catalog(
            root / "cat.csv",
            out,
            checkpoint=checkpoint,
            endpoint=sky_server,
            cache_dir=root / f"cache-{run}",
            batch_size=8,
            progress=False,
        )
        outs.append(out)
    return catalog, checkpoint, root, outs


def test_rows_match_the_catalogue_and_densities_are_normalised(predicted):
    from mantis.models import load_predictor

    catalog, checkpoint, _, (out, _) = predicted
    df, probs, zgrid = read_predictions(out)
    assert df["id"].tolist() == catalog["id"].tolist()
    np.testing.assert_allclose(df["ra"], catalog["ra"])
    np.testing.assert_allclose(df["mag_hint"], catalog["mag_hint"])
    assert zgrid == load_predictor(checkpoint).zgrid
    valid = df["valid"].to_numpy(dtype=bool)
    assert valid.tolist() == [True] * (len(catalog) - 1) + [False]
    assert "dec outside" in df["flag"].iloc[-1]
    np.testing.assert_allclose(probs[valid].sum(axis=1), 1.0, atol=1e-5)
    assert (probs[valid] >= 0).all() and np.isnan(probs[~valid]).all()
    # the point estimates agree with the density on the checkpoint's grid
    np.testing.assert_allclose(df["z_mean"][valid], probs[valid] @ zgrid.centres, rtol=1e-4)
    assert (df["z_lo68"][valid] <= df["z_median"][valid]).all()
    assert (df["z_median"][valid] <= df["z_hi68"][valid]).all()


def test_coverage_flags_match_the_fetch_manifest(predicted):
    _, _, root, (out, _) = predicted
    df, _, _ = read_predictions(out)
    with closing(sqlite3.connect(root / "cache-first" / "manifest.sqlite")) as db:
        rows = db.execute("SELECT object_id, survey, status FROM products").fetchall()
    status = {(obj, survey): s for obj, survey, s in rows}
    good = df[df["valid"]]
    for survey in ("galex", "ps1", "unwise"):
        expected = [status[(i, survey)] == "done" for i in good["id"]]
        assert good[f"has_{survey}"].tolist() == expected, survey
    # the `test` sky's southern field lies below dec -30, outside Pan-STARRS1
    south = good["dec"] < -30
    assert south.sum() == 10
    assert not good.loc[south, "has_ps1"].any() and good.loc[~south, "has_ps1"].all()
    assert "bad-dec" not in {obj for obj, _ in status}  # invalid rows are never fetched


def test_second_run_is_byte_identical(predicted):
    *_, (first, second) = predicted
    assert (
        hashlib.sha256(first.read_bytes()).digest() == hashlib.sha256(second.read_bytes()).digest()
    )


def test_a_calibration_file_is_applied_and_must_match_the_checkpoint(
    predicted, sky_server, tmp_path, capsys
):
    from mantis.calibration import Calibration, write_calibration
    from mantis.cli import main

    _, checkpoint, root, (first, _) = predicted
    df_raw, raw, zgrid = read_predictions(first)
    assert not df_raw["calibrated"].any()  # no calibration file beside the checkpoint
    calibration = Calibration("temperature", zgrid, temperature=2.0)
    path = tmp_path / "cal.json"
    write_calibration(calibration, path, checkpoint=checkpoint, split="val")
    out = tmp_path / "cal.parquet"
    argv = ["predict", str(root / "cat.csv"), "--checkpoint", str(checkpoint), "--out", str(out),
            "--endpoint", sky_server, "--cache", str(root / "cache-first"), "--batch-size", "8",
            "--no-progress"]  # fmt: skip
    assert main([*argv, "--calibration", str(path)]) == 0
    df, probs, _ = read_predictions(out)
    valid = df["valid"].to_numpy(dtype=bool)
    assert df["calibrated"][valid].all()
    np.testing.assert_allclose(probs[valid], calibration.apply(raw[valid]), atol=1e-6)
    other = tmp_path / "other.ckpt"
    other.write_bytes(b"another network")
    write_calibration(calibration, path, checkpoint=other, split="val")
    assert main([*argv[:-1], "--overwrite", "--calibration", str(path)]) == 2
    assert "fitted for another checkpoint" in capsys.readouterr().err


@pytest.mark.parametrize("fmt", ["parquet", "fits", "csv", "qp", "votable"])
def test_shift_columns_are_in_every_output_format(predicted, sky_server, fmt):
    from mantis.explain import ShiftReference, reference_path

    _, checkpoint, root, outs = predicted
    out = root / f"shift.{ {'qp': 'hdf5', 'votable': 'vot'}.get(fmt, fmt) }"
    predict_catalog(root / "cat.csv", out, checkpoint=checkpoint, cache_dir=root / "cache-first",
                    endpoint=sky_server, fmt=fmt, batch_size=8, progress=False)  # fmt: skip
    frame, _, _ = read_predictions(outs[0])
    valid = frame["valid"].to_numpy()
    reference = ShiftReference.load(reference_path(checkpoint))
    assert np.all(np.isfinite(frame["shift_score"][valid]))
    assert frame["shift_pvalue"][~valid].isna().all() and not frame["shifted"][~valid].any()
    field = frame["field_shift_pvalue"].to_numpy(dtype=float)
    assert np.isnan(field[~valid]).all()
    # the object p-value, Bonferroni-combined with the field's where its cell was tested
    object_p = reference.pvalue(frame["shift_score"][valid].to_numpy())
    expected_p = np.where(
        np.isnan(field[valid]), object_p, np.minimum(1.0, 2.0 * np.minimum(object_p, field[valid]))
    )
    np.testing.assert_allclose(frame["shift_pvalue"][valid], expected_p)
    np.testing.assert_array_equal(frame["shifted"][valid], expected_p < 0.01)
    if fmt == "qp":
        import qp

        ancil = qp.read(str(out)).ancil
        np.testing.assert_allclose(ancil["shift_score"], frame["shift_score"][valid], rtol=1e-12)
        np.testing.assert_array_equal(ancil["shifted"], frame["shifted"][valid])
        return
    other, _, _ = read_predictions(out)
    for name in ("shift_score", "shift_pvalue", "field_shift_pvalue"):
        np.testing.assert_allclose(other[name], frame[name], rtol=1e-9, equal_nan=True)
    assert not any(str(c).startswith("_field_") for c in other.columns)
    np.testing.assert_array_equal(other["shifted"].astype(bool), frame["shifted"])
