"""Linear centred kernel alignment (CKA) with the debiased HSIC estimator.

Nguyen, Raghu & Kornblith (2021) replace the biased HSIC of Kornblith et al. (2019) by the
unbiased estimator of Song et al. (2012), which removes the pull of CKA towards 1 that the
biased form shows when the number of features is large against the number of examples.
"""

from __future__ import annotations

import numpy as np

__all__ = ["hsic_unbiased", "linear_cka", "linear_cka_matrix"]


def _gram(features: np.ndarray) -> np.ndarray:
    x = np.asarray(features, dtype=np.float64).reshape(len(features), -1)
    return x @ x.T


def hsic_unbiased(gram_x: np.ndarray, gram_y: np.ndarray) -> float:
    """Unbiased HSIC estimate of two ``(n, n)`` Gram matrices (Song et al. 2012).

    Parameters
    ----------
    gram_x, gram_y : ndarray, shape (n, n)
        Kernel matrices of the same ``n > 3`` examples.

    Returns
    -------
    float
        ``[tr(K̃L̃) + 1ᵀK̃1·1ᵀL̃1/((n-1)(n-2)) - 2/(n-2)·1ᵀK̃L̃1] / (n(n-3))`` with zeroed
        diagonals K̃, L̃.
    """
    n = gram_x.shape[0]
    if n < 4:
        raise ValueError(f"the unbiased HSIC needs at least 4 examples, got {n}")
    k = np.array(gram_x, dtype=np.float64)
    m = np.array(gram_y, dtype=np.float64)
    np.fill_diagonal(k, 0.0)
    np.fill_diagonal(m, 0.0)
    k_rows, m_rows = k.sum(axis=1), m.sum(axis=1)
    trace = float(np.sum(k * m))  # tr(K̃L̃) for symmetric matrices
    total = trace + k_rows.sum() * m_rows.sum() / ((n - 1) * (n - 2))
    total -= 2.0 / (n - 2) * float(k_rows @ m_rows)
    return total / (n * (n - 3))


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Debiased linear CKA of two representations of the same examples.

    Parameters
    ----------
    x : ndarray, shape (n, ...)
        Features of ``n`` examples (trailing axes are flattened).
    y : ndarray, shape (n, ...)
        Other features of the same examples.

    Returns
    -------
    float
        ``HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))`` with linear kernels; 1 for identical
        representations, near 0 for independent ones. NaN if either is constant.
    """
    if len(x) != len(y):
        raise ValueError(f"x and y must describe the same examples; got {len(x)} and {len(y)}")
    gram_x, gram_y = _gram(x), _gram(y)
    denominator = hsic_unbiased(gram_x, gram_x) * hsic_unbiased(gram_y, gram_y)
    if not denominator > 0:
        return float("nan")
    return hsic_unbiased(gram_x, gram_y) / float(np.sqrt(denominator))


def linear_cka_matrix(
    features_a: list[np.ndarray], features_b: list[np.ndarray] | None = None
) -> np.ndarray:
    """CKA between every representation of ``features_a`` and every one of ``features_b``.

    Parameters
    ----------
    features_a : list of ndarray
        Representations (e.g. one per layer) of the same ``n`` examples.
    features_b : list of ndarray, optional
        A second list over the same examples; default ``features_a``.

    Returns
    -------
    ndarray, shape (len(features_a), len(features_b))
    """
    grams_a = [_gram(f) for f in features_a]
    grams_b = grams_a if features_b is None else [_gram(f) for f in features_b]
    self_a = [hsic_unbiased(g, g) for g in grams_a]
    self_b = self_a if features_b is None else [hsic_unbiased(g, g) for g in grams_b]
    out = np.full((len(grams_a), len(grams_b)), np.nan)
    for i, ga in enumerate(grams_a):
        for j, gb in enumerate(grams_b):
            denominator = self_a[i] * self_b[j]
            if denominator > 0:
                out[i, j] = hsic_unbiased(ga, gb) / np.sqrt(denominator)
    return out
