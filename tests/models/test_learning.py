"""Training learns: the network beats a predictor that knows only the training n(z).

The synthetic objects carry their redshift in their colours (`mantis.data.testing`). The
prior-only predictor gives every object the histogram of the training redshifts; a network
that learned nothing from the pixels cannot do better than it.
"""

import numpy as np

from mantis.data.testing import write_synthetic_dataset
from mantis.models import load_predictor, train_model
from mantis.stack import DatasetReader


def _crps(probs: np.ndarray, edges: np.ndarray, z_true: np.ndarray) -> np.ndarray:
    """CRPS of binned densities: the integral of (CDF - step at z_true)^2 over the bin edges."""
    cdf = np.concatenate([np.zeros((len(probs), 1)), np.cumsum(probs, axis=1)], axis=1)
    step = (edges[None, :] >= z_true[:, None]).astype(float)
    sq = (cdf - step) ** 2
    return (0.5 * (sq[:, 1:] + sq[:, :-1]) * np.diff(edges)[None, :]).sum(axis=1)


def _nmad(z_point: np.ndarray, z_true: np.ndarray) -> float:
    dz = (z_point - z_true) / (1.0 + z_true)
    return float(1.4826 * np.median(np.abs(dz - np.median(dz))))


def test_training_beats_the_training_redshift_distribution(tmp_path):
    data = write_synthetic_dataset(
        tmp_path / "learn.h5", 2000, seed=3, split_fractions=(0.7, 0.1, 0.2)
    )
    best = train_model(
        "train/smoke_early",
        data,
        tmp_path / "early",
        overrides={"trainer.max_epochs": 10, "trainer.enable_progress_bar": False},
    )
    predictor = load_predictor(best)
    probs = predictor.predict_dataset(data, split="test")
    with DatasetReader(data) as reader:
        z = np.asarray(reader.catalog(["z"])["z"], dtype=float)
        z_train, z_test = z[reader.rows("train")], z[reader.rows("test")]
    edges = predictor.zgrid.edges
    centres = 0.5 * (edges[1:] + edges[:-1])

    prior = np.histogram(z_train, bins=edges)[0].astype(float)
    prior_probs = np.broadcast_to(prior / prior.sum(), probs.shape)
    cdf = np.cumsum(probs, axis=1)
    z_median = centres[np.argmax(cdf >= 0.5, axis=1)]

    crps_net = _crps(probs, edges, z_test).mean()
    crps_prior = _crps(prior_probs, edges, z_test).mean()
    nmad_net = _nmad(z_median, z_test)
    nmad_prior = _nmad(np.full_like(z_test, np.median(z_train)), z_test)
    assert crps_net < 0.6 * crps_prior, (crps_net, crps_prior)
    assert nmad_net < 0.5 * nmad_prior, (nmad_net, nmad_prior)
