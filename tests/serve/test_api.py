"""`/v1/predict`, limits and bad input, against the app served with the stand-in network."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import requests

from mantis.predict import predict_catalog, read_predictions
from mantis.predict.testing import StandInPredictor, StandInSource


def _post(url, payload, **kw):
    return requests.post(f"{url}/v1/predict", json=payload, timeout=60, **kw)


def test_predict_gives_the_grid_once_and_the_batch_pipeline_numbers(service, tmp_path):
    url, _ = service
    positions = [{"id": "a", "ra": 10.0, "dec": 5.0}, {"ra": 200.5, "dec": -41.25},
                 {"id": "c", "ra": 359.9, "dec": 89.0}]  # fmt: skip
    answer = _post(url, {"positions": positions})
    assert answer.status_code == 200
    body = answer.json()
    assert body["zgrid"]["n_bins"] == 400 and body["zgrid"]["z_max"] == pytest.approx(1.6)
    objects = body["objects"]
    assert [o["id"] for o in objects] == ["a", "J200.50000-41.25000", "c"]
    # the same rows through mantis predict's entry point give the same numbers
    pd.DataFrame(positions).assign(id=["a", "b", "c"]).to_csv(tmp_path / "cat.csv", index=False)
    predict_catalog(tmp_path / "cat.csv", tmp_path / "out.parquet", predictor=StandInPredictor(),
                    source=StandInSource(), progress=False)  # fmt: skip
    table, probs, _ = read_predictions(tmp_path / "out.parquet")
    for obj, (_, row), p in zip(objects, table.iterrows(), probs, strict=True):
        assert obj["valid"] and obj["flag"] == ""
        np.testing.assert_allclose(obj["density"], p, atol=1e-8)
        for name in ("z_mean", "z_median", "z_lo68", "z_hi95", "odds"):
            assert obj[name] == pytest.approx(row[name], rel=1e-9)
    assert sum(objects[0]["density"]) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize(
    ("payload", "status", "words"),
    [
        ({"positions": [{"ra": 400.0, "dec": 5.0}]}, 422, ["positions.0.ra", "400", "360"]),
        ({"positions": [{"ra": 1.0, "dec": -91}]}, 422, ["positions.0.dec", "-91"]),
        ({"positions": [{"ra": 1.0, "dec": 2.0, "rmag": 3}]}, 422, ["unknown field", "rmag"]),
        ({"positions": [{"ra": "x", "dec": 2.0}]}, 422, ["positions.0.ra", '"x"']),
        ({"positions": []}, 422, ["empty"]),
        ({"objects": [{"ra": 1.0, "dec": 2.0}]}, 422, ["unknown field", "objects"]),
        ({"positions": [{"ra": 1.0, "dec": 0.0}] * 1001}, 413, ["1001", "1000"]),
    ],
)
def test_bad_predict_requests_are_4xx_naming_the_value(service, payload, status, words):
    url, _ = service
    answer = _post(url, payload)
    assert answer.status_code == status
    message = answer.json()["error"]
    for word in words:
        assert word in message, message


def test_nan_coordinates_are_refused(service):
    url, _ = service
    body = b'{"positions": [{"ra": NaN, "dec": 5}]}'
    answer = requests.post(f"{url}/v1/predict", data=body, timeout=30,
                           headers={"Content-Type": "application/json"})  # fmt: skip
    assert answer.status_code == 422
    assert "positions.0.ra = NaN" in answer.json()["error"]


def test_malformed_json_and_oversized_bodies(service):
    url, _ = service
    answer = requests.post(f"{url}/v1/predict", data=b'{"positions": [', timeout=30,
                           headers={"Content-Type": "application/json"})  # fmt: skip
    assert answer.status_code == 422 and "error" in answer.json()
    huge = json.dumps({"positions": [{"ra": 1.0, "dec": 1.0, "id": "x" * 100}] * 40000})
    answer = requests.post(f"{url}/v1/predict", data=huge, timeout=30,
                           headers={"Content-Type": "application/json"})  # fmt: skip
    assert answer.status_code == 413
    assert "over the limit" in answer.json()["error"]
    assert requests.get(f"{url}/v1", timeout=30).status_code == 200  # still serving


def test_rate_limit_answers_429_with_retry_after(tmp_path, make_app):
    from mantis.serve.testing import serving_in_thread

    with serving_in_thread(make_app(tmp_path / "s", rate_per_s=0.5, burst=2)) as url:
        codes = [requests.get(f"{url}/v1", timeout=30) for _ in range(3)]
    assert [c.status_code for c in codes] == [200, 200, 429]
    assert "requests/s" in codes[2].json()["error"] and int(codes[2].headers["Retry-After"]) >= 1


def test_service_says_it_binds_loopback_and_documents_itself(service):
    url, _ = service
    info = requests.get(f"{url}/v1", timeout=30).json()
    assert info["bind"] == "127.0.0.1" and info["loopback_only"] is True
    spec = requests.get(f"{url}/openapi.json", timeout=30).json()
    assert {"/v1/predict", "/v1/jobs", "/v1/jobs/{job_id}", "/v1/cone"} <= set(spec["paths"])
    assert requests.get(f"{url}/docs", timeout=30).status_code == 200
    missing = requests.get(f"{url}/v2/nothing", timeout=30)
    assert missing.status_code == 404 and "/v2/nothing" in missing.json()["error"]


def test_concurrent_requests_are_merged_and_each_gets_its_own_rows(service):
    from concurrent.futures import ThreadPoolExecutor

    url, _ = service

    def ask(k):
        ra = np.random.default_rng(k).uniform(0, 360, 5).round(4)
        body = _post(url, {"positions": [{"id": f"r{k}-{i}", "ra": r, "dec": 10.0}
                                         for i, r in enumerate(ra)]}).json()  # fmt: skip
        return k, ra, body

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(ask, range(32)))
    for k, ra, body in answers:
        assert [o["id"] for o in body["objects"]] == [f"r{k}-{i}" for i in range(5)]
        np.testing.assert_allclose([o["ra"] for o in body["objects"]], ra)
