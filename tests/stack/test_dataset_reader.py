"""DatasetReader: the one way to read the store, seeing only finished objects."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import mantis.data
from mantis.stack import SPLITS, DatasetError, DatasetReader, DatasetWriter

N, WRITTEN = 10, 6


@pytest.fixture
def half_built(tmp_path):
    path = tmp_path / "d.h5"
    labels = np.array([SPLITS[i % 3].encode() for i in range(N)], dtype="S5")
    attrs = {"config_hash": "c", "catalog_hash": "h", "bands": ["g", "r"],
             "surveys": ["ps1"], "grids": '{"early": {"pixel_scale": 1.0, "size": 4}}'}  # fmt: skip
    with DatasetWriter(path, n_objects=N, attrs=attrs, chunk_objects=3) as writer:
        writer.write(
            0,
            {
                "catalog/id": np.array([f"o{i}" for i in range(WRITTEN)], dtype=object),
                "catalog/split": labels[:WRITTEN],
                "catalog/z": np.arange(WRITTEN, dtype=np.float64) / 10,
                "catalog/ebv": np.zeros(WRITTEN, dtype=np.float32),
                "early/image": np.arange(WRITTEN * 2 * 16, dtype=np.float32).reshape(-1, 2, 4, 4),
                "early/valid": np.ones((WRITTEN, 2, 4, 4), dtype=bool),
            },
        )
    return path


def test_rows_and_catalogue_honour_n_written(half_built):
    with DatasetReader(half_built) as reader:
        assert reader.n_objects == N and reader.n_written == WRITTEN
        assert reader.rows().tolist() == list(range(WRITTEN))
        assert reader.rows("train").tolist() == [0, 3]  # row 6 and 9 are not finished
        assert reader.rows("test").tolist() == [2, 5]
        catalog = reader.catalog(["id", "split", "z"])
        assert catalog["id"].tolist() == [f"o{i}" for i in range(WRITTEN)]
        assert catalog["split"].tolist() == ["train", "val", "test"] * 2
        spec = reader.spec
        assert spec["channels"] == {"early": 2} and spec["grids"]["early"]["size"] == 4
        assert spec["catalog_hash"] == "h"


def test_iter_arrays_chunks_rows_in_order(half_built):
    with DatasetReader(half_built) as reader:
        rows = np.array([1, 2, 4, 5])
        chunks = list(reader.iter_arrays(["early", "catalog/z"], rows, chunk=3))
        assert [len(c["catalog/z"]) for c in chunks] == [3, 1]
        z = np.concatenate([c["catalog/z"] for c in chunks])
        np.testing.assert_allclose(z, rows / 10)
        image = np.concatenate([c["early/image"] for c in chunks])
        assert image[0, 0, 0, 0] == 1 * 32
        repeated = reader.read(["early/image"], np.array([4, 1, 4]))["early/image"]
        assert repeated[:, 0, 0, 0].tolist() == [128, 32, 128]


def test_one_error_class_names_the_problem(half_built, tmp_path):
    assert mantis.data.DatasetError is DatasetError
    with pytest.raises(DatasetError, match="does not exist; build it"):
        DatasetReader(tmp_path / "missing.h5")
    (tmp_path / "junk.h5").write_text("not hdf5")
    with pytest.raises(DatasetError, match="cannot read dataset"):
        DatasetReader(tmp_path / "junk.h5")
    with DatasetReader(half_built) as reader:
        with pytest.raises(DatasetError, match="split must be None, 'train', 'val' or 'test'"):
            reader.rows("holdout")
        with pytest.raises(DatasetError, match=r"lacks \['catalog/ra'\]"):
            reader.catalog(["ra"])


def test_reader_survives_pickling(half_built):
    reader = DatasetReader(half_built)
    reader.rows()
    clone = pickle.loads(pickle.dumps(reader))
    assert clone._file is None
    assert clone.rows("val").tolist() == [1, 4]
    reader.close()
    clone.close()
