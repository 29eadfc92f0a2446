"""Asynchronous jobs: upload, phases, results in every format, and refused uploads."""

from __future__ import annotations

import io
import time

import numpy as np
import pandas as pd
import pytest
import requests
from astropy.table import Table


def _wait(url, job_id, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = requests.get(f"{url}/v1/jobs/{job_id}", timeout=30).json()
        if state["phase"] in ("COMPLETED", "ERROR"):
            return state
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} still {state['phase']}")


def _catalog(n=12):
    rng = np.random.default_rng(3)
    ids = [f"obj{i}" for i in range(n)]
    return pd.DataFrame({"id": ids, "ra": rng.uniform(0, 360, n), "dec": rng.uniform(-60, 60, n),
                         "mag": rng.uniform(17, 21, n)})  # fmt: skip


@pytest.mark.parametrize("kind", ["csv", "fits", "vot", "parquet"])
def test_job_from_each_catalogue_format_completes_with_the_users_ids(service, tmp_path, kind):
    url, _ = service
    cat = _catalog()
    path = tmp_path / f"cat.{kind}"
    if kind == "csv":
        cat.to_csv(path, index=False)
    elif kind == "parquet":
        cat.to_parquet(path)
    else:
        Table.from_pandas(cat).write(path, format="votable" if kind == "vot" else "fits")
    with path.open("rb") as fh:
        answer = requests.post(f"{url}/v1/jobs", files={"file": (path.name, fh)}, timeout=60)
    assert answer.status_code == 202, answer.text
    job = answer.json()
    assert job["phase"] in ("PENDING", "EXECUTING", "COMPLETED")
    assert answer.headers["Location"] == f"/v1/jobs/{job['jobId']}"
    state = _wait(url, job["jobId"])
    assert state["phase"] == "COMPLETED" and state["errorSummary"] is None
    assert state["progress"] == {"rowsDone": 12, "rowsTotal": 12, "fraction": 1.0}
    parquet = requests.get(f"{url}/v1/jobs/{job['jobId']}/results/parquet", timeout=60)
    table = pd.read_parquet(io.BytesIO(parquet.content))
    assert table["id"].tolist() == cat["id"].tolist()
    np.testing.assert_allclose(table["mag"], cat["mag"])
    assert table["valid"].all()


def test_results_download_in_every_format_and_agree(service, tmp_path):
    import qp

    from mantis.predict import read_predictions

    url, _ = service
    _catalog().to_csv(tmp_path / "c.csv", index=False)
    with (tmp_path / "c.csv").open("rb") as fh:
        job = requests.post(f"{url}/v1/jobs", files={"file": ("c.csv", fh)}, timeout=60).json()
    state = _wait(url, job["jobId"])
    assert {r["id"] for r in state["results"]} == {"votable", "parquet", "fits", "qp", "csv"}
    files = {}
    for fmt, suffix in (("votable", "vot"), ("parquet", "parquet"), ("fits", "fits"),
                        ("qp", "hdf5"), ("csv", "csv")):  # fmt: skip
        answer = requests.get(f"{url}/v1/jobs/{job['jobId']}/results/{fmt}", timeout=60)
        assert answer.status_code == 200
        files[fmt] = tmp_path / f"r.{suffix}"
        files[fmt].write_bytes(answer.content)
    ref, ref_probs, zgrid = read_predictions(files["parquet"])
    for fmt in ("votable", "fits", "csv"):
        df, probs, grid = read_predictions(files[fmt])
        assert grid == zgrid and df["id"].tolist() == ref["id"].tolist()
        np.testing.assert_allclose(probs, ref_probs, rtol=1e-5, atol=1e-7)
    votable = Table.read(files["votable"], format="votable")
    assert str(votable["ra"].unit) == "deg" and votable["density"].shape == (12, zgrid.n_bins)
    from astropy.io.votable import parse_single_table

    ucds = {f.name: f.ucd for f in parse_single_table(str(files["votable"])).fields}
    assert ucds["ra"] == "pos.eq.ra;meta.main" and ucds["id"] == "meta.id;meta.main"
    ensemble = qp.read(str(files["qp"]))
    assert ensemble.npdf == 12
    np.testing.assert_allclose(ensemble.ancil["zmean"], ref["z_mean"], rtol=1e-6)


def test_unknown_job_and_format_and_early_download(service):
    url, _ = service
    assert requests.get(f"{url}/v1/jobs/{'0' * 32}", timeout=30).status_code == 404
    traversal = requests.get(f"{url}/v1/jobs/..%2F..%2Fetc", timeout=30)
    assert traversal.status_code == 404 and "error" in traversal.json()
    job = requests.post(f"{url}/v1/jobs", files={"file": ("p.csv", b"ra,dec\n1,2\n")},
                        timeout=60).json()  # fmt: skip
    _wait(url, job["jobId"])
    answer = requests.get(f"{url}/v1/jobs/{job['jobId']}/results/pickle", timeout=30)
    assert answer.status_code == 404 and "'pickle'" in answer.json()["error"]


@pytest.mark.parametrize(
    ("name", "content", "status", "words"),
    [
        ("bad.csv", b'id,ra,dec\na,10\n"b,20,6\n', 400, ["cannot read", "bad.csv"]),
        ("cols.csv", b"id,x,y\na,10,5\n", 400, ["ra, dec", "found: id, x, y"]),
        ("nan.csv", b"id,ra,dec\na,10,5\nb,nan,5\n", 400, ["ra is not a finite number", "row 1"]),
        ("far.csv", b"id,ra,dec\na,10,95\n", 400, ["dec outside [-90, 90]"]),
        ("empty.csv", b"id,ra,dec\n", 400, ["no rows"]),
        ("cat.exe", b"ra,dec\n1,2\n", 415, ["'.exe'", ".csv"]),
        ("notfits.fits", b"this is not fits", 400, ["notfits.fits"]),
    ],
)
def test_bad_uploads_are_refused_and_leave_nothing_behind(service, name, content, status, words):
    url, state = service
    answer = requests.post(f"{url}/v1/jobs", files={"file": (name, content)}, timeout=60)
    assert answer.status_code == status, answer.text
    message = answer.json()["error"]
    for word in words:
        assert word in message, message
    assert str(state) not in message  # the server's own paths are not shown
    assert list((state / "jobs").iterdir()) == []
    assert requests.get(f"{url}/v1", timeout=30).status_code == 200


def test_oversized_upload_and_too_many_rows(tmp_path, make_app):
    from mantis.serve.testing import serving_in_thread

    state = tmp_path / "state"
    app = make_app(state, max_upload_bytes=2000, max_job_rows=5)
    with serving_in_thread(app) as url:
        big = b"ra,dec\n" + b"10.000000,20.000000\n" * 200
        answer = requests.post(f"{url}/v1/jobs", files={"file": ("big.csv", big)}, timeout=60)
        assert answer.status_code == 413 and "2000 bytes" in answer.json()["error"]
        rows = b"ra,dec\n" + b"".join(f"{i},1\n".encode() for i in range(6))
        answer = requests.post(f"{url}/v1/jobs", files={"file": ("six.csv", rows)}, timeout=60)
        assert answer.status_code == 413 and "6 rows" in answer.json()["error"]
        assert requests.get(f"{url}/v1", timeout=30).status_code == 200
    assert list((state / "jobs").iterdir()) == []
    assert {p.name for p in state.iterdir()} == {"jobs", "scratch", "cone.sqlite"}


class _CountingSource:
    """The stand-in source, counting the rows it builds; fails once after ``fail_after`` rows."""

    def __init__(self, fail_after=None):
        from mantis.predict.testing import StandInSource

        self.inner, self.rows, self.fail_after = StandInSource(), 0, fail_after

    def arrays(self, chunk):
        from mantis.exceptions import MantisError

        if self.fail_after is not None and self.rows >= self.fail_after:
            raise MantisError("the server went away")
        self.rows += len(chunk)
        return self.inner.arrays(chunk)


def test_an_interrupted_job_resumes_where_it_stopped(tmp_path):
    """A job left EXECUTING with some parts written is finished by the next store, not redone."""
    import json

    from mantis.exceptions import MantisError
    from mantis.predict.testing import StandInPredictor
    from mantis.serve import PredictionEngine
    from mantis.serve._cone import ConeIndex
    from mantis.serve._jobs import JobStore

    cone = ConeIndex(tmp_path / "cone.sqlite")
    dying = PredictionEngine(StandInPredictor(), _CountingSource(fail_after=6), batch_size=3)
    first = JobStore(tmp_path / "jobs", dying, cone)  # its worker never starts: we run by hand
    job_id, folder = first.new_folder()
    first.submit(job_id, folder, _catalog(12), "c.csv")
    first._update(job_id, phase="EXECUTING")
    with pytest.raises(MantisError, match="went away"):
        dying.predict_file(folder / "input.parquet", folder / "predictions.parquet")
    assert first.state(job_id)["progress"]["rowsDone"] == 6

    source = _CountingSource()
    second = JobStore(tmp_path / "jobs", PredictionEngine(StandInPredictor(), source, 3), cone)
    assert second.start() == [job_id]
    deadline = time.monotonic() + 60
    while second.state(job_id)["phase"] != "COMPLETED" and time.monotonic() < deadline:
        time.sleep(0.05)
    second.close()
    assert second.state(job_id)["phase"] == "COMPLETED"
    assert source.rows == 6  # only the rows no part held
    result = pd.read_parquet(folder / "result.parquet")
    assert result["id"].tolist() == _catalog(12)["id"].tolist() and result["valid"].all()
    assert json.loads((folder / "job.json").read_text())["errorSummary"] is None
    assert cone.count() == 12
