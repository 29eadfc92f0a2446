import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mantis.zgrid import DEFAULT_ZGRID, ZGrid


def test_default_grid_is_400_bins_over_0_to_1_6():
    assert DEFAULT_ZGRID.n_bins == 400
    assert DEFAULT_ZGRID.edges[0] == 0.0
    assert DEFAULT_ZGRID.edges[-1] == pytest.approx(1.6)
    assert DEFAULT_ZGRID.width == pytest.approx(0.004)
    assert np.allclose(np.diff(DEFAULT_ZGRID.centres), 0.004)


@given(st.floats(0.0, 1.5999, allow_nan=False))
def test_bin_index_puts_z_inside_its_bin(z):
    i = int(DEFAULT_ZGRID.bin_index(z))
    assert DEFAULT_ZGRID.edges[i] <= z < DEFAULT_ZGRID.edges[i + 1] + 1e-12


def test_bin_index_clips_and_rejects_nan():
    assert DEFAULT_ZGRID.bin_index(np.array([-1.0, 5.0])).tolist() == [0, 399]
    with pytest.raises(ValueError, match="NaN"):
        DEFAULT_ZGRID.bin_index(np.array([np.nan]))


def test_round_trip_through_dict():
    grid = ZGrid(0.0, 3.0, 150)
    assert ZGrid.from_dict(grid.to_dict()) == grid


def test_pdf_values_integrate_to_one():
    rng = np.random.default_rng(1)
    probs = DEFAULT_ZGRID.normalise(rng.random((5, 400)))
    assert np.allclose(probs.sum(axis=1), 1.0)
    assert np.allclose(DEFAULT_ZGRID.pdf_values(probs).sum(axis=1) * DEFAULT_ZGRID.width, 1.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"z_min": 1.0, "z_max": 0.5}, "z_min < z_max"), ({"n_bins": 1}, "n_bins")],
)
def test_invalid_grids_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ZGrid(**kwargs)


def test_normalise_refuses_all_zero_rows():
    with pytest.raises(ValueError, match="zero everywhere"):
        DEFAULT_ZGRID.normalise(np.zeros((1, 400)))
