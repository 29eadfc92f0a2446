"""Registry-driven checks: every registered network, small inputs, nothing skipped."""

from __future__ import annotations

import pytest
import torch

from mantis.exceptions import ConfigError
from mantis.models import create_model, list_models, register_model

N_Z = 50
EARLY_SIZE = 32
LATE_SIZES = {"galex": 12, "ps1": 32, "unwise": 8}
LATE_CHANS = {"galex": 4, "ps1": 10, "unwise": 4}
FAST = [n for n in list_models() if n != "early_convnext_large"]


def _build(name: str) -> tuple[torch.nn.Module, dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    if name.startswith("early_"):
        model = create_model(name, in_chans=18, n_z=N_Z, size=EARLY_SIZE)
        inputs = {"early": torch.randn(3, 18, EARLY_SIZE, EARLY_SIZE)}
    else:
        model = create_model(name, in_chans=LATE_CHANS, n_z=N_Z, sizes=LATE_SIZES)
        inputs = {s: torch.randn(3, c, LATE_SIZES[s], LATE_SIZES[s]) for s, c in LATE_CHANS.items()}
    return model, inputs


def _check_forward_backward(name: str) -> None:
    model, inputs = _build(name)
    model.train()
    logits = model(inputs, torch.rand(3, 1) * 0.1)
    assert logits.shape == (3, N_Z)
    assert torch.isfinite(logits).all()
    probs = torch.softmax(logits.double(), dim=1)
    assert (probs >= 0).all()
    torch.testing.assert_close(probs.sum(1), torch.ones(3, dtype=torch.double))
    # a loss that depends on every logit, so every parameter upstream gets a gradient
    (logits * torch.randn_like(logits)).sum().backward()
    for pname, param in model.named_parameters():
        assert param.grad is not None, pname
        assert param.grad.abs().sum() > 0, pname


def test_registry_lists_both_fusions_and_the_large_preset():
    names = list_models()
    assert {"early_small", "late_small", "early_convnext_large"} <= set(names)
    assert list_models("late_*") == [n for n in names if n.startswith("late_")]


@pytest.mark.parametrize("name", FAST)
def test_forward_densities_and_gradients(name):
    _check_forward_backward(name)


@pytest.mark.slow
def test_convnext_large_forward_and_gradients():
    _check_forward_backward("early_convnext_large")


def test_convnext_large_matches_the_earlier_system_size():
    model = create_model("early_convnext_large", in_chans=9, n_z=400)
    n_params = sum(p.numel() for p in model.parameters())
    # ConvNeXt-L backbone with a 9-channel stem plus a 1536(+ebv) -> 2048 -> 400 head: ~200.2M
    assert 199e6 < n_params < 201.5e6


def test_duplicate_registration_raises():
    def early_small(**kwargs):
        raise AssertionError("never called")

    with pytest.raises(ValueError, match="already registered under the name 'early_small'"):
        register_model(early_small)


def test_unknown_model_names_the_registered_ones():
    with pytest.raises(ConfigError, match=r"unknown model 'early_huge'.*early_small"):
        create_model("early_huge")


def test_late_models_reject_unknown_surveys():
    with pytest.raises(ConfigError, match="sdss"):
        create_model("late_small", in_chans={"sdss": 4}, n_z=N_Z)
