"""The Python client and the IVOA cone search (through pyvo) against the served app."""

from __future__ import annotations

import numpy as np
import pytest
import requests
from astropy.table import Table

from mantis.client import Service, ServiceError


def test_client_returns_a_table_with_a_qp_ensemble(service):
    url, _ = service
    table = Table({"id": ["a", "b", "c"], "ra": [10.0, 10.01, 200.0], "dec": [5.0, 5.01, 95.0]})
    with pytest.raises(ServiceError, match=r"positions.2.dec = 95"):
        Service(url).predict(table)
    table["dec"][2] = -20.0
    result = Service(url).predict(table, batch=2)  # two requests
    assert result["id"].tolist() == ["a", "b", "c"] and result["valid"].all()
    ensemble = result.meta["ensemble"]
    assert ensemble.npdf == 3
    # the ensemble is the density the JSON answer holds, per unit redshift
    direct = requests.post(f"{url}/v1/predict", timeout=60,
                           json={"positions": [{"ra": 10.0, "dec": 5.0}]}).json()  # fmt: skip
    grid = np.linspace(0, 1.6, 401)
    centres = 0.5 * (grid[1:] + grid[:-1])
    np.testing.assert_allclose(ensemble.pdf(centres)[0] * 0.004,
                               direct["objects"][0]["density"], atol=1e-7)  # fmt: skip
    np.testing.assert_allclose(ensemble.mean().ravel(), result["z_mean"], atol=2e-3)


def test_get_query_payload_sends_nothing():
    # nothing listens on this port: building the payload must not need the service
    table = Table({"ID": [7, 8], "RA": [1.5, 2.5], "DEC": [-3.0, 4.0]})
    payload = Service("http://127.0.0.1:9").predict(table, get_query_payload=True, batch=1)
    assert payload == [{"positions": [{"ra": 1.5, "dec": -3.0, "id": "7"}]},
                       {"positions": [{"ra": 2.5, "dec": 4.0, "id": "8"}]}]  # fmt: skip
    with pytest.raises(ServiceError, match="needs ra and dec"):
        Service("http://127.0.0.1:9").predict(Table({"x": [1]}), get_query_payload=True)
    with pytest.raises(ServiceError, match="not an http"):
        Service("file:///etc/passwd")


def test_pyvo_cone_search_finds_predicted_objects_nearest_first(service):
    import pyvo

    url, _ = service
    places = {"near": (150.001, 2.0), "centre": (150.0, 2.0), "edge": (150.0, 2.09),
              "far": (150.0, 2.2), "wrap": (0.01, 0.0)}  # fmt: skip
    positions = [{"id": k, "ra": ra, "dec": dec} for k, (ra, dec) in places.items()]
    requests.post(f"{url}/v1/predict", json={"positions": positions}, timeout=60).raise_for_status()
    cone = pyvo.dal.SCSService(f"{url}/v1/cone")
    found = cone.search(pos=(150.0, 2.0), radius=0.1)
    table = found.to_table()
    assert table["id"].tolist() == ["centre", "near", "edge"]
    assert str(table["ra"].unit) == "deg" and str(table["distance"].unit) == "deg"
    assert found.fieldname_with_ucd("POS_EQ_RA_MAIN") == "ra"
    assert found.fieldname_with_ucd("ID_MAIN") == "id"
    assert np.all(np.diff(table["distance"]) >= 0)
    assert found[0].pos is not None and found[0].id == "centre"
    # across ra = 0/360
    assert cone.search(pos=(359.99, 0.0), radius=0.05).to_table()["id"].tolist() == ["wrap"]
    assert len(cone.search(pos=(10.0, -50.0), radius=0.5)) == 0


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ({"RA": 10, "DEC": 5, "SR": 90}, ["SR=90", "[0, 1]"]),
        ({"RA": 10, "DEC": 5}, ["SR is missing"]),
        ({"RA": "ten", "DEC": 5, "SR": 0.1}, ["RA='ten'", "not a number"]),
        ({"RA": 10, "DEC": "nan", "SR": 0.1}, ["DEC=nan"]),
        ({"RA": 361, "DEC": 5, "SR": 0.1}, ["RA=361", "[0, 360]"]),
    ],
)
def test_bad_cone_queries_are_400_naming_the_value(service, query, words):
    url, _ = service
    answer = requests.get(f"{url}/v1/cone", params=query, timeout=30)
    assert answer.status_code == 400
    for word in words:
        assert word in answer.json()["error"]


def test_huge_radius_through_pyvo_is_a_service_error(service):
    import pyvo
    from pyvo.dal.exceptions import DALServiceError

    url, _ = service
    with pytest.raises(DALServiceError, match="400"):
        pyvo.dal.SCSService(f"{url}/v1/cone").search(pos=(10.0, 5.0), radius=45)


def test_cone_search_serves_a_catalogue_given_at_start(tmp_path):
    import pandas as pd
    import pyvo

    from mantis.predict import predict_catalog
    from mantis.predict.testing import StandInPredictor, StandInSource
    from mantis.serve import PredictionEngine, ServeSettings, create_app
    from mantis.serve.testing import serving_in_thread

    pd.DataFrame({"id": ["p", "q"], "ra": [45.0, 45.5], "dec": [-10.0, -10.0]}).to_csv(
        tmp_path / "c.csv", index=False
    )
    predict_catalog(tmp_path / "c.csv", tmp_path / "pz.parquet", predictor=StandInPredictor(),
                    source=StandInSource(), progress=False)  # fmt: skip
    engine = PredictionEngine(StandInPredictor(), StandInSource())
    app = create_app(engine, ServeSettings(state_dir=tmp_path / "s"),
                     cone_catalog=tmp_path / "pz.parquet")  # fmt: skip
    with serving_in_thread(app) as url:
        found = pyvo.dal.SCSService(f"{url}/v1/cone").search(pos=(45.0, -10.0), radius=0.1)
    assert found.to_table()["id"].tolist() == ["p"]
