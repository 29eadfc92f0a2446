"""Integrated gradients (captum) of the density's mean, or of the probability in one bin.

Attributions are taken with respect to the network's inputs after the stretch, from the
baseline "the same coverage, no light": the data channels zero and the valid-mask channels as
observed. By completeness an object's attributions add up to the change of the output between
that dark cutout and the object. The masks stay fixed along the path because the networks read
them as switches (the photometry head counts a band as measured once enough of its aperture is
valid): a path that turned them on would cross steps no gradient sees, and the attributions
would no longer add up. What coverage itself contributes is what occlusion measures. Per band,
the data and mask channels are summed (the mask channels' share is zero).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from mantis.explain._embed import to_tensors
from mantis.explain._occlusion import channel_bands

__all__ = ["DensityOutput", "attribute", "band_attributions", "dark_baseline", "network_inputs"]


class DensityOutput(nn.Module):
    """Wrap a trained module as ``inputs -> scalar`` per object, for captum.

    Parameters
    ----------
    module : RedshiftModule
        The trained module.
    target : {'mean', 'bin'}
        ``'mean'``: E[z] of the density; ``'bin'``: the probability of the bin given per
        object as ``target_bins``.
    """

    def __init__(self, module: Any, target: str = "mean") -> None:
        super().__init__()
        if target not in ("mean", "bin"):
            raise ValueError(f"target must be 'mean' or 'bin', got {target!r}")
        self.module = module
        self.target = target
        self.groups = list(module.groups)

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        """Scalar per object from ``(*inputs, ebv[, target_bins])``, one input per group.

        captum repeats extra forward arguments along its integration steps only when they are
        passed positionally, hence the flat signature.
        """
        n = len(self.groups)
        inputs, ebv = args[:n], args[n]
        logits = self.module.net(dict(zip(self.groups, inputs, strict=True)), ebv)
        log_probs = torch.log_softmax(logits + self.module.log_prior_correction, dim=1)
        if self.target == "mean":
            return log_probs.exp() @ self.module.centres
        return log_probs.exp().gather(1, args[n + 1].view(-1, 1)).squeeze(1)


def network_inputs(
    module: Any, arrays: dict[str, np.ndarray], rows: slice
) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
    """Stretched inputs (one ``(B, 2C, H, W)`` tensor per group) and E(B-V) of ``rows``."""
    image, valid, ebv = to_tensors(arrays, module.groups, rows)
    with torch.no_grad():
        inputs = tuple(module.stretch[g](image[g], valid[g]) for g in module.groups)
    return inputs, ebv


def attribute(
    module: Any,
    arrays: dict[str, np.ndarray],
    *,
    target: str = "mean",
    target_bins: np.ndarray | None = None,
    n_steps: int = 64,
    batch_size: int = 16,
) -> dict[str, Any]:
    """Integrated-gradient attributions of every object of ``arrays``.

    Parameters
    ----------
    module : RedshiftModule
        The trained module (evaluation mode).
    arrays : dict
        Build arrays of the objects.
    target : {'mean', 'bin'}
        Attribute E[z], or the probability of ``target_bins`` (e.g. the true redshift's bin).
    n_steps : int
        Integration steps (Gauss-Legendre).
    batch_size : int
        Objects per captum call.

    Returns
    -------
    dict
        ``maps``: per group ``(n, 2C, H, W)`` float32 attributions; ``output`` and
        ``baseline_output``: f(x) and f(baseline) per object; ``delta``: captum's convergence
        delta (sum of attributions minus the output difference).
    """
    from captum.attr import IntegratedGradients

    module.eval()
    wrapped = DensityOutput(module, target)
    ig = IntegratedGradients(wrapped)
    n = len(arrays["catalog/ebv"])
    maps: dict[str, list[np.ndarray]] = {g: [] for g in module.groups}
    outputs, base_outputs, deltas = [], [], []
    for start in range(0, n, batch_size):
        rows = slice(start, min(n, start + batch_size))
        inputs, ebv = network_inputs(module, arrays, rows)
        extra: tuple[torch.Tensor, ...] = (ebv,)
        if target == "bin":
            extra += (torch.as_tensor(np.asarray(target_bins)[rows], dtype=torch.long),)
        baselines = tuple(dark_baseline(t) for t in inputs)
        attributions, delta = ig.attribute(
            inputs,
            baselines=baselines,
            additional_forward_args=extra,
            n_steps=n_steps,
            return_convergence_delta=True,
        )
        with torch.no_grad():
            outputs.append(wrapped(*inputs, *extra).numpy())
            base_outputs.append(wrapped(*baselines, *extra).numpy())
        for g, a in zip(module.groups, attributions, strict=True):
            maps[g].append(a.detach().numpy().astype(np.float32))
        deltas.append(delta.detach().numpy())
    return {
        "maps": {g: np.concatenate(v) for g, v in maps.items()},
        "output": np.concatenate(outputs).astype(np.float64),
        "baseline_output": np.concatenate(base_outputs).astype(np.float64),
        "delta": np.concatenate(deltas).astype(np.float64),
    }


def dark_baseline(stretched: torch.Tensor) -> torch.Tensor:
    """``stretched`` ``(B, 2C, H, W)`` with its C data channels zero and its C masks kept."""
    baseline = stretched.detach().clone()
    baseline[:, : stretched.shape[1] // 2] = 0.0
    return baseline


def band_attributions(maps: dict[str, np.ndarray], spec: dict[str, Any]) -> dict[str, np.ndarray]:
    """Per-object attribution of each band: its data and mask channels summed over pixels."""
    out = {}
    for group, names in channel_bands(spec).items():
        totals = maps[group].reshape(*maps[group].shape[:2], -1).sum(axis=2)
        n_bands = len(names)
        for i, name in enumerate(names):
            out[name] = totals[:, i] + totals[:, n_bands + i]
    return out
