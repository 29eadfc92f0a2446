"""`scripts/shift_variants.py` and `scripts/shift_ceiling.py`: the score variants the shift
benchmark compares, the rule that picks one, and the supervised ceiling."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def variants():
    return _load("shift_variants")


@pytest.fixture(scope="module")
def ceiling():
    return _load("shift_ceiling")


def _summary(variants, auroc, removed, flags):
    results = {"in-distribution test": {"n": 500, "flag_rate_variants": flags}}
    for name in variants.CHOICE_SETS:
        results[name] = {"auroc": auroc}
    mix = {"removed_top5_predicted_variants_mean": removed}
    return {"results": results, "mixed": {"test + 10% shifted, 20 seeds": mix}}


def test_the_rule_picks_the_largest_criterion_among_calibrated_candidates(variants):
    names = variants.CANDIDATES
    auroc = dict.fromkeys(names, 0.8) | {"input": 0.9, "sum": 0.95}
    removed = dict.fromkeys(names, 0.2) | {"input": 0.25}
    flags = dict.fromkeys(names, 0.01) | {"sum": 0.05}  # outside 2 sigma for 500 objects
    chosen, table = variants.choose(_summary(variants, auroc, removed, flags))
    assert chosen == "input"
    assert table["input"]["criterion"] == pytest.approx(1.15)
    assert np.isnan(table["sum"]["criterion"])
    # a tie keeps the configured score
    chosen, _ = variants.choose(
        _summary(variants, dict.fromkeys(names, 0.8), removed | {"input": 0.2}, flags)
    )
    assert chosen == variants.CONFIGURED


def test_the_ceiling_separates_disjoint_populations_and_not_identical_ones(ceiling):
    rng = np.random.default_rng(1)
    inside = rng.normal(size=(300, 4))
    assert ceiling.out_of_fold_auroc(inside, rng.normal(size=(150, 4)) + 3.0) > 0.97
    assert abs(ceiling.out_of_fold_auroc(inside, rng.normal(size=(150, 4))) - 0.5) < 0.1


def test_support_share_counts_objects_inside_the_training_range_and_its_dense_cells(ceiling):
    train = pd.DataFrame({"mag_r": np.repeat([18.1, 20.1], 10), "z": np.repeat([0.21, 0.52], 10)})
    shifted = pd.DataFrame({"mag_r": [18.2, 19.1, 16.0, 20.0], "z": [0.22, 0.31, 0.05, 0.51]})
    share = ceiling.support_share(train, shifted)
    assert share["inside_range"] == pytest.approx(3 / 4)  # 16.0 is brighter than any
    assert share["inside_dense_cells"] == pytest.approx(2 / 4)  # 19.1, 0.31 is an empty cell
