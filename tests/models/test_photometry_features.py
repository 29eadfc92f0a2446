"""The aperture photometry the density head reads: the baselines' fluxes, in magnitudes."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from mantis.data import ArcsinhStretch, read_spec
from mantis.data.testing import synthetic_dataset, write_synthetic_dataset
from mantis.evaluate._photometry import aperture_photometry
from mantis.explain import embed_arrays
from mantis.explain._attribution import attribute
from mantis.models import load_predictor, train_model
from mantis.models._photometry import AperturePhotometry, photometry_groups
from mantis.surveys import band


def _features(spec: dict, arrays: dict, noise: dict) -> tuple[AperturePhotometry, dict]:
    """Photometry module fitted to ``noise`` and the stretched inputs of ``arrays``."""
    groups = photometry_groups(spec)
    photometry = AperturePhotometry(groups)
    photometry.set_noise(noise)
    inputs = {}
    for g in groups:
        stretch = ArcsinhStretch(len(groups[g]["bands"]))
        stretch.set_noise(noise[g])
        inputs[g] = stretch(
            torch.as_tensor(arrays[f"{g}/image"]), torch.as_tensor(arrays[f"{g}/valid"])
        )
    return photometry, inputs


@pytest.mark.parametrize("fusion", ["early", "late"])
def test_head_photometry_equals_the_baselines_photometry(tmp_path, fusion):
    sizes = {"early": 32, "galex": 24, "unwise": 16}
    path = write_synthetic_dataset(tmp_path / "sky.h5", 48, seed=3, sizes=sizes)
    arrays = synthetic_dataset(48, seed=3, sizes=sizes)[0]
    spec = read_spec(path, fusion)
    groups = photometry_groups(spec)
    noise = {g: [0.02] * len(groups[g]["bands"]) for g in groups}
    photometry, inputs = _features(spec, arrays, noise)
    flux, measured = photometry.fluxes(inputs)
    expected = np.concatenate(
        [
            aperture_photometry(
                arrays[f"{g}/image"], arrays[f"{g}/valid"], groups[g]["pixel_scale"],
                groups[g]["bands"],
            )[0]
            for g in groups
        ],
        axis=1,
    )  # fmt: skip
    assert photometry.bands == [b for g in groups for b in groups[g]["bands"]]
    # objects without GALEX coverage have the band missing in both
    assert np.array_equal(measured.numpy(), np.isfinite(expected))
    assert (~measured.numpy()).any() and measured.numpy().any()
    ok = measured.numpy()
    np.testing.assert_allclose(flux.numpy()[ok], expected[ok], rtol=1e-4, atol=1e-4)
    features = photometry(inputs)
    n = len(photometry.bands)
    assert features.shape == (48, photometry.n_features) == (48, 3 * n - 1)
    assert torch.equal(features[:, -n:], (~measured).float())


def test_magnitudes_of_a_point_source_are_its_ab_magnitudes():
    from scipy.special import erf

    size, scale, mag = 32, 1.0, 20.0
    spec = {"fusion": "early", "bands": ["g", "W1"], "surveys": ["ps1", "unwise"],
            "grids": {"early": {"pixel_scale": scale, "size": size}}}  # fmt: skip
    total = 10 ** ((22.5 - mag) / 2.5)  # nanomaggies
    image = np.zeros((1, 2, size, size), np.float32)
    for j, name in enumerate(spec["bands"]):
        sigma = band(name).psf_fwhm / 2.3548 / scale
        edges = np.arange(size + 1) - size / 2.0
        per_pixel = 0.5 * np.diff(erf(edges / (np.sqrt(2) * sigma)))
        image[0, j] = total * np.outer(per_pixel, per_pixel)
    arrays = {"early/image": image, "early/valid": np.ones(image.shape, bool)}
    photometry, inputs = _features(spec, arrays, {"early": [0.01, 0.01]})
    mags, measured = photometry.magnitudes(inputs)
    assert measured.all()
    # the aperture correction restores the total flux; W1's PSF overflows the 32" cutout a bit
    np.testing.assert_allclose(mags.numpy()[0], [mag, mag], atol=0.03)
    blank = inputs["early"] * torch.tensor([0.0, 0.0, 1.0, 1.0]).view(1, 4, 1, 1)
    faint, measured = photometry.magnitudes({"early": blank})
    # zero flux reads as the finite asinh magnitude of the aperture noise, not infinity
    assert measured.all() and torch.isfinite(faint).all() and (faint > mag + 3).all()


def test_photometry_model_trains_saves_and_predicts_identically(tmp_path, synthetic_h5):
    run_dir = tmp_path / "early"
    best = train_model(
        "train/smoke_early",
        synthetic_h5,
        run_dir,
        overrides={"trainer.max_epochs": 1, "trainer.enable_progress_bar": False,
                   "model.photometry": True},
    )  # fmt: skip
    state = torch.load(best, weights_only=True)["state_dict"]
    # the head's photometry un-stretches with the very noise scales the stretch fitted
    assert torch.equal(state["net.photometry.noise_sigma"], state["stretch.early.noise_sigma"])
    predictor = load_predictor(best)
    module = predictor.module
    assert module.net.photometry is not None
    with h5py.File(synthetic_h5) as f:
        arrays = {k: f[k][:8] for k in ("early/image", "early/valid", "catalog/ebv")}
    probs = predictor.predict_arrays(arrays)
    assert np.array_equal(probs, load_predictor(best).predict_arrays(arrays))
    # the head reads image features, E(B-V) and the photometry; embeddings and attributions
    # (which call the network on stretched inputs) get the photometry from those inputs
    assert module.net.head.net[0].in_features == 64 + 1 + module.net.photometry.n_features
    assert embed_arrays(module, arrays).shape == (8, 256)
    maps = attribute(module, arrays, n_steps=4, batch_size=8)["maps"]["early"]
    assert maps.shape == (8, 18, 16, 16) and np.isfinite(maps).all()
