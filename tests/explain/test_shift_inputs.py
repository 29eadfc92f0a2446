"""Input-level features of the shift score on synthetic cutouts: offsets and blur stand out."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from mantis.data.testing import synthetic_dataset
from mantis.explain import (
    ShiftReference,
    band_noise_levels,
    colour_columns,
    input_features,
    magnitude_columns,
)

R_BAND = 3  # FUV NUV g r ...


def _fit_input_reference(embeddings, features, n_train, noise, train):
    """Input-score reference: the first `n_train` rows as training, the rest as validation."""
    return ShiftReference.fit(
        embeddings[:n_train],
        embeddings[n_train:],
        features[:n_train],
        features[n_train:],
        noise=noise,
        k=10,
        method="knn",
        score="input",
        groups=["early"],
        envelope_columns=magnitude_columns(train, ["early"]),
    )


@pytest.fixture(scope="module")
def reference_and_probe():
    """A reference fitted on 600 synthetic objects; 300 more objects drawn the same way."""
    arrays, _ = synthetic_dataset(900, seed=5)
    train = {k: v[:600] for k, v in arrays.items()}
    probe = {k: v[600:] for k, v in arrays.items()}
    noise = np.stack(band_noise_levels(train, ["early"]))
    features = input_features(train, ["early"], *noise)
    rng = np.random.default_rng(0)  # embeddings play no part in the input score
    embeddings = rng.normal(size=(600, 8))
    ref = _fit_input_reference(embeddings, features, 400, noise, train)
    return ref, probe


def _pvalues(ref, arrays):
    return ref.pvalue(ref.input_score(ref.features(arrays)))


def test_features_measure_flux_and_concentration():
    arrays, _ = synthetic_dataset(40, seed=1)
    noise = np.stack(band_noise_levels(arrays, ["early"]))
    # the synthetic pixel noise is 0.02 nanomaggies in every band
    np.testing.assert_allclose(noise[0], 0.02, rtol=0.15)
    before = input_features(arrays, ["early"], *noise)
    fainter = dict(arrays)
    fainter["early/image"] = arrays["early/image"] * 0.5
    after = input_features(fainter, ["early"], *noise)
    # per band: mag, core, concentration, log_noise, valid; then 8 colours
    assert before.shape == (40, 9 * 5 + 8)
    r_mag = 5 * R_BAND
    np.testing.assert_array_equal(magnitude_columns(arrays, ["early"]), np.arange(0, 45, 5))
    np.testing.assert_array_equal(colour_columns(arrays, ["early"]), np.arange(45, 53))
    np.testing.assert_allclose(before[:, 45 + R_BAND], before[:, r_mag] - before[:, r_mag + 5])
    assert np.all(after[:, r_mag] < before[:, r_mag])
    np.testing.assert_allclose(before[:, 5 * 2 + 4], 1.0)  # g fully covered
    blurred = dict(arrays)
    blurred["early/image"] = gaussian_filter(arrays["early/image"], (0, 0, 1.5, 1.5))
    wide = input_features(blurred, ["early"], *noise)
    assert np.all(wide[:, r_mag + 1] < before[:, r_mag + 1])  # core
    assert np.all(wide[:, r_mag + 2] < before[:, r_mag + 2])  # concentration


def test_input_score_is_calibrated_on_objects_like_the_training_set(reference_and_probe):
    ref, probe = reference_and_probe
    p = _pvalues(ref, probe)
    # 200 validation objects: p-values of exchangeable objects are uniform on {1/201, ..., 1}
    for alpha in (0.05, 0.2, 0.5):
        sigma = np.sqrt(alpha * (1 - alpha) / len(p))
        assert abs(np.mean(p < alpha) - alpha) < 4 * sigma + 0.01


def test_input_score_finds_a_calibration_offset_and_a_wider_psf(reference_and_probe):
    ref, probe = reference_and_probe
    offset = dict(probe)
    offset["early/image"] = probe["early/image"].copy()
    offset["early/image"][:, R_BAND] *= 10 ** (-0.4 * 0.5)  # r 0.5 mag too faint
    blurred = dict(probe)
    blurred["early/image"] = gaussian_filter(probe["early/image"], (0, 0, 1.5, 1.5))
    in_distribution = ref.input_score(ref.features(probe))
    for shifted in (offset, blurred):
        scores = ref.input_score(ref.features(shifted))
        assert np.median(scores) > np.percentile(in_distribution, 95)
        assert np.mean(_pvalues(ref, shifted) < 0.05) > 0.5


def test_a_withheld_survey_is_no_shift_when_the_reference_holds_withheld_objects():
    # training withholds unWISE from a share of objects; the reference holds such objects too
    from mantis.explain._occlusion import withhold_bands

    arrays, _ = synthetic_dataset(900, seed=5)
    spec = {"fusion": "early", "bands": ["FUV", "NUV", "g", "r", "i", "z", "y", "W1", "W2"]}

    def no_unwise(part):
        return withhold_bands(part, spec, ["W1", "W2"])

    train = {k: v[:600] for k, v in arrays.items()}
    probe = no_unwise({k: v[600:] for k, v in arrays.items()})
    noise = np.stack(band_noise_levels(train, ["early"]))
    features = input_features(train, ["early"], *noise)
    withheld = input_features(no_unwise({k: v[:80] for k, v in train.items()}), ["early"], *noise)
    embeddings = np.random.default_rng(0).normal(size=(680 + 200, 8))
    fits = {}
    for name, extra in (("intact", withheld[:0]), ("with withheld", withheld)):
        n_train = 400 + len(extra)
        fits[name] = _fit_input_reference(
            np.concatenate([embeddings[:n_train], embeddings[680:]]),
            np.concatenate([features[:400], extra, features[400:]]),
            n_train,
            noise,
            train,
        )
    assert np.mean(_pvalues(fits["intact"], probe) < 0.05) > 0.9
    assert np.mean(_pvalues(fits["with withheld"], probe) < 0.05) < 0.15
