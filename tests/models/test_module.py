"""The LightningModule on its own: inputs, modality dropout, targets, configuration errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mantis.data import H5Dataset, read_spec
from mantis.exceptions import ConfigError
from mantis.models import RedshiftModule


def _module(path, fusion: str, **kwargs) -> RedshiftModule:
    net = "early_small" if fusion == "early" else "late_small"
    module = RedshiftModule(read_spec(path, fusion), net=net, **kwargs)
    for stretch in module.stretch.values():
        stretch.set_noise(torch.full_like(stretch.noise_sigma, 0.02))
    return module.eval()


def _batch(path, groups, n=6):
    samples = H5Dataset(path, np.arange(n), groups).__getitems__(list(range(n)))
    return torch.utils.data.default_collate(samples)


def test_withheld_early_survey_masks_only_its_channels_and_rows(synthetic_h5):
    module = _module(synthetic_h5, "early")
    batch = _batch(synthetic_h5, ["early"])
    rows = torch.tensor([True, False, True, False, False, False])
    valid = module.withhold(batch["valid"], "galex", rows)["early"]
    original = batch["valid"]["early"]
    assert not valid[rows][:, :2].any()  # FUV, NUV gone for the chosen objects
    assert torch.equal(valid[rows][:, 2:], original[rows][:, 2:])
    assert torch.equal(valid[~rows], original[~rows])


def test_withheld_survey_pixels_cannot_influence_the_density(synthetic_h5):
    module = _module(synthetic_h5, "late")
    batch = _batch(synthetic_h5, ["galex", "ps1", "unwise"])
    everyone = torch.ones(6, dtype=torch.bool)
    valid = module.withhold(batch["valid"], "unwise", everyone)
    assert not valid["unwise"].any() and torch.equal(valid["ps1"], batch["valid"]["ps1"])
    scrambled = dict(batch["image"])
    scrambled["unwise"] = torch.randn_like(scrambled["unwise"]) * 1e3
    with torch.no_grad():
        a = module.predict_log_probs(batch["image"], valid, batch["ebv"])
        b = module.predict_log_probs(scrambled, valid, batch["ebv"])
    torch.testing.assert_close(a, b)


def test_modality_dropout_rate_during_training(synthetic_h5, monkeypatch):
    module = _module(synthetic_h5, "late", modality_dropout={"galex": 0.5})
    module.train()
    batch = _batch(synthetic_h5, ["galex", "ps1", "unwise"], n=38)
    seen = {}

    def spy(image, valid, ebv):
        seen["valid"] = valid
        return torch.zeros(len(ebv), 400, requires_grad=True)

    monkeypatch.setattr(module, "forward", spy)
    monkeypatch.setattr(module, "log", lambda *a, **k: None)
    torch.manual_seed(0)
    dropped = []
    for _ in range(20):
        module.training_step(batch, 0)
        had = batch["valid"]["galex"].flatten(1).any(1)
        kept = seen["valid"]["galex"].flatten(1).any(1)
        dropped.append((had & ~kept).sum() / had.sum())
        assert torch.equal(seen["valid"]["ps1"], batch["valid"]["ps1"])
    assert float(torch.stack(dropped).mean()) == pytest.approx(0.5, abs=0.08)


def test_smoothed_target_is_a_normalised_gaussian_at_z(synthetic_h5):
    module = _module(synthetic_h5, "early", label_sigma=0.02)
    z = torch.tensor([0.3, 1.0])
    target = module.target(z)
    torch.testing.assert_close(target.sum(1), torch.ones(2))
    centres = module.centres
    mean = target @ centres
    width = ((target * (centres[None] - mean[:, None]) ** 2).sum(1)).sqrt()
    torch.testing.assert_close(mean, z, atol=1e-3, rtol=0)
    torch.testing.assert_close(width, 0.02 * (1 + z), atol=1e-3, rtol=0)
    hard = _module(synthetic_h5, "early").target(z)
    assert hard.tolist() == [75, 250]  # 0.3 / 0.004 and 1.0 / 0.004


def test_configuration_errors_name_the_value(synthetic_h5):
    spec = read_spec(synthetic_h5, "early")
    with pytest.raises(ConfigError, match="'late_small' takes late-fusion inputs"):
        RedshiftModule(spec, net="late_small")
    with pytest.raises(ConfigError, match="'sdss'"):
        RedshiftModule(spec, modality_dropout={"sdss": 0.1})
    with pytest.raises(ConfigError, match=r"must be in \[0, 1\), got 1.5"):
        RedshiftModule(spec, modality_dropout={"galex": 1.5})
