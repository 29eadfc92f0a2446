"""Per-epoch validation scores of redshift densities (torch, on the shared grid).

Definitions follow the project conventions: residual d = (z_phot - z_spec) / (1 + z_spec) with
z_phot the density's mean; NMAD = 1.4826 median|d - median d|; outliers |d| > 0.15; CDE loss
= mean integral f^2 dz - 2 mean f(z_spec), with f the density in 1/z units.
"""

from __future__ import annotations

import torch

__all__ = ["density_scores", "validation_scores"]


def density_scores(
    probs: torch.Tensor, z: torch.Tensor, centres: torch.Tensor, width: float
) -> dict[str, torch.Tensor]:
    """Per-object pieces from per-bin probabilities ``probs`` (B, n_z) and true ``z`` (B,).

    Returns ``z_mean`` (density mean), ``f_true`` (density at the true bin, 1/z units) and
    ``f2`` (integral of the squared density), which `validation_scores` reduces.
    """
    idx = ((z - centres[0] + 0.5 * width) / width).floor().long().clamp(0, len(centres) - 1)
    return {
        "z_mean": probs @ centres,
        "f_true": probs.gather(1, idx[:, None])[:, 0] / width,
        "f2": (probs**2).sum(dim=1) / width,
        "z": z,
    }


def validation_scores(pieces: dict[str, torch.Tensor]) -> dict[str, float]:
    """NMAD, mean and median bias, outlier rate (|d| > 0.15) and CDE loss."""
    d = (pieces["z_mean"] - pieces["z"]) / (1.0 + pieces["z"])
    median = d.median()
    return {
        "nmad": float(1.4826 * (d - median).abs().median()),
        "bias_mean": float(d.mean()),
        "bias_median": float(median),
        "outlier_rate": float((d.abs() > 0.15).double().mean()),
        "cde_loss": float(pieces["f2"].mean() - 2.0 * pieces["f_true"].mean()),
    }
