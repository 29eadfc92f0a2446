"""Network building blocks and the registered presets.

Every network maps ``(inputs, ebv)`` to logits over the redshift grid, where ``inputs`` is a
dict of ``(B, C, H, W)`` tensors (``'early'``, or one per survey) holding the stretched bands
followed by their valid masks, and ``ebv`` is ``(B, 1)``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torchvision import models as tvm

from mantis.exceptions import ConfigError
from mantis.models._registry import register_model

__all__ = [
    "DensityHead",
    "EarlyFusionNet",
    "LateFusionNet",
    "SmallEncoder",
    "early_convnext_large",
    "early_convnext_tiny",
    "early_resnet18",
    "early_small",
    "late_convnext_tiny",
    "late_resnet18",
    "late_small",
]

EBV_SCALE = 10.0  # typical E(B-V) is below 0.1; scaled so that the head sees order-unity inputs
DEFAULT_LATE_CHANS = {"galex": 4, "ps1": 10, "unwise": 4}
DEFAULT_LATE_SIZES = {"galex": 24, "ps1": 128, "unwise": 16}


def _conv_bn(c_in: int, c_out: int, *, kernel: int = 3, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=(kernel - 1) // 2, bias=False),
        nn.BatchNorm2d(c_out),
        nn.GELU(),
    )


class SmallEncoder(nn.Module):
    """A compact CPU-sized CNN: patchify stem, then stages of two 3x3 convs, then mean pool.

    Parameters
    ----------
    in_chans : int
        Input channels.
    widths : tuple of int
        Channels of each stage; every stage after the first halves the resolution.
    patch : int
        Stride of the stem (``size // 32`` keeps large cutouts as cheap as a 32 px stack).
    """

    def __init__(self, in_chans: int, widths: tuple[int, ...] = (32, 64, 128), patch: int = 1):
        super().__init__()
        layers: list[nn.Module] = [
            _conv_bn(in_chans, widths[0], kernel=max(3, patch), stride=patch)
        ]
        c_prev = widths[0]
        for i, width in enumerate(widths):
            layers += [_conv_bn(c_prev, width, stride=1 if i == 0 else 2), _conv_bn(width, width)]
            c_prev = width
        self.body = nn.Sequential(*layers)
        self.n_features = c_prev

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).mean(dim=(-2, -1))


class DensityHead(nn.Module):
    """MLP from pooled image features and E(B-V) to logits over ``n_z`` redshift bins.

    Parameters
    ----------
    n_features : int
        Features per object besides E(B-V).
    n_z : int
        Redshift bins.
    hidden : int
        Width of each hidden layer.
    depth : int
        Hidden layers (each linear + GELU).
    """

    def __init__(self, n_features: int, n_z: int, *, hidden: int = 256, depth: int = 1) -> None:
        super().__init__()
        if depth < 1:
            raise ConfigError(f"head_depth must be a positive integer, got {depth!r}")
        self.n_features, self.hidden, self.depth = n_features, hidden, depth
        layers: list[nn.Module] = []
        for i in range(depth):
            layers += [nn.Linear(n_features + 1 if i == 0 else hidden, hidden), nn.GELU()]
        self.net = nn.Sequential(*layers, nn.Linear(hidden, n_z))

    @property
    def hidden_layer(self) -> nn.Module:
        """The layer whose output is the last hidden representation (the logits' input)."""
        return self.net[-2]

    @property
    def logits_layer(self) -> nn.Linear:
        """The final linear layer."""
        return self.net[-1]

    def forward(self, features: torch.Tensor, ebv: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([features, ebv * EBV_SCALE], dim=1))


class _FusionNet(nn.Module):
    """What both fusions share: a density head, optionally also fed aperture photometry."""

    head: DensityHead

    def __init__(self) -> None:
        super().__init__()
        self.photometry: nn.Module | None = None

    def attach_photometry(self, photometry: nn.Module) -> None:
        """Feed ``photometry(inputs)`` (``n_features`` per object) to a new, wider head."""
        head = self.head
        n_image = head.n_features - (0 if self.photometry is None else self.photometry.n_features)
        self.photometry = photometry
        self.head = DensityHead(
            n_image + photometry.n_features,
            head.logits_layer.out_features,
            hidden=head.hidden,
            depth=head.depth,
        )

    def image_features(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Pooled encoder features ``(B, n)`` of the stretched inputs."""
        raise NotImplementedError

    def head_inputs(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Return what the head reads besides E(B-V): image features, then any photometry."""
        features = self.image_features(inputs)
        if self.photometry is not None:
            features = torch.cat([features, self.photometry(inputs).to(features.dtype)], dim=1)
        return features

    def forward(self, inputs: dict[str, torch.Tensor], ebv: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, n_z)`` from the stretched inputs and ``ebv``."""
        return self.head(self.head_inputs(inputs), ebv)


class EarlyFusionNet(_FusionNet):
    """One encoder over the stacked bands and masks of the common grid."""

    fusion = "early"

    def __init__(
        self, encoder: nn.Module, n_features: int, n_z: int, *, hidden: int = 256, depth: int = 1
    ):
        super().__init__()
        self.encoder = encoder
        self.head = DensityHead(n_features, n_z, hidden=hidden, depth=depth)

    def image_features(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Pooled features of ``inputs['early']``."""
        return self.encoder(inputs["early"])


class LateFusionNet(_FusionNet):
    """One encoder per survey at its native resolution; features concatenated, then a head."""

    fusion = "late"

    def __init__(
        self,
        encoders: dict[str, tuple[nn.Module, int]],
        n_z: int,
        *,
        hidden: int = 256,
        depth: int = 1,
    ) -> None:
        super().__init__()
        self.surveys = list(encoders)
        self.encoders = nn.ModuleDict({name: enc for name, (enc, _) in encoders.items()})
        n_features = sum(n for _, n in encoders.values())
        self.head = DensityHead(n_features, n_z, hidden=hidden, depth=depth)

    def image_features(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Each survey's pooled features, concatenated in survey order."""
        return torch.cat([self.encoders[name](inputs[name]) for name in self.surveys], dim=1)


def _resnet18(in_chans: int) -> tuple[nn.Module, int]:
    net = tvm.resnet18(weights=None)
    net.conv1 = nn.Conv2d(in_chans, 64, kernel_size=7, stride=2, padding=3, bias=False)
    net.fc = nn.Identity()
    return net, 512


def _convnext(arch: Callable[..., tvm.ConvNeXt], in_chans: int) -> tuple[nn.Module, int]:
    net = arch(weights=None)
    stem = net.features[0][0]
    net.features[0][0] = nn.Conv2d(in_chans, stem.out_channels, kernel_size=4, stride=4)
    n_features = net.classifier[2].in_features
    net.classifier[2] = nn.Identity()  # keep the final LayerNorm, drop the ImageNet classifier
    return net, n_features


def _check_late(in_chans: dict[str, int] | None, sizes: dict[str, int] | None):
    in_chans = dict(DEFAULT_LATE_CHANS if in_chans is None else in_chans)
    sizes = {**DEFAULT_LATE_SIZES, **(sizes or {})}
    unknown = sorted(set(in_chans) - set(DEFAULT_LATE_CHANS))
    if unknown:
        raise ConfigError(f"late-fusion surveys must be among galex, ps1, unwise; got {unknown}")
    return in_chans, sizes


@register_model
def early_small(
    in_chans: int = 18,
    n_z: int = 400,
    size: int = 32,
    widths: tuple[int, ...] = (32, 64, 128),
    head_hidden: int = 256,
    head_depth: int = 1,
) -> EarlyFusionNet:
    """CPU default: a ~0.5M-parameter CNN over the 9 bands + 9 masks of the common grid."""
    encoder = SmallEncoder(in_chans, tuple(widths), patch=max(1, size // 32))
    return EarlyFusionNet(encoder, encoder.n_features, n_z, hidden=head_hidden, depth=head_depth)


@register_model
def early_resnet18(in_chans: int = 18, n_z: int = 400, size: int = 32) -> EarlyFusionNet:
    """torchvision ResNet-18 with an ``in_chans`` stem (11M parameters)."""
    encoder, n_features = _resnet18(in_chans)
    return EarlyFusionNet(encoder, n_features, n_z, hidden=512)


@register_model
def early_convnext_tiny(in_chans: int = 18, n_z: int = 400, size: int = 32) -> EarlyFusionNet:
    """torchvision ConvNeXt-T with an ``in_chans`` patchify stem (28M parameters)."""
    encoder, n_features = _convnext(tvm.convnext_tiny, in_chans)
    return EarlyFusionNet(encoder, n_features, n_z, hidden=1024)


@register_model
def early_convnext_large(in_chans: int = 18, n_z: int = 400, size: int = 120) -> EarlyFusionNet:
    """ConvNeXt-L with the earlier system's 2048-wide head: about 200M parameters."""
    encoder, n_features = _convnext(tvm.convnext_large, in_chans)
    return EarlyFusionNet(encoder, n_features, n_z, hidden=2048)


@register_model
def late_small(
    in_chans: dict[str, int] | None = None,
    n_z: int = 400,
    sizes: dict[str, int] | None = None,
    head_hidden: int = 256,
    head_depth: int = 1,
) -> LateFusionNet:
    """CPU default: a small CNN per survey; PS1 at 4x the width of the coarse surveys."""
    in_chans, sizes = _check_late(in_chans, sizes)
    encoders = {}
    for name, chans in in_chans.items():
        widths = (32, 64, 128) if name == "ps1" else (16, 32, 64)
        enc = SmallEncoder(chans, widths, patch=max(1, sizes[name] // 32))
        encoders[name] = (enc, enc.n_features)
    return LateFusionNet(encoders, n_z, hidden=head_hidden, depth=head_depth)


@register_model
def late_resnet18(
    in_chans: dict[str, int] | None = None, n_z: int = 400, sizes: dict[str, int] | None = None
) -> LateFusionNet:
    """Late fusion with a torchvision ResNet-18 per survey (33M parameters for three surveys)."""
    in_chans, _ = _check_late(in_chans, sizes)
    return LateFusionNet({name: _resnet18(c) for name, c in in_chans.items()}, n_z, hidden=1024)


@register_model
def late_convnext_tiny(
    in_chans: dict[str, int] | None = None, n_z: int = 400, sizes: dict[str, int] | None = None
) -> LateFusionNet:
    """ConvNeXt-T on PS1, ResNet-18 on the low-resolution GALEX and unWISE cutouts.

    ConvNeXt's four stride-2 stages need at least 32 px, more than GALEX and unWISE have.
    """
    in_chans, _ = _check_late(in_chans, sizes)
    encoders = {
        name: _convnext(tvm.convnext_tiny, c) if name == "ps1" else _resnet18(c)
        for name, c in in_chans.items()
    }
    return LateFusionNet(encoders, n_z, hidden=1024)
