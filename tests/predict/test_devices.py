import pandas as pd

from mantis.predict import predict_catalog, read_predictions
from mantis.predict.testing import StandInPredictor, StandInSource


def test_two_processes_equal_one_process_row_for_row(catalog, tmp_path):
    kwargs = {"predictor": StandInPredictor(), "source": StandInSource(), "batch_size": 40}
    one = predict_catalog(catalog, tmp_path / "one.parquet", progress=False, **kwargs)
    two = predict_catalog(catalog, tmp_path / "two.parquet", devices=2, progress=False, **kwargs)
    assert (one.n_predicted, two.n_predicted) == (300, 300)
    assert two.n_invalid == one.n_invalid == 2
    a, pa_, _ = read_predictions(tmp_path / "one.parquet")
    b, pb, _ = read_predictions(tmp_path / "two.parquet")
    pd.testing.assert_frame_equal(a, b)
    assert (pa_[a["valid"]] == pb[b["valid"]]).all()
    # the shards were merged in catalogue order into one file; no parts are left behind
    assert not (tmp_path / "two.parquet.parts").exists()
    assert (tmp_path / "one.parquet").read_bytes() == (tmp_path / "two.parquet").read_bytes()
