"""A fitted recalibration of redshift densities, and the small file that carries it.

`mantis calibrate` fits it (`mantis.evaluate.fit_calibration`) and writes it with
`write_calibration`; the `Predictor` of a checkpoint applies it (`mantis predict`,
`mantis evaluate`). The file is JSON, never a pickle, and records the SHA-256 of the checkpoint
it was fitted for, so a calibration is never applied to another network. By default it lies
beside the checkpoint (`calibration_path`).

The transformations:

- temperature scaling: p' ∝ p^(1/T), i.e. softmax(logits / T);
- PIT-CDF remapping: F' = G(F) with G tabulated on a uniform grid of PIT values.

`Calibration.apply` is a few vectorised passes over float32 chunks, well above 10⁵ objects per
second.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mantis.densities import check_probs
from mantis.exceptions import ConfigError, DensityError, MantisWarning
from mantis.zgrid import ZGrid

__all__ = [
    "CALIBRATION_METHODS",
    "CALIBRATION_SUFFIX",
    "Calibration",
    "calibration_path",
    "file_sha256",
    "find_calibration",
    "read_calibration",
    "write_calibration",
]

CALIBRATION_METHODS = ("identity", "temperature", "pit_remap")
_FORMAT_VERSION = 1
_TINY = np.float32(1e-37)  # smallest normal float32 is 1.2e-38
_EXP_FLOOR = np.float32(-87.0)  # exp(-87) = 1.6e-38 is still a normal float32
_APPLY_CHUNK = 2048  # rows; small chunks keep the working set in cache


CALIBRATION_SUFFIX = ".calibration.json"
"""A checkpoint ``best.ckpt`` has its calibration in ``best.calibration.json`` beside it."""
_FILE_KIND = "mantis-calibration"


@dataclass
class Calibration:
    """A fitted global recalibration.

    Attributes
    ----------
    method : {'identity', 'temperature', 'pit_remap'}
        The transformation `apply` performs.
    zgrid : ZGrid
        Grid of the densities it applies to.
    temperature : float
        T of temperature scaling (1 for the other methods).
    remap : ndarray or None
        G(u) at u = 0, 1/M, ..., 1 for the PIT remapping.
    diagnostics : dict
        Held-out validation CRPS and KS of every candidate, and the object counts.
    """

    method: str
    zgrid: ZGrid
    temperature: float = 1.0
    remap: np.ndarray | None = None
    diagnostics: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.method not in CALIBRATION_METHODS:
            raise DensityError(
                f"calibration method must be one of {CALIBRATION_METHODS}, got {self.method!r}"
            )
        if not (np.isfinite(self.temperature) and self.temperature > 0):
            raise DensityError(
                f"calibration temperature must be positive, got {self.temperature!r}"
            )
        if self.method == "pit_remap":
            remap = np.asarray(self.remap, dtype=np.float64) if self.remap is not None else None
            if (
                remap is None
                or remap.ndim != 1
                or remap.size < 2
                or np.any(np.diff(remap) < 0)
                or abs(remap[0]) > 1e-9
                or abs(remap[-1] - 1) > 1e-9
            ):
                raise DensityError(
                    "pit_remap calibration needs 'remap': a non-decreasing table from 0 to 1"
                )
            self.remap = remap

    def apply(self, probs: np.ndarray, *, progress: bool = False) -> np.ndarray:
        """Recalibrate densities.

        Parameters
        ----------
        probs : ndarray, shape (n, n_z)
            Per-bin probabilities on `zgrid`.
        progress : bool
            Show a progress bar.

        Returns
        -------
        ndarray, shape (n, n_z), float32
            Recalibrated per-bin probabilities; rows sum to one.
        """
        probs = check_probs(probs, self.zgrid)
        out = np.empty(probs.shape, dtype=np.float32)
        starts = range(0, probs.shape[0], _APPLY_CHUNK)
        if progress:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc="recalibrating", unit="chunk")
        for start in starts:
            chunk = probs[start : start + _APPLY_CHUNK]
            out[start : start + chunk.shape[0]] = self._apply_chunk(chunk)
        return out

    def _apply_chunk(self, chunk: np.ndarray) -> np.ndarray:
        chunk = chunk.astype(np.float32, copy=False)
        if self.method == "identity":
            result = chunk.copy()
        elif self.method == "temperature":
            # p^(1/T) through logs relative to the row's peak, clamped so that no value is a
            # subnormal float32 (those run ~10x slower); the floor is 1e-38 of the peak.
            result = np.log(np.maximum(chunk, _TINY))
            result -= result.max(axis=1, keepdims=True)
            result *= np.float32(1.0 / self.temperature)
            np.maximum(result, _EXP_FLOOR, out=result)
            np.exp(result, out=result)
        else:
            mapped = np.cumsum(chunk, axis=1, dtype=np.float32)
            _remap_cdf(mapped, self.remap.astype(np.float32), np.empty_like(mapped))
            result = np.empty_like(mapped)
            result[:, 0] = mapped[:, 0]
            np.subtract(mapped[:, 1:], mapped[:, :-1], out=result[:, 1:])
            np.maximum(result, 0.0, out=result)
        result /= result.sum(axis=1, keepdims=True)
        return result

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form, stored in checkpoints."""
        return {
            "format_version": _FORMAT_VERSION,
            "method": self.method,
            "zgrid": self.zgrid.to_dict(),
            "temperature": float(self.temperature),
            "remap": None if self.remap is None else [float(v) for v in self.remap],
            "diagnostics": self.diagnostics,
        }

    @classmethod
    def from_dict(cls, spec: dict[str, Any]) -> Calibration:
        """Inverse of `to_dict`.

        Raises
        ------
        DensityError
            If keys are missing or values are not allowed.
        """
        if not isinstance(spec, dict):
            raise DensityError(f"a calibration must be a mapping, got {type(spec).__name__}")
        missing = {"method", "zgrid"} - set(spec)
        if missing:
            raise DensityError(f"calibration is missing {sorted(missing)}")
        version = spec.get("format_version", _FORMAT_VERSION)
        if version != _FORMAT_VERSION:
            raise DensityError(
                f"calibration format_version {version!r} is not supported (only {_FORMAT_VERSION})"
            )
        try:
            zgrid = ZGrid.from_dict(spec["zgrid"])
        except (KeyError, TypeError, ValueError) as err:
            raise DensityError(f"calibration zgrid {spec['zgrid']!r} is invalid: {err}") from None
        return cls(
            method=spec["method"],
            zgrid=zgrid,
            temperature=float(spec.get("temperature", 1.0)),
            remap=None if spec.get("remap") is None else np.asarray(spec["remap"], dtype=float),
            diagnostics=dict(spec.get("diagnostics", {})),
        )


def _remap_cdf(cdf: np.ndarray, table: np.ndarray, scratch: np.ndarray) -> None:
    """Replace ``cdf`` in place by G(cdf), G piecewise linear through ``table`` at 0, 1/M, .., 1.

    In-place float32 arithmetic, int16 indices and ``np.take`` into a scratch buffer: this is
    the inner loop of `Calibration.apply` for the PIT remapping.
    """
    m = table.size - 1
    slope = np.diff(table) * np.float32(m)
    intercept = table[:-1] - slope * (np.arange(m, dtype=np.float32) / np.float32(m))
    np.multiply(cdf, np.float32(m), out=scratch)
    index = scratch.astype(np.int16)
    np.minimum(index, m - 1, out=index)
    np.take(slope, index, out=scratch)
    cdf *= scratch
    np.take(intercept, index, out=scratch)
    cdf += scratch


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def calibration_path(checkpoint: str | os.PathLike) -> Path:
    """Where `mantis calibrate` puts a checkpoint's calibration by default: beside it."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(checkpoint.stem + CALIBRATION_SUFFIX)


def write_calibration(
    calibration: Calibration,
    path: str | os.PathLike,
    *,
    checkpoint: str | os.PathLike,
    split: str,
) -> Path:
    """Write ``calibration`` as JSON, atomically (a temporary file renamed into place).

    The file records the SHA-256 of ``checkpoint`` and the split it was fitted on.
    """
    path = Path(path)
    payload = {
        "kind": _FILE_KIND,
        "checkpoint": Path(checkpoint).name,
        "checkpoint_sha256": file_sha256(checkpoint),
        "split": split,
        "calibration": calibration.to_dict(),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=1))
    tmp.replace(path)
    return path


def read_calibration(
    path: str | os.PathLike, *, checkpoint: str | os.PathLike | None = None
) -> Calibration:
    """Read a calibration file; with ``checkpoint``, check it was fitted for that checkpoint.

    Raises
    ------
    ConfigError
        If the file is missing, not a mantis calibration, or belongs to another checkpoint.
    DensityError
        If the calibration it holds is invalid.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"calibration file {str(path)!r} does not exist")
    try:
        payload = json.loads(path.read_text(encoding="utf-8")[: 64 << 20])
    except (ValueError, UnicodeDecodeError) as err:
        raise ConfigError(f"calibration file {str(path)!r} is not JSON: {err}") from None
    if not isinstance(payload, dict) or payload.get("kind") != _FILE_KIND:
        raise ConfigError(f"{str(path)!r} is not a mantis calibration file")
    if checkpoint is not None and payload.get("checkpoint_sha256") != file_sha256(checkpoint):
        raise ConfigError(
            f"calibration {str(path)!r} was fitted for another checkpoint than "
            f"{str(checkpoint)!r}; run `mantis calibrate` for this one"
        )
    return Calibration.from_dict(payload.get("calibration"))


def find_calibration(
    checkpoint: str | os.PathLike, path: str | os.PathLike | None = None
) -> Calibration | None:
    """Return the calibration for ``checkpoint``: ``path`` if given, else the one beside it.

    A file beside the checkpoint that belongs to another checkpoint (a stale one, left by an
    earlier training) is ignored with a warning; a file given explicitly must match.

    Returns
    -------
    Calibration or None
        None when no path is given and none lies beside the checkpoint.
    """
    if path is not None:
        return read_calibration(path, checkpoint=checkpoint)
    beside = calibration_path(checkpoint)
    if not beside.is_file():
        return None
    try:
        return read_calibration(beside, checkpoint=checkpoint)
    except ConfigError as err:
        warnings.warn(f"{err}; densities are left uncalibrated", MantisWarning, stacklevel=2)
        return None
