"""Loading a trained checkpoint (and its calibration file) for deterministic prediction."""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mantis import densities
from mantis.calibration import find_calibration
from mantis.data import DIHEDRAL_ORDER, dihedral
from mantis.exceptions import ConfigError
from mantis.models._checkpoint import plain_metadata, read_checkpoint
from mantis.models._module import RedshiftModule
from mantis.stack import DatasetError, DatasetReader
from mantis.zgrid import ZGrid

__all__ = ["Predictor", "attach_calibration", "load_predictor"]

# Every forward pass sees exactly this many objects (the last one padded), so an object's
# density does not depend on how a catalogue was chunked: CPU convolution kernels are
# chosen per batch shape and different kernels round differently.
MICRO_BATCH = 32


def _read_checkpoint(ckpt: str | os.PathLike, device: str = "cpu") -> dict[str, Any]:
    return read_checkpoint(ckpt, device)  # refuses anything that could run code


class Predictor:
    """A trained network in evaluation mode, turning dataset arrays into p(z).

    Attributes
    ----------
    zgrid : ZGrid
        The output grid.
    bands : list of str
        Band order of the training data.
    grids : dict
        ``{group: {'pixel_scale', 'size'}}`` the network expects.
    calibration : dict or None
        The recalibration (``Calibration.to_dict()``) that `mantis calibrate` fitted for this
        checkpoint; `predict_arrays` returns densities before it, and prediction applies it.
    """

    def __init__(self, module: RedshiftModule, *, calibration: dict | None = None) -> None:
        self.module = module.eval()
        self.spec = module.spec
        self.groups = module.groups
        self.zgrid: ZGrid = module.zgrid
        self.bands: list[str] = list(self.spec["bands"])
        self.grids: dict[str, dict[str, float]] = self.spec["grids"]
        self.calibration = calibration

    @property
    def device(self) -> torch.device:
        """Device holding the network."""
        return self.module.centres.device

    def _check(self, arrays: dict[str, np.ndarray]) -> int:
        needed = [f"{g}/{k}" for g in self.groups for k in ("image", "valid")] + ["catalog/ebv"]
        missing = [k for k in needed if k not in arrays]
        if missing:
            raise DatasetError(f"predict_arrays needs arrays {missing}; got {sorted(arrays)}")
        n = len(arrays["catalog/ebv"])
        for g in self.groups:
            size = int(self.grids[g]["size"])
            expected = (n, int(self.spec["channels"][g]), size, size)
            for kind in ("image", "valid"):
                shape = tuple(np.shape(arrays[f"{g}/{kind}"]))
                if shape != expected:
                    raise DatasetError(
                        f"{g}/{kind} has shape {shape}; this model was trained on {expected}"
                    )
        return n

    @torch.no_grad()
    def _predict_batch(self, arrays: dict[str, np.ndarray], tta: bool) -> np.ndarray:
        n = len(arrays["catalog/ebv"])
        pad = (-n) % MICRO_BATCH

        def tensor(key: str) -> torch.Tensor:
            value = torch.as_tensor(np.asarray(arrays[key]), device=self.device)
            return torch.cat([value, value.new_zeros((pad, *value.shape[1:]))]) if pad else value

        image = {g: tensor(f"{g}/image").float() for g in self.groups}
        valid = {g: tensor(f"{g}/valid").bool() for g in self.groups}
        ebv = torch.nan_to_num(tensor("catalog/ebv").float().view(-1, 1), nan=0.0)
        out = []
        for start in range(0, n + pad, MICRO_BATCH):
            rows = slice(start, start + MICRO_BATCH)
            elements = range(DIHEDRAL_ORDER) if tta else range(1)
            total = torch.zeros((), dtype=torch.float64, device=self.device)
            for k in elements:
                img = {g: dihedral(t[rows], k) for g, t in image.items()}
                val = {g: dihedral(t[rows], k) for g, t in valid.items()}
                total = total + self.module.predict_log_probs(img, val, ebv[rows]).exp()
            out.append(total)
        # one definition of a normalised density for every stage
        return densities.normalise(torch.cat(out)[:n].cpu().numpy())

    def predict_arrays(
        self, arrays: dict[str, np.ndarray], *, tta: bool = False, batch_size: int = 256
    ) -> np.ndarray:
        """Per-bin probabilities ``(N, n_z)`` (rows sum to one) before any recalibration.

        Parameters
        ----------
        arrays : dict
            ``build_objects`` output: ``'<group>/image'``, ``'<group>/valid'`` for the groups
            the model reads, and ``'catalog/ebv'``.
        tta : bool
            Average over the eight flips/rotations of the square (still deterministic).
        batch_size : int
            Objects converted to tensors at once (memory only: every object's density is
            the same bytes whatever the batch size or its neighbours).
        """
        n = self._check(arrays)
        keys = [f"{g}/{k}" for g in self.groups for k in ("image", "valid")] + ["catalog/ebv"]
        out = np.empty((n, self.zgrid.n_bins), dtype=np.float64)
        for start in range(0, n, batch_size):
            chunk = {k: np.asarray(arrays[k][start : start + batch_size]) for k in keys}
            out[start : start + batch_size] = self._predict_batch(chunk, tta)
        return out

    def predict_dataset(
        self,
        h5_path: str | os.PathLike,
        *,
        split: str | None = None,
        batch_size: int = 256,
        tta: bool = False,
    ) -> np.ndarray:
        """Densities ``(N, n_z)`` of every object of a split (``None``: all), in file order."""
        with DatasetReader(h5_path) as reader:
            rows = reader.rows(split)
            out = np.empty((len(rows), self.zgrid.n_bins), dtype=np.float64)
            position = 0
            for chunk in reader.iter_arrays([*self.groups, "catalog/ebv"], rows, batch_size):
                self._check(chunk)
                probs = self._predict_batch(chunk, tta)
                out[position : position + len(probs)] = probs
                position += len(probs)
        return out


def load_predictor(
    ckpt: str | os.PathLike,
    device: str = "cpu",
    *,
    calibration: str | os.PathLike | None = None,
) -> Predictor:
    """Load a `mantis train` checkpoint as a `Predictor` on ``device``.

    Parameters
    ----------
    ckpt : path
        The checkpoint.
    device : str
        Torch device of the network.
    calibration : path, optional
        A `mantis calibrate` file for this checkpoint; by default the one beside it
        (``mantis.calibration.calibration_path``), if any. Checkpoints whose metadata hold a
        calibration (written by older versions) fall back to it.

    Raises
    ------
    ConfigError
        If the checkpoint or the given calibration file is missing or unreadable, or the
        calibration belongs to another checkpoint.
    """
    checkpoint = _read_checkpoint(ckpt, device)
    accepted = inspect.signature(RedshiftModule).parameters
    # LightningCLI adds bookkeeping entries (``_instantiator``, ``_class_path``) to the hparams
    hparams = {k: v for k, v in checkpoint["hyper_parameters"].items() if k in accepted}
    module = RedshiftModule(**hparams)
    module.load_state_dict(checkpoint["state_dict"])
    module.to(device)
    found = find_calibration(ckpt, calibration)
    stored = checkpoint["mantis"].get("calibration")
    return Predictor(module, calibration=found.to_dict() if found is not None else stored)


def attach_calibration(ckpt: str | os.PathLike, calibration: dict) -> None:
    """Store a recalibration under ``ckpt['mantis']['calibration']`` (atomic rewrite).

    The mantis stages never call this: `mantis calibrate` writes a calibration file beside the
    checkpoint instead, and the checkpoint stays as training left it.
    """
    if not isinstance(calibration, dict):
        raise ConfigError(f"calibration must be a dict, got {type(calibration).__name__}")
    checkpoint = _read_checkpoint(ckpt)
    checkpoint["mantis"]["calibration"] = plain_metadata(calibration)
    path = Path(ckpt)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(checkpoint, tmp)
    tmp.replace(path)
