"""Hidden representations of a trained network: the penultimate layer and every named layer."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # torch is imported on use: `mantis predict` without a network never needs it
    import torch
    from torch import nn

__all__ = ["EMBED_BATCH", "collect_layers", "embed_arrays", "penultimate_layer", "to_tensors"]

# Fixed micro-batch (the last one padded), as in prediction: BatchNorm runs in eval mode, so a
# row's features do not depend on its neighbours, and a fixed shape keeps CPU kernels fixed.
EMBED_BATCH = 32


def penultimate_layer(module: Any) -> nn.Module:
    """Return the layer whose output is the input of the last linear layer of the density head."""
    return module.net.head.hidden_layer


def to_tensors(
    arrays: dict[str, np.ndarray], groups: list[str], rows: slice, pad_to: int | None = None
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], torch.Tensor]:
    """``(image, valid, ebv)`` tensors of ``rows`` of build arrays, zero-padded to ``pad_to``."""
    import torch

    def tensor(key: str) -> torch.Tensor:
        value = torch.as_tensor(np.asarray(arrays[key][rows]))
        pad = 0 if pad_to is None else pad_to - len(value)
        return torch.cat([value, value.new_zeros((pad, *value.shape[1:]))]) if pad else value

    image = {g: tensor(f"{g}/image").float() for g in groups}
    valid = {g: tensor(f"{g}/valid").bool() for g in groups}
    ebv = torch.nan_to_num(tensor("catalog/ebv").float().view(-1, 1), nan=0.0)
    return image, valid, ebv


@contextmanager
def _captured(layers: dict[str, nn.Module]) -> Iterator[dict[str, list[torch.Tensor]]]:
    store: dict[str, list[torch.Tensor]] = {name: [] for name in layers}
    handles = []
    for name, layer in layers.items():

        def hook(_module, _inputs, output, name=name):
            store[name].append(output.detach().float())

        handles.append(layer.register_forward_hook(hook))
    try:
        yield store
    finally:
        for handle in handles:
            handle.remove()


def collect_layers(
    module: Any, arrays: dict[str, np.ndarray], layers: dict[str, nn.Module]
) -> dict[str, np.ndarray]:
    """Record the outputs of ``layers`` for every object of ``arrays``, mean-pooled.

    Parameters
    ----------
    module : RedshiftModule
        The trained module (evaluation mode).
    arrays : dict
        Build arrays (``'<group>/image'``, ``'<group>/valid'``, ``'catalog/ebv'``).
    layers : dict of str to nn.Module
        Sub-modules of ``module`` to record.

    Returns
    -------
    dict of str to ndarray
        ``(n, channels)`` float32 per layer (4-D outputs averaged over height and width).
    """
    import torch

    module.eval()
    n = len(arrays["catalog/ebv"])
    with torch.no_grad(), _captured(layers) as store:
        for start in range(0, n, EMBED_BATCH):
            rows = slice(start, min(n, start + EMBED_BATCH))
            image, valid, ebv = to_tensors(arrays, module.groups, rows, pad_to=EMBED_BATCH)
            module(image, valid, ebv)
    out = {}
    for name, pieces in store.items():
        value = torch.cat(pieces)[:n]
        if value.ndim == 4:
            value = value.mean(dim=(-2, -1))
        out[name] = value.reshape(n, -1).numpy().astype(np.float32)
    return out


def embed_arrays(module: Any, arrays: dict[str, np.ndarray]) -> np.ndarray:
    """Penultimate-layer embeddings ``(n, d)`` float32 of every object of ``arrays``."""
    layer = penultimate_layer(module)
    return collect_layers(module, arrays, {"penultimate": layer})["penultimate"]
