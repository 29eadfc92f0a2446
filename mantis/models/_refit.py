"""Refit the density head on frozen features once the whole network has trained.

A CPU-sized schedule shows the encoder each training galaxy only a few times; by then the
head's mapping from image features and photometry to a density is still far from converged,
and it keeps improving for tens of epochs at a small fraction of a network epoch's cost. So,
after the last epoch, the encoder is frozen (evaluation mode), its inputs to the head are
computed once per training galaxy for every combination of surveys that modality dropout can
withhold, and the head alone trains on them, drawing the withheld surveys per galaxy and step
with the dropout rates. The head of the refit epoch with the best validation log score (at its
best temperature, as recalibration will use it) is kept if it beats the trained head's.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from torch.nn import functional

from mantis.exceptions import ConfigError

__all__ = ["HeadRefit", "check_head_refit", "refit_head"]

DEFAULTS = {"epochs": 0, "lr": 3e-3, "weight_decay": 1e-4, "seed": 0}


def check_head_refit(settings: dict[str, Any] | None) -> dict[str, Any]:
    """Validate ``model.head_refit`` and fill in its defaults.

    Parameters
    ----------
    settings : dict or None
        ``epochs`` (0 turns the refit off), ``lr``, ``weight_decay`` and ``seed``.

    Returns
    -------
    dict
        All four keys.
    """
    settings = dict(settings or {})
    unknown = sorted(set(settings) - set(DEFAULTS))
    if unknown:
        raise ConfigError(f"head_refit has unknown keys {unknown}; allowed: {sorted(DEFAULTS)}")
    out = {**DEFAULTS, **settings}
    epochs = out["epochs"]
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise ConfigError(f"head_refit.epochs must be an integer >= 0, got {epochs!r}")
    for key in ("lr", "weight_decay"):
        value = out[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
            raise ConfigError(f"head_refit.{key} must be a number >= 0, got {value!r}")
    if not out["lr"] > 0:
        raise ConfigError(f"head_refit.lr must be > 0, got {out['lr']!r}")
    return out


def _withheld_sets(dropout: dict[str, float]) -> tuple[list[str], list[tuple[str, ...]]]:
    """Surveys modality dropout can withhold, and every subset of them indexed by bit pattern."""
    names = [name for name, p in dropout.items() if p > 0]
    subsets = [
        tuple(n for j, n in enumerate(names) if bits >> j & 1) for bits in range(2 ** len(names))
    ]
    return names, subsets


@torch.no_grad()
def _head_inputs(
    module: Any, loader: Any, variants: list[tuple[str, ...]]
) -> dict[str, torch.Tensor]:
    """Head inputs ``x`` ``(variant, object, feature)``, ``ebv`` and ``z``, in one pass."""
    xs, ebvs, zs = [], [], []
    for batch in loader:
        batch = module.transfer_batch_to_device(batch, module.device, 0)
        everyone = torch.ones(len(batch["z"]), dtype=torch.bool, device=module.device)
        per_variant = []
        for withheld in variants:
            valid = batch["valid"]
            for name in withheld:
                valid = module.withhold(valid, name, everyone)
            inputs = {g: module.stretch[g](batch["image"][g], valid[g]) for g in module.groups}
            per_variant.append(module.net.head_inputs(inputs))
        xs.append(torch.stack(per_variant))
        ebvs.append(batch["ebv"])
        zs.append(batch["z"])
    return {"x": torch.cat(xs, dim=1), "ebv": torch.cat(ebvs), "z": torch.cat(zs)}


@torch.no_grad()
def _log_score(module: Any, head: torch.nn.Module, data: dict[str, torch.Tensor]) -> float:
    """Mean negative log density at the true bin, at the temperature that suits it best.

    Recalibration fits a temperature on the same validation split afterwards, so a head is
    judged by what it gives once tempered, not by its raw sharpness.
    """
    logits = (head(data["x"], data["ebv"]) + module.log_prior_correction).double()
    bins = torch.as_tensor(module.zgrid.bin_index(data["z"].cpu().numpy()), device=logits.device)
    betas = torch.exp(torch.linspace(-math.log(4.0), math.log(4.0), 49, dtype=torch.float64))
    return min(
        float(functional.nll_loss(torch.log_softmax(logits * beta, dim=1), bins)) for beta in betas
    )


def refit_head(
    module: Any, datamodule: Any, *, epochs: int, lr: float, weight_decay: float, seed: int
) -> dict[str, Any]:
    """Train ``module``'s density head alone on its frozen encoder's features.

    Parameters
    ----------
    module : RedshiftModule
        A trained module. Its head is replaced by the refit epoch's head with the lowest
        tempered validation log score, if that is lower than the trained head's.
    datamodule : MantisDataModule
        The data the module was trained on (training and validation splits).
    epochs, lr, weight_decay, seed : int, float, float, int
        Passes over the training split, AdamW learning rate (cosine-annealed to 1/100 of it)
        and weight decay, and the seed of the batches and the withheld-survey draws.

    Returns
    -------
    dict
        ``epochs``, ``lr``, the tempered validation log scores ``val_log_score_before`` and
        ``val_log_score_after``, ``best_epoch`` (the refit epoch whose head is kept; 0: none)
        and ``kept``.
    """
    was_training = module.training
    module.eval()
    names, variants = _withheld_sets(module.modality_dropout)
    train = _head_inputs(module, datamodule.split_dataloader("train"), variants)
    val = _head_inputs(module, datamodule.split_dataloader("val"), [()])
    val["x"] = val["x"][0]
    rates = torch.tensor([module.modality_dropout[n] for n in names])
    before = _log_score(module, module.net.head, val)

    head = copy.deepcopy(module.net.head).train()
    optimizer = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs, eta_min=lr / 100)
    generator = torch.Generator().manual_seed(seed)
    n, batch_size = len(train["z"]), datamodule.batch_size
    best_score, best_epoch, best_state = before, 0, None
    for epoch in range(1, epochs + 1):
        head.train()
        order = torch.randperm(n, generator=generator)
        for start in range(0, n - batch_size + 1 if n > batch_size else 1, batch_size):
            rows = order[start : start + batch_size]
            drawn = torch.rand(len(rows), len(rates), generator=generator) < rates
            # the withheld surveys' bit pattern is the index of their variant
            bits = (drawn.long() << torch.arange(len(rates))).sum(dim=1)
            x, z = train["x"][bits, rows], train["z"][rows]
            loss = functional.cross_entropy(head(x, train["ebv"][rows]), module.target(z))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        schedule.step()
        head.eval()
        score = _log_score(module, head, val)
        if score < best_score:
            best_score, best_epoch, best_state = score, epoch, copy.deepcopy(head.state_dict())
    if best_state is not None:
        module.net.head.load_state_dict(best_state)
    module.train(was_training)
    return {
        "epochs": epochs,
        "lr": lr,
        "val_log_score_before": before,
        "val_log_score_after": best_score,
        "best_epoch": best_epoch,
        "kept": best_state is not None,
    }


class HeadRefit(pl.Callback):
    """At the end of training, refit the head of the best checkpoint (``model.head_refit``).

    The best checkpoint is loaded into the module, its head refit (`refit_head`), and the
    checkpoint rewritten in place with the new head and a ``head_refit`` summary in its
    ``mantis`` metadata. A checkpoint that already carries that summary is left alone, so a
    rerun does not refit twice.
    """

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        settings = getattr(pl_module, "head_refit", None)
        best = trainer.checkpoint_callback and trainer.checkpoint_callback.best_model_path
        if not settings or not settings["epochs"] or not best or not Path(best).is_file():
            return
        from mantis.models._checkpoint import read_checkpoint

        checkpoint = read_checkpoint(best)
        if checkpoint["mantis"].get("head_refit"):
            return
        # the module keeps its last-epoch weights (ModelCheckpoint may still save them as
        # last.ckpt); only the best checkpoint's file gets the refit head
        last_epoch = copy.deepcopy(pl_module.state_dict())
        pl_module.load_state_dict(checkpoint["state_dict"])
        summary = refit_head(pl_module, trainer.datamodule, **settings)
        checkpoint["state_dict"] = {
            k: v.detach().cpu().clone() for k, v in pl_module.state_dict().items()
        }
        pl_module.load_state_dict(last_epoch)
        checkpoint["mantis"]["head_refit"] = summary
        if trainer.is_global_zero:
            tmp = Path(f"{best}.tmp")
            torch.save(checkpoint, tmp)
            tmp.replace(best)
            verdict = (
                f"kept the head of refit epoch {summary['best_epoch']}"
                if summary["kept"]
                else "not kept: no better on validation"
            )
            print(
                f"mantis: refit the density head for {summary['epochs']} epochs on frozen "
                f"features: tempered validation log score {summary['val_log_score_before']:.4f} -> "
                f"{summary['val_log_score_after']:.4f} ({verdict})"
            )
        trainer.strategy.barrier("head_refit")
