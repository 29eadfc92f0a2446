"""`mantis explain`: occlusion, integrated gradients and the report on a trained model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mantis.explain import explain_run
from mantis.explain._attribution import attribute, band_attributions
from mantis.explain._occlusion import withhold_bands
from mantis.explain._shift_run import read_rows


@pytest.fixture(scope="module")
def loaded(explain_model):
    from mantis.models import load_predictor

    dataset, checkpoint = explain_model
    predictor = load_predictor(checkpoint)
    arrays = read_rows(dataset, ["early"], np.arange(12))
    return predictor, arrays


@pytest.fixture(scope="module", params=[False, True], ids=["images", "photometry"])
def random_module(explain_model, request):
    """An untrained network: its output moves with the input far more than a 3-epoch one's.

    Also with the aperture-photometry head, whose "band measured" switches read the masks.
    """
    import torch

    from mantis.data import read_spec
    from mantis.models import RedshiftModule

    dataset, _ = explain_model
    torch.manual_seed(0)
    module = RedshiftModule(read_spec(dataset), net="early_small", photometry=request.param).eval()
    for stretch in module.stretch.values():
        stretch.set_noise(torch.full_like(stretch.noise_sigma, 0.05))
    if module.net.photometry is not None:  # training sets it from the data
        module.net.photometry.set_noise({g: s.noise_sigma for g, s in module.stretch.items()})
    with torch.no_grad():  # sharp densities, as a trained network's, instead of near-uniform
        module.net.head.net[2].weight.mul_(40.0)
    # BatchNorm statistics of real inputs, so that activations keep their scale through depth
    for layer in module.modules():
        if isinstance(layer, torch.nn.BatchNorm2d):
            layer.reset_running_stats()
            layer.momentum = None
    arrays = read_rows(dataset, ["early"], np.arange(64))
    module.train()
    with torch.no_grad():
        module(
            {"early": torch.as_tensor(arrays["early/image"])},
            {"early": torch.as_tensor(arrays["early/valid"])},
            torch.as_tensor(arrays["catalog/ebv"]).float().view(-1, 1),
        )
    return module.eval()


@pytest.mark.parametrize("target", ["mean", "bin"])
def test_integrated_gradients_are_complete(random_module, loaded, target):
    import torch

    _, arrays = loaded
    image = {"early": torch.as_tensor(arrays["early/image"])}
    valid = {"early": torch.as_tensor(arrays["early/valid"])}
    ebv = torch.as_tensor(arrays["catalog/ebv"]).float().view(-1, 1)
    with torch.no_grad():
        probs = random_module.predict_log_probs(image, valid, ebv).exp().numpy()
    bins = np.argmax(probs, axis=1)  # the mode's bin: a probability that moves with the input
    result = attribute(random_module, arrays, target=target, target_bins=bins, n_steps=64)
    change = result["output"] - result["baseline_output"]
    total = sum(m.reshape(len(m), -1).sum(axis=1) for m in result["maps"].values())
    scale = 3e-3
    moved = np.abs(change) > scale
    assert moved.sum() >= 8  # the check below is not vacuous
    error = np.abs(total - change)
    np.testing.assert_array_less(error[moved], 0.01 * np.abs(change[moved]))
    np.testing.assert_array_less(error[~moved], 0.01 * scale)
    # the per-band sums keep the total (data + mask channel of every band)
    per_band = band_attributions(result["maps"], random_module.spec)
    np.testing.assert_allclose(sum(per_band.values()), total, rtol=1e-5, atol=1e-7)
    # f(x) is the network's own E[z] (or bin probability) of the intact input
    expected = (
        probs @ random_module.zgrid.centres if target == "mean" else probs[np.arange(12), bins]
    )
    np.testing.assert_allclose(result["output"], expected, rtol=2e-4, atol=1e-6)


def test_withholding_a_band_zeroes_its_pixels_and_mask_only(loaded):
    predictor, arrays = loaded
    out = withhold_bands(arrays, predictor.spec, ["r", "W1"])
    bands = list(predictor.spec["bands"])
    for kind in ("image", "valid"):
        for i, name in enumerate(bands):
            taken = out[f"early/{kind}"][:, i]
            if name in ("r", "W1"):
                assert not np.any(taken)
            else:
                np.testing.assert_array_equal(taken, arrays[f"early/{kind}"][:, i])
    assert np.any(arrays["early/valid"][:, bands.index("r")])  # the input itself is untouched


def test_explain_writes_a_report_with_the_numbers_behind_it(explain_model, tmp_path):
    dataset, checkpoint = explain_model
    out = tmp_path / "explain"
    result = explain_run(
        checkpoint,
        dataset,
        out,
        split="val",
        attribution_objects=8,
        n_steps=8,
        shifted={"same": dataset},
    )
    saved = json.loads((out / "explain.json").read_text())
    assert saved["n_objects"] == result["n_objects"] == 24
    withheld = saved["occlusion"]["withheld"]
    assert set(withheld) >= {"FUV", "r", "W2", "galex", "ps1", "unwise"}
    assert withheld["ps1"]["bands"] == ["g", "r", "i", "z", "y"]
    for entry in withheld.values():
        assert entry["all"]["d_crps"] == pytest.approx(
            entry["all"]["crps"] - saved["occlusion"]["baseline"]["all"]["crps"]
        )
    shares = saved["attributions"]["shares"]
    assert sum(shares.values()) == pytest.approx(1.0)
    within = np.array(saved["cka"]["within"])
    np.testing.assert_allclose(np.diag(within), 1.0, atol=1e-9)
    # a "shifted" set that is the dataset itself has the in-distribution profile's shape
    profiles = saved["cka"]["shift_profiles"]
    assert len(profiles["same"]) == len(profiles["in-distribution"]) == len(within) - 1
    text = (out / "explain.md").read_text()
    assert "surveys used" in text and "Completeness" in text
    for name in (
        "occlusion_heatmap.png",
        "attribution_share.png",
        "attribution_examples.png",
        "cka_layers.png",
        "cka_shift_profiles.png",
    ):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<img src='cka_layers.png'" in (out / "explain.html").read_text()


def test_cli_names_a_missing_dataset(explain_model, tmp_path, capsys):
    from mantis.cli import main

    _, checkpoint = explain_model
    code = main(
        [
            "explain",
            str(checkpoint),
            "--dataset",
            str(tmp_path / "no.h5"),
            "--out",
            str(tmp_path / "x"),
        ]
    )
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no.h5" in err[0]
    assert not (tmp_path / "x").exists()


def test_late_fusion_is_explained_per_survey_encoder_and_compared_with_early(
    explain_model, tmp_path
):
    from mantis.models import train_model

    dataset, early = explain_model
    late = train_model(
        "configs/train/smoke_late.yaml",
        dataset,
        tmp_path / "late",
        overrides={"trainer.max_epochs": 1, "trainer.enable_progress_bar": False},
    )
    result = explain_run(late, dataset, tmp_path / "explain", split="val", compare=early,
                         attribution_objects=8, n_steps=8)  # fmt: skip
    layers = result["cka"]["layers"]
    assert {name.split(".")[0] for name in layers} == {"galex", "ps1", "unwise", "head"}
    assert set(result["attributions"]["shares"]) == {
        "FUV", "NUV", "g", "r", "i", "z", "y", "W1", "W2"}  # fmt: skip
    cross = np.array(result["cka"]["compare"]["cka"])
    assert cross.shape == (len(layers), len(result["cka"]["compare"]["layers"]))
    assert np.all(np.abs(cross[np.isfinite(cross)]) <= 1.0 + 1e-9)
