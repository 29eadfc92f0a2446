"""Forced aperture photometry inside the network, for the density head.

The head can read the catalogue-level photometry the kNN baseline uses: forced aperture fluxes
measured on the very arrays the network sees, with the apertures, annuli and point-source
corrections of `mantis.apertures` (the geometry `mantis.evaluate.aperture_photometry` uses), as
asinh magnitudes (Lupton et al. 1999) and adjacent colours. The fluxes are recovered from the
stretched inputs (the stretch is ``asinh(flux / soft) * valid`` with the mask channels after
the data channels), so every caller of the network — training, prediction, explanation — gets
the same features from the same inputs, and attributions flow through them.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from mantis.apertures import MIN_ANNULUS_PIXELS, MIN_VALID_FRACTION, band_aperture
from mantis.surveys import survey

__all__ = ["AperturePhotometry", "photometry_groups"]

MAG_ZERO = 22.5  # AB magnitude of one nanomaggy
MAG_SCALE = 2.5  # magnitudes enter the head as (m - 22.5) / 2.5
_SORT_FILL = 1e30  # invalid annulus pixels sort after every valid one


def photometry_groups(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Bands, pixel scale and size of each image group a model of this data spec reads.

    Parameters
    ----------
    spec : dict
        A data spec from `mantis.data.read_spec`.

    Returns
    -------
    dict
        ``{group: {'bands': [...], 'pixel_scale': float, 'size': int}}`` in input order.
    """
    if spec["fusion"] == "early":
        bands = {"early": list(spec["bands"])}
    else:
        bands = {g: [b for b in survey(g).bands if b in spec["bands"]] for g in spec["surveys"]}
    grids = spec["grids"]
    return {
        g: {
            "bands": names,
            "pixel_scale": float(grids[g]["pixel_scale"]),
            "size": int(grids[g]["size"]),
        }
        for g, names in bands.items()
    }


class AperturePhotometry(nn.Module):
    """Asinh magnitudes, adjacent colours and missing-band flags of stretched network inputs.

    Parameters
    ----------
    groups : dict
        `photometry_groups` of the data spec: bands, pixel scale and size per input group.
    stretch_factor : float
        The input stretch's softening in units of the pixel noise.

    Notes
    -----
    `set_noise` must be given each group's pixel noise (the input stretch's) before use. The
    magnitude softening of a band is the aperture-sum noise that pixel noise implies.
    """

    def __init__(self, groups: dict[str, dict[str, Any]], *, stretch_factor: float = 1.0) -> None:
        super().__init__()
        self.groups = list(groups)
        self.bands = [b for g in self.groups for b in groups[g]["bands"]]
        self.stretch_factor = float(stretch_factor)
        corrections, noise_per_sigma, n_aperture = [], [], []
        for g in self.groups:
            spec = groups[g]
            for j, name in enumerate(spec["bands"]):
                geometry = band_aperture(name, spec["pixel_scale"], spec["size"])
                n_ap = int(geometry.aperture.sum())
                self.register_buffer(
                    f"aperture_{g}_{j}",
                    torch.from_numpy(np.flatnonzero(geometry.aperture)),
                    persistent=False,
                )
                self.register_buffer(
                    f"annulus_{g}_{j}",
                    torch.from_numpy(np.flatnonzero(geometry.annulus)),
                    persistent=False,
                )
                corrections.append(geometry.correction)
                n_aperture.append(n_ap)
                noise_per_sigma.append(math.sqrt(n_ap) * geometry.correlation / geometry.correction)
        self.register_buffer("correction", torch.tensor(corrections), persistent=False)
        self.register_buffer(
            "n_aperture", torch.tensor(n_aperture, dtype=torch.float32), persistent=False
        )
        self.register_buffer("noise_per_sigma", torch.tensor(noise_per_sigma), persistent=False)
        # pixel noise sigma per band, NaN until fitted; saved with the checkpoint
        self.register_buffer("noise_sigma", torch.full((len(self.bands),), float("nan")))
        n = len(self.bands)
        self.n_features = n + max(n - 1, 0) + n

    def set_noise(self, sigma: dict[str, list[float]] | dict[str, torch.Tensor]) -> None:
        """Set each group's per-band pixel noise (AB nanomaggies per pixel)."""
        values = torch.cat([torch.as_tensor(sigma[g], dtype=torch.float32) for g in self.groups])
        if values.shape != self.noise_sigma.shape or not bool((values > 0).all()):
            raise ValueError(f"noise sigma must be {len(self.bands)} positive values, got {values}")
        self.noise_sigma.copy_(values)

    def fluxes(self, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Aperture fluxes ``(B, n_bands)`` in nanomaggies and which bands were measured.

        Parameters
        ----------
        inputs : dict of str to Tensor
            Stretched inputs ``(B, 2C, H, W)`` per group: data channels, then mask channels.

        Returns
        -------
        flux : Tensor
            Background-subtracted, point-source-corrected flux; 0 where not measured.
        measured : Tensor of bool
            True where at least 80 % of the aperture pixels are valid.
        """
        fluxes, measured = [], []
        k = 0
        for g in self.groups:
            x = inputs[g]
            n_bands = x.shape[1] // 2
            soft = self.stretch_factor * self.noise_sigma[k : k + n_bands].to(x.dtype)
            pixels = (torch.sinh(x[:, :n_bands]) * soft.view(1, -1, 1, 1)).flatten(2)
            valid = (x[:, n_bands:] > 0.5).flatten(2)
            for j in range(n_bands):
                flux, ok = self._band_flux(pixels[:, j], valid[:, j], g, j, k + j)
                fluxes.append(flux)
                measured.append(ok)
            k += n_bands
        return torch.stack(fluxes, dim=1), torch.stack(measured, dim=1)

    def _band_flux(
        self, pixels: torch.Tensor, valid: torch.Tensor, group: str, j: int, band: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        aperture = getattr(self, f"aperture_{group}_{j}")
        annulus = getattr(self, f"annulus_{group}_{j}")
        ap_valid = valid[:, aperture]
        n_valid = ap_valid.sum(dim=1)
        mean = (pixels[:, aperture] * ap_valid).sum(dim=1) / n_valid.clamp(min=1)
        background = self._background(pixels[:, annulus], valid[:, annulus])
        flux = (mean - background) * self.n_aperture[band] / self.correction[band]
        ok = n_valid >= MIN_VALID_FRACTION * self.n_aperture[band]
        return torch.where(ok, flux, torch.zeros_like(flux)), ok

    @staticmethod
    def _background(pixels: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Median of the valid annulus pixels (mean of the middle two for an even count)."""
        n_valid = valid.sum(dim=1, keepdim=True)
        if pixels.shape[1] == 0:  # a cutout too small for an annulus
            return pixels.new_zeros(len(pixels))
        ordered = torch.where(valid, pixels, _SORT_FILL).sort(dim=1).values
        low = ordered.gather(1, ((n_valid - 1) // 2).clamp(min=0))
        high = ordered.gather(1, (n_valid // 2).clamp(max=ordered.shape[1] - 1))
        median = (0.5 * (low + high))[:, 0]
        return torch.where(n_valid[:, 0] >= MIN_ANNULUS_PIXELS, median, torch.zeros_like(median))

    def magnitudes(self, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Asinh AB magnitudes ``(B, n_bands)`` (NaN where not measured) and the measured mask.

        The softening of band ``b`` is its aperture noise ``sigma_b sqrt(n_ap) c_b / f_b``
        (pixel noise, aperture pixels, up-sampling correlation, point-source fraction).
        """
        flux, measured = self.fluxes(inputs)
        soft = (self.noise_sigma * self.noise_per_sigma).to(flux.dtype)
        mags = MAG_ZERO - 2.5 / math.log(10.0) * (torch.asinh(flux / (2 * soft)) + torch.log(soft))
        return torch.where(measured, mags, torch.full_like(mags, float("nan"))), measured

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Head features ``(B, n_features)``: scaled magnitudes, colours, missing flags.

        A missing band reads as magnitude 22.5 (feature 0), its colours as 0, its flag as 1.
        """
        mags, measured = self.magnitudes(inputs)
        scaled = torch.where(measured, (mags - MAG_ZERO) / MAG_SCALE, torch.zeros_like(mags))
        both = measured[:, 1:] & measured[:, :-1]
        colours = torch.where(
            both, scaled[:, 1:] - scaled[:, :-1], torch.zeros_like(both, dtype=mags.dtype)
        )
        return torch.cat([scaled, colours, (~measured).to(mags.dtype)], dim=1)
