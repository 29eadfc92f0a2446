"""The one LightningModule: wraps any registered network with input stretch, loss and metrics."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import nn
from torch.nn import functional

from mantis import __version__
from mantis.data import ArcsinhStretch, image_groups
from mantis.exceptions import ConfigError
from mantis.models._metrics import density_scores, validation_scores
from mantis.models._photometry import AperturePhotometry, photometry_groups
from mantis.models._refit import check_head_refit
from mantis.models._registry import create_model
from mantis.surveys import survey
from mantis.zgrid import ZGrid

__all__ = ["RedshiftModule"]


class RedshiftModule(pl.LightningModule):
    """Train a registered network to output p(z) over the shared redshift grid.

    Parameters
    ----------
    data_spec : dict
        The dataset description from `mantis.data.read_spec` (the CLI links it from the
        data module): fusion, bands, surveys, grids, channels.
    net : str
        Registered model name; its fusion (``early_*`` / ``late_*``) must match the data's.
    net_kwargs : dict, optional
        Extra keyword arguments of the model factory.
    z_min, z_max, n_z : float, float, int
        The redshift grid.
    label_sigma : float
        If positive, train against a Gaussian target of width ``label_sigma * (1 + z)``
        instead of the one-hot bin.
    modality_dropout : dict, optional
        Survey name to the probability of withholding that survey from a training object
        (pixels and masks zeroed), e.g. ``{'galex': 0.2, 'unwise': 0.2}``.
    stretch_factor : float
        Arcsinh softening in units of each band's noise sigma.
    photometry : bool
        Also feed the density head forced aperture photometry of the inputs (asinh magnitudes,
        adjacent colours, missing-band flags; `AperturePhotometry`), the features of the kNN
        baseline.
    head_refit : dict, optional
        After training, refit the density head of the best checkpoint on its frozen encoder's
        features (`mantis.models.refit_head`): ``epochs`` (0 or absent: no refit), ``lr``,
        ``weight_decay``, ``seed``.
    optimizer, scheduler : callable, optional
        Built from the config by LightningCLI; default AdamW(lr=2e-3, weight_decay=1e-4)
        and no schedule.
    """

    log_prior_correction: torch.Tensor

    def __init__(
        self,
        data_spec: dict[str, Any],
        net: str = "early_small",
        net_kwargs: dict[str, Any] | None = None,
        z_min: float = 0.0,
        z_max: float = 1.6,
        n_z: int = 400,
        label_sigma: float = 0.0,
        modality_dropout: dict[str, float] | None = None,
        stretch_factor: float = 1.0,
        photometry: bool = False,
        head_refit: dict[str, Any] | None = None,
        optimizer: OptimizerCallable | None = None,
        scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["optimizer", "scheduler"])
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.zgrid = ZGrid(z_min, z_max, n_z)
        self.spec = data_spec
        self.groups = image_groups(data_spec)
        self.label_sigma = float(label_sigma)
        self.modality_dropout = self._check_dropout(modality_dropout or {})
        self.head_refit = check_head_refit(head_refit)
        channels = data_spec["channels"]
        self.stretch = nn.ModuleDict(
            {g: ArcsinhStretch(channels[g], factor=stretch_factor) for g in self.groups}
        )
        if not net.startswith(f"{data_spec['fusion']}_"):
            raise ConfigError(
                f"model {net!r} takes {net.split('_')[0]}-fusion inputs but the data module "
                f"reads {data_spec['fusion']!r}; set data.fusion to match"
            )
        kwargs = dict(net_kwargs or {})
        if data_spec["fusion"] == "early":
            kwargs |= {
                "in_chans": 2 * channels["early"],
                "size": data_spec["grids"]["early"]["size"],
            }
        else:
            kwargs |= {
                "in_chans": {g: 2 * channels[g] for g in self.groups},
                "sizes": {g: data_spec["grids"][g]["size"] for g in self.groups},
            }
        self.net = create_model(net, n_z=n_z, **kwargs)
        if photometry:
            if not hasattr(self.net, "attach_photometry"):
                raise ConfigError(f"model {net!r} cannot take photometry; set photometry: false")
            features = AperturePhotometry(
                photometry_groups(data_spec), stretch_factor=stretch_factor
            )
            self.net.attach_photometry(features)
        self.register_buffer("log_prior_correction", torch.zeros(n_z))
        self.register_buffer("centres", torch.as_tensor(self.zgrid.centres, dtype=torch.float32))
        self._val_pieces: list[dict[str, torch.Tensor]] = []

    def _check_dropout(self, dropout: dict[str, float]) -> dict[str, float]:
        for name, p in dropout.items():
            if name not in self.spec["surveys"]:
                raise ConfigError(
                    f"modality_dropout names survey {name!r}; allowed: {self.spec['surveys']}"
                )
            if not 0.0 <= float(p) < 1.0:
                raise ConfigError(f"modality_dropout[{name!r}] must be in [0, 1), got {p!r}")
        return {name: float(p) for name, p in dropout.items()}

    # -- inputs ---------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        """Fit the input stretch (and the sampler prior) from the training data, once."""
        if stage != "fit" or all(s.fitted for s in self.stretch.values()):
            return
        datamodule = self.trainer.datamodule
        noise = datamodule.noise_sigma()
        for group, sigma in noise.items():
            self.stretch[group].set_noise(sigma)
        if getattr(self.net, "photometry", None) is not None:
            self.net.photometry.set_noise(noise)
        self.log_prior_correction.copy_(torch.as_tensor(datamodule.prior_correction()))

    def withhold(
        self, valid: dict[str, torch.Tensor], name: str, rows: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Mark survey ``name`` as missing (valid False) for the objects where ``rows``."""
        valid = dict(valid)
        if self.spec["fusion"] == "late":
            valid[name] = valid[name] & ~rows.view(-1, 1, 1, 1)
        else:
            bands = self.spec["bands"]
            channels = [bands.index(b) for b in survey(name).bands if b in bands]
            keep = torch.ones_like(valid["early"][:1, :, :1, :1])
            keep[:, channels] = False
            valid["early"] = valid["early"] & (keep | ~rows.view(-1, 1, 1, 1))
        return valid

    def forward(
        self, image: dict[str, torch.Tensor], valid: dict[str, torch.Tensor], ebv: torch.Tensor
    ) -> torch.Tensor:
        """Logits ``(B, n_z)`` of the network, before the sampler prior correction."""
        inputs = {g: self.stretch[g](image[g], valid[g]) for g in self.groups}
        return self.net(inputs, ebv)

    def predict_log_probs(
        self, image: dict[str, torch.Tensor], valid: dict[str, torch.Tensor], ebv: torch.Tensor
    ) -> torch.Tensor:
        """Log per-bin probabilities at inference (training-sampler prior divided out)."""
        logits = self(image, valid, ebv) + self.log_prior_correction
        return torch.log_softmax(logits.double(), dim=1)

    # -- loss and steps -------------------------------------------------------------------
    def target(self, z: torch.Tensor) -> torch.Tensor:
        """Class indices, or (``label_sigma > 0``) Gaussian-smoothed target probabilities."""
        idx = torch.as_tensor(self.zgrid.bin_index(z.detach().cpu().numpy()), device=z.device)
        if self.label_sigma <= 0:
            return idx
        sigma = self.label_sigma * (1.0 + z)[:, None]
        weights = torch.exp(-0.5 * ((self.centres[None, :] - z[:, None]) / sigma) ** 2)
        return weights / weights.sum(dim=1, keepdim=True)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        valid = batch["valid"]
        for name, p in self.modality_dropout.items():
            rows = torch.rand(batch["z"].shape[0], device=self.device) < p
            valid = self.withhold(valid, name, rows)
        logits = self(batch["image"], valid, batch["ebv"])
        loss = functional.cross_entropy(logits, self.target(batch["z"]))
        self.log("train/loss", loss, on_step=False, on_epoch=True, batch_size=len(logits))
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        log_probs = self.predict_log_probs(batch["image"], batch["valid"], batch["ebv"])
        # the validation loss is the density's log score at the true bin, whatever the target
        bins = self.zgrid.bin_index(batch["z"].detach().cpu().numpy())
        loss = functional.nll_loss(log_probs, torch.as_tensor(bins, device=log_probs.device))
        n = len(log_probs)
        self.log("val/loss", loss.float(), prog_bar=True, sync_dist=True, batch_size=n)
        probs = log_probs.exp().float()
        self._val_pieces.append(
            density_scores(probs, batch["z"].float(), self.centres, self.zgrid.width)
        )

    def on_validation_epoch_end(self) -> None:
        if not self._val_pieces:
            return
        pieces = {k: torch.cat([p[k] for p in self._val_pieces]) for k in self._val_pieces[0]}
        self._val_pieces.clear()
        if self.trainer.world_size > 1:
            pieces = {k: self.all_gather(v).reshape(-1) for k, v in pieces.items()}
        if self.trainer.sanity_checking:
            return
        scores = validation_scores(pieces)
        self.log_dict({f"val/{k}": v for k, v in scores.items()}, rank_zero_only=False)

    def configure_optimizers(self) -> Any:
        if self.optimizer_factory is None:
            optimizer = torch.optim.AdamW(self.parameters(), lr=2e-3, weight_decay=1e-4)
        else:
            optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer)
        config = {"scheduler": scheduler, "interval": "epoch", "monitor": "val/loss"}
        return {"optimizer": optimizer, "lr_scheduler": config}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["mantis"] = {
            "version": __version__,
            "zgrid": self.zgrid.to_dict(),
            "data_spec": self.spec,
            "net": self.hparams["net"],
            "calibration": None,
        }
