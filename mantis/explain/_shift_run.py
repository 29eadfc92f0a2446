"""The shift score applied: fitting the reference from a dataset, scoring prediction chunks.

`fit_shift_reference` embeds and measures a seeded training subsample and the validation split
of the dataset a checkpoint was trained on and stores a `ShiftReference` beside it;
`ShiftScorer` adds ``shift_score``, ``shift_pvalue`` and ``shifted`` to prediction chunks;
`shift_calibration` measures the flag rate on a held-out split.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from mantis.exceptions import ConfigError
from mantis.explain._inputs import band_noise_levels, input_features, magnitude_columns
from mantis.explain._shift import (
    ShiftReference,
    reference_path,
    settings_of,
    weights_fingerprint,
)
from mantis.stack import DatasetReader

__all__ = [
    "ShiftScorer",
    "describe_rows",
    "embed_rows",
    "ensure_shift_reference",
    "fit_shift_reference",
    "read_rows",
    "shift_calibration",
    "shift_note",
]

_log = logging.getLogger(__name__)


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
    return describe_rows(module, h5_path, rows)[0]


def describe_rows(
    module: Any,
    h5_path: str | os.PathLike,
    rows: np.ndarray,
    noise: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings and (given the band ``noise`` levels) raw input features of dataset ``rows``.

    Returns
    -------
    embeddings : ndarray, shape (n, d)
    features : ndarray, shape (n, f)
        ``(n, 0)`` without ``noise``.
    """
    from mantis.explain._embed import embed_arrays

    embeddings, features = [], []
    for start in range(0, len(rows), 512):
        arrays = read_rows(h5_path, module.groups, rows[start : start + 512])
        embeddings.append(embed_arrays(module, arrays))
        if noise is not None:
            features.append(input_features(arrays, module.groups, *noise))
    if not embeddings:
        return np.zeros((0, 0), np.float32), np.zeros((0, 0))
    if noise is None:
        return np.concatenate(embeddings), np.zeros((len(rows), 0))
    return np.concatenate(embeddings), np.concatenate(features)


def _withheld_variants(
    module: Any,
    h5_path: str | os.PathLike,
    rows: np.ndarray,
    noise: np.ndarray,
    rng: np.random.Generator,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Embeddings and input features of reference objects with one survey withheld.

    Training withholds each survey of ``modality_dropout`` from a share ``p`` of the objects;
    the network handles those, so the reference holds them too: for each such survey a seeded
    share ``p`` of ``rows`` with its pixels and masks zeroed (as the occlusion does).
    """
    from mantis.explain._embed import embed_arrays
    from mantis.explain._occlusion import withhold_bands
    from mantis.surveys import bands_of

    variants = []
    for survey_name, share in sorted(getattr(module, "modality_dropout", {}).items()):
        count = round(float(share) * len(rows))
        chosen = np.sort(rng.choice(rows, size=count, replace=False))
        bands = [band.name for band in bands_of(survey_name)]
        for start in range(0, count, 512):
            arrays = read_rows(h5_path, module.groups, chosen[start : start + 512])
            arrays = withhold_bands(arrays, module.spec, bands)
            variants.append(
                (embed_arrays(module, arrays), input_features(arrays, module.groups, *noise))
            )
    return variants


def fit_shift_reference(
    checkpoint: str | os.PathLike,
    dataset: str | os.PathLike,
    *,
    settings: dict[str, Any] | None = None,
) -> Path:
    """Embed and measure the training subsample and validation split; write the reference.

    Parameters
    ----------
    checkpoint : path-like
        A `mantis train` checkpoint.
    dataset : path-like
        The dataset it was trained on (``catalog/split`` says which rows are which).
    settings : dict, optional
        Overrides of ``configs/shift.yaml`` (``k``, ``method``, ``score``,
        ``reference_size``, ``seed``).

    Returns
    -------
    Path
        The reference file, `reference_path` of ``checkpoint``.
    """
    from mantis.models import load_predictor

    settings = settings_of(settings)
    module = load_predictor(checkpoint).module
    train_rows = _split_rows(dataset, "train")
    val_rows = _split_rows(dataset, "val")
    if len(val_rows) == 0:
        raise ConfigError(f"dataset {str(dataset)!r} has no validation split for the shift score")
    rng = np.random.default_rng(int(settings["seed"]))
    size = min(int(settings["reference_size"]), len(train_rows))
    chosen = np.sort(rng.choice(train_rows, size=size, replace=False))
    # the typical noise of each band, from at most 1000 of the chosen objects
    sample = read_rows(dataset, module.groups, np.sort(rng.permutation(chosen)[:1000]))
    noise = np.stack(band_noise_levels(sample, module.groups))
    train_emb, train_inputs = describe_rows(module, dataset, chosen, noise)
    for embeddings, features in _withheld_variants(module, dataset, chosen, noise, rng):
        train_emb = np.concatenate([train_emb, embeddings])
        train_inputs = np.concatenate([train_inputs, features])
    val_emb, val_inputs = describe_rows(module, dataset, val_rows, noise)
    reference = ShiftReference.fit(
        train_emb,
        val_emb,
        train_inputs,
        val_inputs,
        noise=noise,
        k=int(settings["k"]),
        method=settings["method"],
        score=settings["score"],
        n_train=len(train_rows),
        fingerprint=weights_fingerprint(module),
        layer="net.head.net.1",
        groups=list(module.groups),
        envelope_columns=magnitude_columns(sample, module.groups),
    )
    return reference.save(reference_path(checkpoint))


def _is_current(path: Path, checkpoint: str | os.PathLike) -> bool:
    from mantis.models import load_predictor

    try:
        stored = ShiftReference.load(path).meta.get("fingerprint")
    except ConfigError:  # an older format: refit
        return False
    return stored == weights_fingerprint(load_predictor(checkpoint).module)


def ensure_shift_reference(checkpoint: str | os.PathLike, dataset: str | os.PathLike) -> Path:
    """Return the checkpoint's shift reference, fitting it first if it is missing or stale."""
    path = reference_path(checkpoint)
    if path.is_file() and _is_current(path, checkpoint):
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
        settings = settings_of()
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

        scores = self.reference.shift_scores(
            embed_arrays(self.module, arrays), self.reference.features(arrays)
        )
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

    settings = settings_of()
    reference = ShiftReference.load(ensure_shift_reference(checkpoint, dataset))
    module = load_predictor(checkpoint).module
    rows = _split_rows(dataset, split)
    scores = reference.shift_scores(*describe_rows(module, dataset, rows, reference.noise))
    pvalues = reference.pvalue(scores)
    alpha, n = float(settings["alpha"]), len(pvalues)
    sigma = float(np.sqrt(alpha * (1.0 - alpha) / max(n, 1)))
    rate = float(np.mean(pvalues < alpha)) if n else float("nan")
    return {
        "method": reference.meta["method"],
        "score": reference.meta["score"],
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
        f"Shift score ({c['score']}, {c['method']}): {c['n_flagged']} of {c['n']} {c['split']} "
        f"objects flagged "
        f"at p < {c['alpha']:g} (rate {c['flag_rate']:.4f}, expected {c['alpha']:g} ± "
        f"{2 * c['sigma']:.4f} at 2σ: {verdict}); at p < 0.05: {c['flag_rate_p05']:.3f}, at "
        f"p < 0.1: {c['flag_rate_p10']:.3f}. Explanations (`mantis explain`): explain/explain.html."
    )
