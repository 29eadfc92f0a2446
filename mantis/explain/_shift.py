"""A per-object shift score: how far a galaxy's embedding lies from the training set's.

At the end of training a compact reference is stored beside the checkpoint
(``<ckpt stem>.shift.npz``, read with ``allow_pickle=False``): the L2-normalised penultimate
embeddings of a seeded subsample of the training split, the mean and shrunk precision of the
raw embeddings, and the scores of every validation object. Prediction then adds

* ``shift_score``: the distance to the k-th nearest reference embedding (Sun et al. 2022) or
  the Mahalanobis distance to the training mean (``method`` in ``configs/shift.yaml``);
* ``shift_pvalue``: ``(1 + #{validation scores >= score}) / (1 + n_val)``, a conformal p-value
  that is uniform for objects drawn like the validation split;
* ``shifted``: ``shift_pvalue < alpha``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mantis.config import load_config
from mantis.exceptions import ConfigError
from mantis.stack import DatasetReader

__all__ = [
    "SHIFT_COLUMNS",
    "SHIFT_METHODS",
    "ShiftReference",
    "ShiftScorer",
    "ensure_shift_reference",
    "fit_shift_reference",
    "reference_path",
    "shift_calibration",
    "shift_note",
    "weights_fingerprint",
]

SHIFT_COLUMNS = ("shift_score", "shift_pvalue", "shifted")
SHIFT_METHODS = ("knn", "mahalanobis")
_FORMAT_VERSION = 1
_log = logging.getLogger(__name__)


def reference_path(checkpoint: str | os.PathLike) -> Path:
    """``<dir>/<stem>.shift.npz`` beside ``checkpoint``."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(f"{checkpoint.stem}.shift.npz")


def weights_fingerprint(module: Any) -> str:
    """SHA-256 of the network's weights (stable when only the calibration is rewritten)."""
    digest = hashlib.sha256()
    for name, value in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _settings(overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    settings = {**load_config("shift"), **(overrides or {})}
    if settings["method"] not in SHIFT_METHODS:
        raise ConfigError(
            f"shift method {settings['method']!r} is not allowed; use one of {SHIFT_METHODS}"
        )
    if not 0.0 < float(settings["alpha"]) < 1.0:
        raise ConfigError(f"shift alpha must lie in (0, 1), got {settings['alpha']!r}")
    for key in ("k", "reference_size"):
        if int(settings[key]) != settings[key] or settings[key] < 1:
            raise ConfigError(f"shift {key} must be an integer >= 1, got {settings[key]!r}")
    return settings


def _normalise(embeddings: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
    return (embeddings / np.maximum(norms, 1e-12)).astype(np.float32)


@dataclass
class ShiftReference:
    """Training embeddings and validation scores that turn an embedding into a shift score.

    Attributes
    ----------
    reference : ndarray, shape (n_ref, d)
        L2-normalised training embeddings.
    mean, precision : ndarray
        Mean ``(d,)`` and Ledoit-Wolf shrunk precision ``(d, d)`` of the raw embeddings.
    val_scores : dict of str to ndarray
        Scores of the validation objects under each method.
    meta : dict
        ``k``, ``method``, ``n_train``, ``fingerprint`` (weights) and ``layer``.
    """

    reference: np.ndarray
    mean: np.ndarray
    precision: np.ndarray
    val_scores: dict[str, np.ndarray]
    meta: dict[str, Any]

    def __post_init__(self) -> None:
        self._index = None

    @classmethod
    def fit(
        cls, train: np.ndarray, val: np.ndarray, *, k: int, method: str, **meta: Any
    ) -> ShiftReference:
        """Build the reference from training and validation embeddings."""
        from sklearn.covariance import LedoitWolf

        if len(train) < 2 or len(val) == 0:
            raise ConfigError(
                f"the shift reference needs at least 2 training and 1 validation objects; got "
                f"{len(train)} and {len(val)}"
            )
        k = min(int(k), len(train) - 1)  # tiny smoke datasets
        lw = LedoitWolf().fit(train.astype(np.float64))
        ref = cls(
            _normalise(train),
            lw.location_.astype(np.float64),
            lw.precision_.astype(np.float64),
            {},
            {"k": int(k), "method": method, **meta},
        )
        ref.val_scores = {m: ref.score(val, m) for m in SHIFT_METHODS}
        return ref

    def score(self, embeddings: np.ndarray, method: str | None = None) -> np.ndarray:
        """Shift scores (larger = less like the training set) of ``(n, d)`` embeddings."""
        method = method or self.meta["method"]
        embeddings = np.asarray(embeddings, dtype=np.float32)
        if len(embeddings) == 0:
            return np.zeros(0)
        if method == "knn":
            if self._index is None:
                from sklearn.neighbors import NearestNeighbors

                self._index = NearestNeighbors(n_neighbors=int(self.meta["k"]))
                self._index.fit(self.reference)
            distances, _ = self._index.kneighbors(_normalise(embeddings))
            return distances[:, -1].astype(np.float64)
        centred = embeddings.astype(np.float64) - self.mean
        return np.sqrt(np.einsum("ij,jk,ik->i", centred, self.precision, centred))

    def pvalue(self, scores: np.ndarray, method: str | None = None) -> np.ndarray:
        """Conformal p-values: the share of validation objects scoring at least as high."""
        val = np.sort(self.val_scores[method or self.meta["method"]])
        at_least = len(val) - np.searchsorted(val, np.asarray(scores), side="left")
        return (1.0 + at_least) / (1.0 + len(val))

    def save(self, path: str | os.PathLike) -> Path:
        """Write an ``.npz`` (no pickled objects) atomically."""
        path = Path(path)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
        arrays = {f"val_{m}": v for m, v in self.val_scores.items()}
        meta = json.dumps({**self.meta, "format_version": _FORMAT_VERSION}, sort_keys=True)
        np.savez(
            tmp,
            reference=self.reference,
            mean=self.mean,
            precision=self.precision,
            meta=np.array(meta),
            **arrays,
        )
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> ShiftReference:
        """Read a reference written by `save`.

        Raises
        ------
        ConfigError
            If the file is not a readable shift reference.
        """
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                val = {m: data[f"val_{m}"] for m in SHIFT_METHODS}
                return cls(data["reference"], data["mean"], data["precision"], val, meta)
        except (OSError, KeyError, ValueError) as err:
            raise ConfigError(f"shift reference {str(path)!r} is unreadable: {err}") from None


def _split_rows(h5_path: str | os.PathLike, split: str) -> np.ndarray:
    with DatasetReader(h5_path) as reader:
        return reader.rows(split)


def read_rows(
    h5_path: str | os.PathLike, groups: list[str], rows: np.ndarray
) -> dict[str, np.ndarray]:
    """Build arrays (images, masks, E(B-V)) of ``rows`` (sorted) of a dataset."""
    with DatasetReader(h5_path) as reader:
        return reader.read(["catalog/ebv", *groups], np.asarray(rows))


def embed_rows(module: Any, h5_path: str | os.PathLike, rows: np.ndarray) -> np.ndarray:
    """Penultimate embeddings of dataset ``rows``, read 512 at a time."""
    from mantis.explain._embed import embed_arrays

    pieces = [np.zeros((0, 0), np.float32)]
    for start in range(0, len(rows), 512):
        arrays = read_rows(h5_path, module.groups, rows[start : start + 512])
        pieces.append(embed_arrays(module, arrays))
    return np.concatenate(pieces[1:]) if len(pieces) > 1 else pieces[0]


def fit_shift_reference(
    checkpoint: str | os.PathLike,
    dataset: str | os.PathLike,
    *,
    settings: dict[str, Any] | None = None,
) -> Path:
    """Embed the training subsample and validation split; write the reference beside the model.

    Parameters
    ----------
    checkpoint : path-like
        A `mantis train` checkpoint.
    dataset : path-like
        The dataset it was trained on (``catalog/split`` says which rows are which).
    settings : dict, optional
        Overrides of ``configs/shift.yaml`` (``k``, ``method``, ``reference_size``, ``seed``).

    Returns
    -------
    Path
        The reference file, `reference_path` of ``checkpoint``.
    """
    from mantis.models import load_predictor

    settings = _settings(settings)
    module = load_predictor(checkpoint).module
    train_rows = _split_rows(dataset, "train")
    val_rows = _split_rows(dataset, "val")
    if len(val_rows) == 0:
        raise ConfigError(f"dataset {str(dataset)!r} has no validation split for the shift score")
    rng = np.random.default_rng(int(settings["seed"]))
    size = min(int(settings["reference_size"]), len(train_rows))
    chosen = np.sort(rng.choice(train_rows, size=size, replace=False))
    reference = ShiftReference.fit(
        embed_rows(module, dataset, chosen),
        embed_rows(module, dataset, val_rows),
        k=int(settings["k"]),
        method=settings["method"],
        n_train=len(train_rows),
        fingerprint=weights_fingerprint(module),
        layer="net.head.net.1",
    )
    return reference.save(reference_path(checkpoint))


def ensure_shift_reference(checkpoint: str | os.PathLike, dataset: str | os.PathLike) -> Path:
    """Return the checkpoint's shift reference, fitting it first if it is missing or stale."""
    from mantis.models import load_predictor

    path = reference_path(checkpoint)
    if path.is_file():
        stored = ShiftReference.load(path).meta.get("fingerprint")
        if stored == weights_fingerprint(load_predictor(checkpoint).module):
            return path
    return fit_shift_reference(checkpoint, dataset)


class ShiftScorer:
    """Adds the shift columns to prediction chunks (NaN / False when no reference exists).

    Parameters
    ----------
    reference : ShiftReference or None
        The checkpoint's reference.
    module : RedshiftModule or None
        The network whose embeddings are scored.
    alpha : float
        ``shifted = shift_pvalue < alpha``.
    """

    def __init__(self, reference: ShiftReference | None, module: Any, alpha: float) -> None:
        self.reference = reference
        self.module = module
        self.alpha = float(alpha)

    @classmethod
    def for_checkpoint(cls, checkpoint: str | os.PathLike | None, predictor: Any) -> ShiftScorer:
        """Build the scorer of ``checkpoint`` (its ``.shift.npz``) for ``predictor``'s network."""
        settings = _settings()
        path = None if checkpoint is None else reference_path(checkpoint)
        module = getattr(predictor, "module", None)
        if path is None or not path.is_file() or module is None:
            _log.info("no shift reference beside %s: shift columns are NaN", checkpoint)
            return cls(None, None, settings["alpha"])
        reference = ShiftReference.load(path)
        if reference.meta.get("fingerprint") != weights_fingerprint(module):
            raise ConfigError(
                f"shift reference {str(path)!r} belongs to other weights than {str(checkpoint)!r}"
                "; refit it with `mantis explain --reference-only`"
            )
        return cls(reference, module, settings["alpha"])

    def columns(self, arrays: dict[str, np.ndarray] | None, n_rows: int) -> dict[str, np.ndarray]:
        """``shift_score``, ``shift_pvalue`` (float) and ``shifted`` (bool) for ``n_rows``."""
        if self.reference is None or not n_rows:
            nan = np.full(n_rows, np.nan)
            return {
                "shift_score": nan,
                "shift_pvalue": nan.copy(),
                "shifted": np.zeros(n_rows, dtype=bool),
            }
        from mantis.explain._embed import embed_arrays

        scores = self.reference.score(embed_arrays(self.module, arrays))
        pvalues = self.reference.pvalue(scores)
        return {"shift_score": scores, "shift_pvalue": pvalues, "shifted": pvalues < self.alpha}


def shift_calibration(
    checkpoint: str | os.PathLike, dataset: str | os.PathLike, split: str = "test"
) -> dict[str, Any]:
    """How often in-distribution objects of ``split`` are flagged, against ``alpha``.

    The reference is fitted first if the checkpoint has none. For objects drawn like the
    validation split the conformal p-value is uniform, so the flag rate is binomial with mean
    ``alpha``; the result says whether the measured rate lies within two standard deviations.

    Returns
    -------
    dict
        ``method``, ``alpha``, ``n``, ``n_flagged``, ``flag_rate``, ``sigma``
        (``sqrt(alpha (1 - alpha) / n)``), ``within_2sigma`` and the flag rates at
        p < 0.05 and p < 0.1.
    """
    from mantis.models import load_predictor

    settings = _settings()
    reference = ShiftReference.load(ensure_shift_reference(checkpoint, dataset))
    module = load_predictor(checkpoint).module
    scores = reference.score(embed_rows(module, dataset, _split_rows(dataset, split)))
    pvalues = reference.pvalue(scores)
    alpha, n = float(settings["alpha"]), len(pvalues)
    sigma = float(np.sqrt(alpha * (1.0 - alpha) / max(n, 1)))
    rate = float(np.mean(pvalues < alpha)) if n else float("nan")
    return {
        "method": reference.meta["method"],
        "k": int(reference.meta["k"]),
        "alpha": alpha,
        "split": split,
        "n": n,
        "n_flagged": int(np.sum(pvalues < alpha)),
        "flag_rate": rate,
        "sigma": sigma,
        "within_2sigma": bool(abs(rate - alpha) <= 2.0 * sigma),
        "flag_rate_p05": float(np.mean(pvalues < 0.05)) if n else float("nan"),
        "flag_rate_p10": float(np.mean(pvalues < 0.1)) if n else float("nan"),
    }


def shift_note(calibration: dict[str, Any]) -> str:
    """One report line on the shift score's calibration."""
    c = calibration
    verdict = "within" if c["within_2sigma"] else "OUTSIDE"
    return (
        f"Shift score ({c['method']}): {c['n_flagged']} of {c['n']} {c['split']} objects flagged "
        f"at p < {c['alpha']:g} (rate {c['flag_rate']:.4f}, expected {c['alpha']:g} ± "
        f"{2 * c['sigma']:.4f} at 2σ: {verdict}); at p < 0.05: {c['flag_rate_p05']:.3f}, at "
        f"p < 0.1: {c['flag_rate_p10']:.3f}. Explanations (`mantis explain`): explain/explain.html."
    )
