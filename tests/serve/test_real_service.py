"""``mantis serve`` with a checkpoint trained on the simulated sky, cutouts from the imitation.

The client's densities equal those of `predict_catalog` (``mantis predict``) on the same
objects; pyvo finds them by cone search; a server killed during a job resumes it on restart;
`MantisEstimator` runs as a RAIL stage, chunk by chunk, with the same densities.
"""

from __future__ import annotations

import signal
import time

import numpy as np
import pandas as pd
import pytest
import requests
from astropy.table import Table

from mantis.client import Service
from mantis.predict import predict_catalog, read_predictions
from mantis.serve.testing import running_service


@pytest.fixture(scope="module")
def reference(trained, sky_server, tmp_path_factory):
    """(objects, predictions by `predict_catalog`) for 16 galaxies of both sky fields."""
    spec, checkpoint = trained
    root = tmp_path_factory.mktemp("serve-reference")
    objects = pd.concat([spec[spec["dec"] >= -30].head(10), spec[spec["dec"] < -30].head(6)])
    objects = objects[["id", "ra", "dec", "z"]].reset_index(drop=True)
    objects.to_csv(root / "cat.csv", index=False)
    predict_catalog(root / "cat.csv", root / "ref.parquet", checkpoint=checkpoint,
                    endpoint=sky_server, cache_dir=root / "cache", progress=False)  # fmt: skip
    table, probs, zgrid = read_predictions(root / "ref.parquet")
    return objects, table, probs, zgrid


def _serve_args(checkpoint, sky_server, root, *extra):
    return ["--checkpoint", str(checkpoint), "--endpoint", sky_server,
            "--cache", str(root / "cache"), "--state", str(root / "state"), *extra]  # fmt: skip


def test_client_and_cone_search_against_mantis_serve(trained, sky_server, reference, tmp_path):
    import pyvo

    _, checkpoint = trained
    objects, table, probs, zgrid = reference
    before = {p.name for p in tmp_path.iterdir()}
    with running_service(_serve_args(checkpoint, sky_server, tmp_path)) as (url, _):
        assert url.startswith("http://127.0.0.1:")
        result = Service(url).predict(Table.from_pandas(objects[["id", "ra", "dec"]]))
        found = pyvo.dal.SCSService(f"{url}/v1/cone").search(
            pos=(objects["ra"][3], objects["dec"][3]), radius=1 / 3600
        )  # fmt: skip
    assert result["id"].tolist() == objects["id"].tolist()
    assert result["valid"].tolist() == table["valid"].tolist()
    np.testing.assert_allclose(result["z_mean"], table["z_mean"], rtol=1e-9)
    np.testing.assert_allclose(result["z_lo68"], table["z_lo68"], rtol=1e-9)
    np.testing.assert_allclose(result.meta["ensemble"].pdf(zgrid.centres) * zgrid.width, probs,
                               atol=2e-6)  # fmt: skip
    assert found.to_table()["id"].tolist() == [objects["id"][3]]
    # the service wrote into its state and cache folders only
    assert {p.name for p in tmp_path.iterdir()} - before <= {"state", "cache"}
    assert {p.name for p in (tmp_path / "state").iterdir()} == {"jobs", "scratch", "cone.sqlite"}
    assert list((tmp_path / "state" / "scratch").iterdir()) == []  # batch folders removed


@pytest.mark.slow  # two server starts and a job fetched through the imitation services: ~40 s
def test_a_killed_server_resumes_its_job_on_restart(trained, sky_server, reference, tmp_path):
    _, checkpoint = trained
    objects, table, _, _ = reference
    args = _serve_args(checkpoint, sky_server, tmp_path, "--batch-size", "2")
    objects[["id", "ra", "dec"]].to_csv(tmp_path / "job.csv", index=False)
    with running_service(args) as (url, process):
        with (tmp_path / "job.csv").open("rb") as fh:
            job = requests.post(f"{url}/v1/jobs", files={"file": ("job.csv", fh)},
                                timeout=60).json()  # fmt: skip
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            state = requests.get(f"{url}/v1/jobs/{job['jobId']}", timeout=30).json()
            if state["phase"] == "EXECUTING" and state["progress"]["rowsDone"] >= 2:
                break
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert state["phase"] == "EXECUTING" and 2 <= state["progress"]["rowsDone"] < 16, state
    with running_service(args) as (url, _):
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            state = requests.get(f"{url}/v1/jobs/{job['jobId']}", timeout=30).json()
            if state["phase"] in ("COMPLETED", "ERROR"):
                break
            time.sleep(0.2)
        assert state["phase"] == "COMPLETED", state
        answer = requests.get(f"{url}/v1/jobs/{job['jobId']}/results/parquet", timeout=60)
    (tmp_path / "r.parquet").write_bytes(answer.content)
    result, _, _ = read_predictions(tmp_path / "r.parquet")
    assert result["id"].tolist() == objects["id"].tolist()
    np.testing.assert_allclose(result["z_median"], table["z_median"], rtol=1e-9)


def test_mantis_estimator_in_a_rail_stage(trained, sky_server, reference, tmp_path):
    import qp
    import tables_io
    from rail.core.data import TableHandle

    from mantis.rail import MantisEstimator

    _, checkpoint = trained
    objects, table, probs, zgrid = reference
    columns = {"object_id": objects["id"].to_numpy().astype("S"), "ra": objects["ra"].to_numpy(),
               "dec": objects["dec"].to_numpy(), "redshift": objects["z"].to_numpy()}  # fmt: skip
    tables_io.write({"photometry": columns}, str(tmp_path / "input.hdf5"))
    stage = MantisEstimator.make_stage(
        name="mantis_rail_test", checkpoint=str(checkpoint), endpoint=sky_server,
        cache_dir=str(tmp_path / "cache"), chunk_size=4, output=str(tmp_path / "pz.hdf5"),
        # (rail_base 2.0.11 cannot write point estimates of a one-row last chunk)
        calculated_point_estimates=["zmean"],
    )  # fmt: skip
    handle = stage.estimate(TableHandle("input", path=str(tmp_path / "input.hdf5")))
    ensemble = qp.read(str(tmp_path / "pz.hdf5"))
    assert handle.data.npdf == ensemble.npdf == 16  # four chunks of four rows
    ids = [i.decode() if isinstance(i, bytes) else str(i) for i in ensemble.ancil["id"].ravel()]
    assert ids == objects["id"].tolist()
    np.testing.assert_allclose(ensemble.ancil["redshift"].ravel(), objects["z"])
    assert ensemble.ancil["mantis_valid"].ravel().tolist() == table["valid"].tolist()
    np.testing.assert_allclose(ensemble.pdf(zgrid.centres) * zgrid.width, probs, atol=2e-6)
    # RAIL's own point estimate (mean of the qp histogram) agrees with mantis's z_mean
    np.testing.assert_allclose(ensemble.ancil["zmean"].ravel(), table["z_mean"], atol=1e-5)
