import numpy as np
import pandas as pd
import pytest


def make_catalog(path, n=300, *, seed=0, bad_rows=True):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "id": [f"gal{i:05d}" for i in range(n)],
            "ra": rng.uniform(0, 360, n),
            "dec": rng.uniform(-60, 60, n),
            "r_mag": rng.uniform(17, 22, n).round(3),
            "field": rng.choice(["north", "south"], n),
        }
    )
    if bad_rows:
        df.loc[3, "ra"] = 400.0  # out of range
        df.loc[11, "dec"] = np.nan  # missing
    df.to_csv(path, index=False)
    return path


@pytest.fixture
def catalog(tmp_path):
    return make_catalog(tmp_path / "cat.csv")
