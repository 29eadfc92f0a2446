"""Linear CKA with the debiased HSIC: the properties Nguyen et al. (2021) rely on."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.stats import ortho_group

from mantis.explain import hsic_unbiased, linear_cka, linear_cka_matrix


def _features(n=60, p=12, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, p)) @ rng.normal(size=(p, p))


def test_cka_of_a_representation_with_itself_is_one():
    x = _features()
    assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)


def test_cka_is_invariant_to_orthogonal_rotation_and_isotropic_scaling():
    x = _features(seed=1)
    y = np.tanh(x[:, :7]) + 0.3 * _features(p=7, seed=2)
    rotation = ortho_group.rvs(x.shape[1], random_state=3)
    base = linear_cka(x, y)
    assert 0.2 < base < 0.99  # a non-trivial value, so the invariance means something
    assert linear_cka(x @ rotation, y) == pytest.approx(base, rel=1e-10)
    assert linear_cka(7.5 * x, 0.01 * y) == pytest.approx(base, rel=1e-10)


def test_cka_is_not_invariant_to_an_arbitrary_linear_map():
    x = _features(seed=4)
    y = x[:, :5] + 0.5 * _features(p=5, seed=5)
    stretch = np.diag(np.geomspace(1.0, 100.0, x.shape[1]))
    assert abs(linear_cka(x @ stretch, y) - linear_cka(x, y)) > 0.05


def test_independent_random_features_give_cka_near_zero():
    rng = np.random.default_rng(6)
    values = [linear_cka(rng.normal(size=(400, 50)), rng.normal(size=(400, 30))) for _ in range(5)]
    # the biased estimator gives about sqrt(50 * 30) / 400 ~ 0.1 here; the debiased one ~ 0
    assert abs(np.mean(values)) < 0.01
    assert max(abs(v) for v in values) < 0.03


def _hsic_u_statistic(k, m):
    """Song et al. (2012) HSIC as the U-statistic over ordered quadruples of distinct examples."""
    n = len(k)
    total = 0.0
    for i, j, q, r in itertools.permutations(range(n), 4):
        total += k[i, j] * m[i, j] + k[i, j] * m[q, r] - 2.0 * k[i, j] * m[i, q]
    return total / (n * (n - 1) * (n - 2) * (n - 3))


def test_unbiased_hsic_matches_the_u_statistic_over_quadruples():
    rng = np.random.default_rng(7)
    x, y = rng.normal(size=(7, 3)), rng.normal(size=(7, 4))
    k, m = x @ x.T, y @ y.T
    assert hsic_unbiased(k, m) == pytest.approx(_hsic_u_statistic(k, m), rel=1e-10)


def _cka_direct(x, y):
    """The debiased CKA written out with explicit n x n matrices and ones vectors."""
    n = len(x)

    def hsic(a, b):
        ka, kb = a @ a.T, b @ b.T
        np.fill_diagonal(ka, 0.0)
        np.fill_diagonal(kb, 0.0)
        one = np.ones(n)
        value = np.trace(ka @ kb) + (one @ ka @ one) * (one @ kb @ one) / ((n - 1) * (n - 2))
        return (value - 2.0 / (n - 2) * (one @ ka @ kb @ one)) / (n * (n - 3))

    return hsic(x, y) / np.sqrt(hsic(x, x) * hsic(y, y))


def test_cka_agrees_with_a_direct_implementation_and_the_matrix_form():
    x, y, z = _features(seed=8), _features(p=9, seed=9), _features(p=4, seed=10)
    y = y + x[:, :9]
    assert linear_cka(x, y) == pytest.approx(_cka_direct(x, y), rel=1e-9)
    matrix = linear_cka_matrix([x, y, z])
    assert matrix.shape == (3, 3)
    np.testing.assert_allclose(np.diag(matrix), 1.0, atol=1e-12)
    np.testing.assert_allclose(matrix, matrix.T, atol=1e-12)
    assert matrix[0, 2] == pytest.approx(_cka_direct(x, z), rel=1e-9)
    cross = linear_cka_matrix([x], [y, z])
    assert cross[0, 0] == pytest.approx(matrix[0, 1], rel=1e-12)


def test_cka_of_a_constant_representation_is_nan_and_tiny_sets_are_refused():
    x = _features()
    assert np.isnan(linear_cka(x, np.ones((len(x), 3))))
    with pytest.raises(ValueError, match="at least 4"):
        linear_cka(x[:3], x[:3])
