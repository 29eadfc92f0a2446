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


class _ZeroFeatures(torch.nn.Module):
    """Five extra features per object, as the photometry head input adds (values irrelevant)."""

    n_features = 5

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.zeros(len(next(iter(inputs.values()))), self.n_features)


@pytest.mark.parametrize("fusion", ["early", "late"])
def test_a_deeper_head_keeps_its_depth_and_width_when_photometry_is_attached(fusion):
    kwargs = {"head_hidden": 48, "head_depth": 3, "n_z": N_Z}
    if fusion == "early":
        net = create_model("early_small", in_chans=18, size=EARLY_SIZE, **kwargs)
        n_image = 128
    else:
        net = create_model("late_small", in_chans=LATE_CHANS, sizes=LATE_SIZES, **kwargs)
        n_image = 64 + 128 + 64
    net.attach_photometry(_ZeroFeatures())
    linears = [m for m in net.head.net if isinstance(m, torch.nn.Linear)]
    # three hidden layers of 48, then the logits; the first reads image + photometry + E(B-V)
    assert [(m.in_features, m.out_features) for m in linears] == [
        (n_image + 5 + 1, 48),
        (48, 48),
        (48, 48),
        (48, N_Z),
    ]
    seen = []
    net.head.hidden_layer.register_forward_hook(lambda mod, inp, out: seen.append(out.shape))
    _, inputs = _build(f"{fusion}_small")
    assert net(inputs, torch.zeros(3, 1)).shape == (3, N_Z)
    assert seen == [(3, 48)]


def test_a_head_without_hidden_layers_is_refused():
    with pytest.raises(ConfigError, match="head_depth must be a positive integer, got 0"):
        create_model("early_small", in_chans=18, n_z=N_Z, head_depth=0)
