"""Geometric augmentation (the dihedral group of the square) and the per-band input stretch."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn
from torchvision import tv_tensors
from torchvision.transforms import v2

__all__ = [
    "DIHEDRAL_ORDER",
    "ArcsinhStretch",
    "RandomDihedral",
    "dihedral",
    "dihedral_batch",
    "dihedral_inverse",
    "random_dihedral_elements",
]

DIHEDRAL_ORDER = 8
"""Number of flips and rotations of the square (the dihedral group D4)."""


def dihedral(image: torch.Tensor, k: int) -> torch.Tensor:
    """Apply element ``k`` (0..7) of D4 to the last two axes of ``image``.

    Element ``k`` rotates by ``k % 4`` quarter turns counter-clockwise, then, for ``k >= 4``,
    mirrors left-right. ``k = 0`` is the identity. Works for any square size, so cutouts of
    different surveys (different pixel counts, same sky) move together.
    """
    if not 0 <= int(k) < DIHEDRAL_ORDER:
        raise ValueError(f"dihedral element must be in 0..7, got {k!r}")
    out = torch.rot90(image, int(k) % 4, dims=(-2, -1))
    if k >= 4:
        out = torch.flip(out, dims=(-1,))
    return out


def _dihedral_view(array: np.ndarray, k: int) -> np.ndarray:
    # numpy's rot90 and reversed slices are views with the same meaning as `dihedral`
    turned = np.rot90(array, k % 4, axes=(-2, -1))
    return turned[..., ::-1] if k >= 4 else turned


def dihedral_batch(
    images: torch.Tensor, elements: torch.Tensor, *, rows: torch.Tensor | None = None
) -> torch.Tensor:
    """Apply element ``elements[i]`` of D4 to object ``i`` of a batch, all objects at once.

    Equal to stacking ``dihedral(images[rows[i]], elements[i])``, computed once per element
    present on the group of objects that drew it, so picking objects out of an in-memory split
    and turning them costs two copies whatever the batch size.

    Parameters
    ----------
    images : Tensor
        CPU tensor ``(N, ..., H, W)`` with ``H == W``.
    elements : Tensor
        ``(B,)`` integers in 0..7.
    rows : Tensor, optional
        ``(B,)`` indices into ``images`` of the batch's objects (default: all ``N``, in order).

    Returns
    -------
    Tensor
        A new ``(B, ..., H, W)`` tensor.
    """
    # numpy gathers and strided copies: several times faster than torch's indexing on CPU
    held = images.numpy()
    picked = np.arange(len(held)) if rows is None else np.asarray(rows, dtype=np.int64)
    drawn = np.asarray(elements, dtype=np.int64)
    if drawn.shape != picked.shape:
        raise ValueError(f"need one dihedral element per object: {picked.shape}, got {drawn.shape}")
    if drawn.size and not (drawn.min() >= 0 and drawn.max() < DIHEDRAL_ORDER):
        raise ValueError(f"dihedral elements must be in 0..7, got {sorted(set(drawn.tolist()))}")
    out = np.empty((len(picked), *held.shape[1:]), dtype=held.dtype)
    for k in np.unique(drawn).tolist():
        chosen = np.flatnonzero(drawn == k)
        out[chosen] = _dihedral_view(np.take(held, picked[chosen], axis=0), k)
    return torch.from_numpy(out)


def random_dihedral_elements(n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw ``n`` independent, uniform elements of D4 (torch's global generator by default)."""
    return torch.randint(DIHEDRAL_ORDER, (n,), generator=generator)


def dihedral_inverse(k: int) -> int:
    """Index of the inverse of element ``k``: rotations invert, reflections are involutions."""
    return (4 - k) % 4 if k < 4 else k


class RandomDihedral(v2.Transform):
    """Draw one of the eight flips/rotations and apply it to every image and mask of a sample.

    The transform takes any nested structure (dicts of surveys); every ``tv_tensors.Image`` and
    ``tv_tensors.Mask`` gets the *same* element, whatever its pixel count, so masks move with
    their pixels and the surveys stay aligned on the sky. Plain tensors (redshift, E(B-V)) pass
    through untouched. Randomness comes from torch's generator, seeded per DataLoader worker.
    """

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        return {"k": int(torch.randint(DIHEDRAL_ORDER, ()).item())}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if not isinstance(inpt, tv_tensors.Image | tv_tensors.Mask):
            return inpt
        return tv_tensors.wrap(dihedral(inpt.as_subclass(torch.Tensor), params["k"]), like=inpt)


class ArcsinhStretch(nn.Module):
    """Per-band arcsinh stretch whose softening follows each band's noise, plus mask channels.

    ``out = concat(asinh(image / (factor * sigma_b)) * valid, valid)`` along the band axis, so a
    network sees noise-level pixels near unit scale, bright cores compressed logarithmically,
    invalid pixels as exact zeros and, in separate channels, where data exist.

    Parameters
    ----------
    n_bands : int
        Number of bands (input channels before the masks are appended).
    factor : float
        Softening in units of the noise sigma.
    """

    noise_sigma: torch.Tensor

    def __init__(self, n_bands: int, *, factor: float = 1.0) -> None:
        super().__init__()
        if factor <= 0:
            raise ValueError(f"stretch factor must be positive, got {factor!r}")
        self.factor = float(factor)
        # NaN until fitted from the training data; a buffer, so the checkpoint keeps it.
        self.register_buffer("noise_sigma", torch.full((n_bands,), float("nan")))

    @property
    def fitted(self) -> bool:
        """True once the noise scales are set."""
        return bool(torch.isfinite(self.noise_sigma).all())

    def set_noise(self, sigma: torch.Tensor | list[float]) -> None:
        """Set the per-band noise sigma (AB nanomaggies per pixel)."""
        sigma = torch.as_tensor(sigma, dtype=self.noise_sigma.dtype)
        if sigma.shape != self.noise_sigma.shape or not bool((sigma > 0).all()):
            raise ValueError(
                f"noise sigma must be {tuple(self.noise_sigma.shape)} positive values, "
                f"got {sigma.tolist()}"
            )
        self.noise_sigma.copy_(sigma)

    def forward(self, image: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Stretch ``image`` (B, C, H, W) and append ``valid`` as C more channels."""
        mask = valid.to(image.dtype)
        soft = (self.factor * self.noise_sigma).to(image.dtype).view(1, -1, 1, 1)
        data = torch.where(valid, image, torch.zeros((), dtype=image.dtype))
        return torch.cat([torch.asinh(data / soft) * mask, mask], dim=1)
