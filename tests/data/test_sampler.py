from __future__ import annotations

import numpy as np
import pytest
import torch

from mantis.data import balanced_sampler, redshift_balance
from mantis.zgrid import ZGrid

GRID = ZGrid(0.0, 1.6, 400)


def test_balanced_draws_flatten_the_redshift_distribution():
    rng = np.random.default_rng(0)
    z = np.concatenate([rng.uniform(0.0, 0.4, 900), rng.uniform(0.4, 0.8, 100)])
    weights, _ = redshift_balance(z, GRID, n_bins=4)
    draws = z[list(balanced_sampler(weights, seed=0))]
    low, high = np.mean(draws < 0.4), np.mean(draws >= 0.4)
    assert low == pytest.approx(0.5, abs=0.06)
    assert high == pytest.approx(0.5, abs=0.06)


def test_correction_restores_the_natural_prior():
    # a network trained on balanced draws that learned nothing outputs the balanced
    # prior; adding the correction must give back the training n(z)
    rng = np.random.default_rng(1)
    z = rng.beta(2, 5, 20000) * 1.6
    weights, correction = redshift_balance(z, GRID, n_bins=40, pseudo_count=1e-6)
    coarse = np.clip((z // 0.04).astype(int), 0, 39)
    drawn_mass = np.bincount(coarse, weights=weights, minlength=40)  # what the sampler shows
    balanced_prior = np.repeat(drawn_mass / drawn_mass.sum(), 10) / 10
    logits = np.log(np.clip(balanced_prior, 1e-300, None)) + correction
    probs = torch.softmax(torch.as_tensor(logits), 0).numpy()
    natural = np.bincount(coarse, minlength=40) / len(z)
    np.testing.assert_allclose(probs.reshape(40, 10).sum(1), natural, atol=1e-6)


def test_sampler_is_seeded():
    weights = np.linspace(1, 2, 50)
    assert list(balanced_sampler(weights, seed=3)) == list(balanced_sampler(weights, seed=3))
    assert list(balanced_sampler(weights, seed=3)) != list(balanced_sampler(weights, seed=4))


def test_balance_rejects_bad_inputs():
    with pytest.raises(ValueError, match="inside the grid"):
        redshift_balance(np.array([0.1, 1.7]), GRID)
    with pytest.raises(ValueError, match="n_bins"):
        redshift_balance(np.array([0.1]), GRID, n_bins=0)
