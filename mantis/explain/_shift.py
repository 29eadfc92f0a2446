"""A per-object shift score: how unlike the training set a galaxy's embedding and inputs are.

At the end of training a compact reference is stored beside the checkpoint
(``<ckpt stem>.shift.npz``, read with ``allow_pickle=False``): the L2-normalised penultimate
embeddings of a seeded subsample of the training split, the mean and shrunk precision of the
raw embeddings, the standardised input features of the same objects (``_inputs.py``: aperture
photometry, colours, concentration, noise and coverage of every band the network reads; then
``_morphology.py``: size, concentration and S/N on the native PS1 cutouts), the scores of every
validation object, and the field part's training positions and features (``_field.py``).
The reference also holds, for each survey training withholds (``modality_dropout``), that
share of the objects with the survey withheld: the network handles a missing survey, so it is
no shift (the envelope part skips bands without data). Prediction then adds

* ``shift_score``: with ``score: combined`` (``configs/shift.yaml``) the larger of the
  embedding score (distance to the k-th nearest reference embedding, Sun et al. 2022, or the
  Mahalanobis distance to the training mean: ``method``) and the input score (the larger of
  an ``envelope`` part, how far outside the training range any band's brightness lies, and a
  ``density`` part, the local outlier factor among the standardised training input
  features named by ``density_columns``), each part scaled so that its validation median is 0
  and its validation 99th percentile 1; ``score: sum`` adds the two scaled parts instead (an
  object a little unusual in both ranks above one unusual in one only; with ``method:
  mahalanobis``, the default, chosen on an independent sky realisation, docs/benchmarks.md);
  ``embedding`` or ``input`` keep one part;
* ``shift_pvalue``: ``(1 + #{validation scores >= score}) / (1 + n_val)``, a conformal p-value
  that is uniform for objects drawn like the validation split (the validation objects are not
  in the reference, so their scores are distributed like those of new in-distribution objects),
  once the whole catalogue is predicted Bonferroni-combined with ``field_shift_pvalue`` (the
  test of the object's sky cell, `FieldReference`): `combined_pvalue`;
* ``shifted``: ``shift_pvalue < alpha``.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mantis.config import load_config
from mantis.exceptions import ConfigError
from mantis.explain._field import FieldReference
from mantis.explain._inputs import input_features
from mantis.explain._morphology import native_morphology

__all__ = [
    "SHIFT_COLUMNS",
    "SHIFT_METHODS",
    "SHIFT_SCORES",
    "ShiftReference",
    "measure_inputs",
    "reference_path",
    "settings_of",
    "weights_fingerprint",
]

SHIFT_COLUMNS = ("shift_score", "shift_pvalue", "shifted", "field_shift_pvalue")
SHIFT_METHODS = ("knn", "mahalanobis")
SHIFT_SCORES = ("embedding", "input", "combined", "sum")
_FORMAT_VERSION = 3  # 2: input features and the combined score; 3: morphology, field part


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


def settings_of(overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """``configs/shift.yaml`` with ``overrides`` laid over it, checked.

    Raises
    ------
    ConfigError
        If a setting is out of its allowed range.
    """
    settings = {**load_config("shift"), **(overrides or {})}
    if settings["method"] not in SHIFT_METHODS:
        raise ConfigError(
            f"shift method {settings['method']!r} is not allowed; use one of {SHIFT_METHODS}"
        )
    if settings["score"] not in SHIFT_SCORES:
        raise ConfigError(
            f"shift score {settings['score']!r} is not allowed; use one of {SHIFT_SCORES}"
        )
    if not 0.0 < float(settings["alpha"]) < 1.0:
        raise ConfigError(f"shift alpha must lie in (0, 1), got {settings['alpha']!r}")
    nside = settings.get("field_nside", 64)
    if not isinstance(nside, int) or nside < 1 or nside & (nside - 1):
        raise ConfigError(f"shift field_nside must be a power of two >= 1, got {nside!r}")
    for key in ("k", "reference_size", "field_min_objects"):
        if int(settings[key]) != settings[key] or settings[key] < 1:
            raise ConfigError(f"shift {key} must be an integer >= 1, got {settings[key]!r}")
    return settings


def measure_inputs(
    arrays: dict[str, np.ndarray],
    groups: list[str],
    noise: np.ndarray,
    morphology_scale: float | None = None,
) -> np.ndarray:
    """`input_features` of ``groups``, then (given its pixel scale) the ``ps1`` morphology.

    `native_morphology` of the ``ps1`` group is appended when ``morphology_scale`` (arcsec per
    pixel) is given; arrays without a ``ps1`` group read as objects without PS1 data.
    """
    features = input_features(arrays, groups, *noise)
    if morphology_scale is None:
        return features
    if "ps1/image" in arrays:
        image, valid = arrays["ps1/image"], arrays["ps1/valid"]
        morphology = native_morphology(image, valid, float(morphology_scale))
    else:
        empty = np.zeros((len(features), 1, 2, 2))
        morphology = native_morphology(empty, empty.astype(bool), 1.0)
    return np.concatenate([features, morphology], axis=1)


def _normalise(embeddings: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
    return (embeddings / np.maximum(norms, 1e-12)).astype(np.float32)


def _standardise(features: np.ndarray, centre: np.ndarray, scale: np.ndarray) -> np.ndarray:
    return ((np.asarray(features, dtype=np.float64) - centre) / scale).astype(np.float32)


def _kth_distance(index: Any, points: np.ndarray) -> np.ndarray:
    distances, _ = index.kneighbors(points)
    return distances[:, -1].astype(np.float64)


_LOF_NEIGHBOURS = 20  # the density part's neighbourhood (local outlier factor)
_VALID_OFFSET = 4  # input_features: mag, core, concentration, log_noise, valid per band
_VAL_KINDS = (*SHIFT_METHODS, "envelope", "density", "input", "combined")


def _knn_index(reference: np.ndarray, k: int) -> Any:
    from sklearn.neighbors import NearestNeighbors

    return NearestNeighbors(n_neighbors=k).fit(reference)


@dataclass
class ShiftReference:
    """Training embeddings, input features and validation scores behind the shift score.

    Two components are scored: the network's penultimate embedding (`score`) and input-level
    features of the arrays it reads (`input_score`, see ``mantis/explain/_inputs.py``).
    ``meta['score']`` says which one ``shift_score`` holds: ``embedding``, ``input``,
    ``combined`` or ``sum`` (`combine`: the larger, or the sum, of the two, each scaled by its
    validation median and 99th percentile).

    Attributes
    ----------
    reference : ndarray, shape (n_ref, d)
        L2-normalised training embeddings.
    mean, precision : ndarray
        Mean ``(d,)`` and Ledoit-Wolf shrunk precision ``(d, d)`` of the raw embeddings.
    inputs : ndarray, shape (n_ref, f)
        Standardised input features of the same training objects.
    input_centre, input_scale : ndarray, shape (f,)
        Median and standard deviation (floored at 0.01) of the training input features.
    noise : ndarray, shape (2, n_bands)
        Typical pixel and aperture noise of each band (`band_noise_levels`).
    val_scores : dict of str to ndarray
        Validation scores under ``knn``, ``mahalanobis``, ``input`` and ``combined`` (the
        two parts combined as ``meta['score']`` says: the sum for ``sum``, else the larger).
    meta : dict
        ``k``, ``method`` (of the embedding part), ``score``, ``n_train``, ``fingerprint``
        (weights), ``layer``, ``groups``, and where the native PS1 morphology is measured
        ``morphology_scale`` (arcsec per pixel) and the field part's ``locus_columns``.
    field : FieldReference or None
        The field-level test (`field_pvalues`); None without PS1 morphology.
    """

    reference: np.ndarray
    mean: np.ndarray
    precision: np.ndarray
    inputs: np.ndarray
    input_centre: np.ndarray
    input_scale: np.ndarray
    noise: np.ndarray
    envelope_columns: np.ndarray
    val_scores: dict[str, np.ndarray]
    meta: dict[str, Any]
    field: FieldReference | None = None

    def __post_init__(self) -> None:
        self._index: dict[str, Any] = {}

    @classmethod
    def fit(
        cls,
        train: np.ndarray,
        val: np.ndarray,
        train_inputs: np.ndarray,
        val_inputs: np.ndarray,
        *,
        noise: np.ndarray,
        k: int,
        method: str,
        score: str = "combined",
        envelope_columns: np.ndarray | None = None,
        field: FieldReference | None = None,
        **meta: Any,
    ) -> ShiftReference:
        """Build the reference from training and validation embeddings and input features.

        ``train_inputs`` and ``val_inputs`` are raw `input_features` computed with ``noise``;
        ``envelope_columns`` (default: all) are those the envelope part ranks (``mag``).
        """
        from sklearn.covariance import LedoitWolf

        if len(train) < 2 or len(val) == 0:
            raise ConfigError(
                f"the shift reference needs at least 2 training and 1 validation objects; got "
                f"{len(train)} and {len(val)}"
            )
        k = min(int(k), len(train) - 1)  # tiny smoke datasets
        lw = LedoitWolf().fit(train.astype(np.float64))
        train_inputs = np.asarray(train_inputs, dtype=np.float64)
        centre = np.median(train_inputs, axis=0)
        scale = np.maximum(train_inputs.std(axis=0), 0.01)  # constant features stay finite
        ref = cls(
            _normalise(train),
            lw.location_.astype(np.float64),
            lw.precision_.astype(np.float64),
            _standardise(train_inputs, centre, scale),
            centre,
            scale,
            np.asarray(noise, dtype=np.float64),
            np.arange(train_inputs.shape[1])
            if envelope_columns is None
            else np.asarray(envelope_columns, dtype=np.int64),
            {},
            {"k": int(k), "method": method, "score": score, **meta},
            field,
        )
        ref.val_scores = {m: ref.score(val, m) for m in SHIFT_METHODS}
        ref.val_scores |= ref.input_parts(np.asarray(val_inputs, dtype=np.float64))
        ref.val_scores["input"] = ref.input_score(val_inputs)
        ref.val_scores["combined"] = ref.combine(ref.val_scores[method], ref.val_scores["input"])
        return ref

    @property
    def kind(self) -> str:
        """The validation scores ``shift_score`` is ranked against (`pvalue`'s default)."""
        score = self.meta.get("score", "embedding")
        if score == "embedding":
            return self.meta["method"]
        return "combined" if score == "sum" else score

    def score(self, embeddings: np.ndarray, method: str | None = None) -> np.ndarray:
        """Embedding scores (larger = less like the training set) of ``(n, d)`` embeddings."""
        method = method or self.meta["method"]
        embeddings = np.asarray(embeddings, dtype=np.float32)
        if len(embeddings) == 0:
            return np.zeros(0)
        if method == "knn":
            if "knn" not in self._index:
                self._index["knn"] = _knn_index(self.reference, int(self.meta["k"]))
            return _kth_distance(self._index["knn"], _normalise(embeddings))
        centred = embeddings.astype(np.float64) - self.mean
        return np.sqrt(np.einsum("ij,jk,ik->i", centred, self.precision, centred))

    def _envelope(self, standard: np.ndarray) -> np.ndarray:
        """How far outside the training range of any brightness feature (rank, then excess).

        A band without data (its ``valid`` feature, four columns after ``mag``, below one
        half) is skipped, in the object and in the reference: a missing survey is no shift.
        """
        columns = self.envelope_columns
        if "envelope" not in self._index:
            covered = self._covered(self.inputs, columns)
            self._index["envelope"] = [
                np.sort(self.inputs[covered[:, j], c]) for j, c in enumerate(columns)
            ]
        scores = np.zeros(len(standard))
        covered = self._covered(standard, columns)
        for j, ranked in enumerate(self._index["envelope"]):
            x, n = standard[:, columns[j]], len(ranked)
            if n == 0:
                continue
            below = np.searchsorted(ranked, x, "right")
            above = n - np.searchsorted(ranked, x, "left")
            tail = -np.log((np.minimum(below, above) + 1.0) / (n + 1.0))
            # beyond the training range the rank saturates; the excess (in standard deviations)
            excess = np.maximum(np.maximum(ranked[0] - x, x - ranked[-1]), 0.0)
            scores = np.maximum(scores, np.where(covered[:, j], tail + excess, 0.0))
        return scores

    def _covered(self, standard: np.ndarray, columns: np.ndarray) -> np.ndarray:
        """Whether the band of each ``mag`` column holds data (its ``valid`` at least 1/2)."""
        valid = columns + _VALID_OFFSET
        if valid.max(initial=-1) >= standard.shape[1]:  # not input_features columns
            return np.ones((len(standard), len(columns)), dtype=bool)
        raw = standard[:, valid] * self.input_scale[valid] + self.input_centre[valid]
        return raw >= 0.5

    def _density(self, standard: np.ndarray) -> np.ndarray:
        """Local outlier factor among the training inputs (larger = sparser).

        Only the ``density_columns`` of the meta count (default: every feature).
        """
        columns = self.meta.get("density_columns")
        columns = slice(None) if columns is None else np.asarray(columns, dtype=np.int64)
        if "density" not in self._index:
            from sklearn.neighbors import LocalOutlierFactor

            k = min(_LOF_NEIGHBOURS, len(self.inputs) - 1)
            self._index["density"] = LocalOutlierFactor(n_neighbors=k, novelty=True)
            self._index["density"].fit(self.inputs[:, columns])
        return -self._index["density"].score_samples(standard[:, columns]).astype(np.float64)

    def input_parts(self, features: np.ndarray) -> dict[str, np.ndarray]:
        """Score raw input ``features`` by ``envelope`` and ``density``.

        ``envelope``: brightness outside the training range (rank in the rarer tail, then
        the excess beyond it); ``density``: local outlier factor in the standardised input
        features named by ``density_columns`` (all by default).
        """
        standard = _standardise(features, self.input_centre, self.input_scale)
        if len(standard) == 0:
            return {"envelope": np.zeros(0), "density": np.zeros(0)}
        return {"envelope": self._envelope(standard), "density": self._density(standard)}

    def input_score(self, features: np.ndarray) -> np.ndarray:
        """Score raw input ``features``: the larger of the scaled `input_parts`."""
        parts = self.input_parts(np.asarray(features, dtype=np.float64))
        return np.maximum(*(self._scaled(kind, scores) for kind, scores in parts.items()))

    def _scaled(self, kind: str, scores: np.ndarray) -> np.ndarray:
        low, high = np.percentile(self.val_scores[kind], [50, 99])
        return (np.asarray(scores, dtype=np.float64) - low) / max(high - low, 1e-12)

    def combine(self, embedding_scores: np.ndarray, input_scores: np.ndarray) -> np.ndarray:
        """Combine the two parts: the larger (the sum with ``score: sum``) after scaling each.

        Each part's validation median maps to 0 and its validation 99th percentile to 1, so
        neither part's units dominate.
        """
        embedding = self._scaled(self.meta["method"], embedding_scores)
        inputs = self._scaled("input", input_scores)
        if self.meta.get("score") == "sum":
            return embedding + inputs
        return np.maximum(embedding, inputs)

    def features(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        """Raw input features of build ``arrays`` (`input_features` with this noise).

        With ``morphology_scale`` in the meta, `native_morphology` of the ``ps1`` group
        follows (no-data values where the arrays hold no ``ps1`` group).
        """
        groups = list(self.meta["groups"])
        return measure_inputs(arrays, groups, self.noise, self.meta.get("morphology_scale"))

    def field_pvalues(
        self, ra: np.ndarray, dec: np.ndarray, features: np.ndarray, *, seed: int = 0
    ) -> np.ndarray:
        """``field_shift_pvalue`` of a catalogue's objects (`FieldReference`; NaN: untested).

        ``features`` are `features` of the objects at ``ra``, ``dec`` (degrees).
        """
        if self.field is None or len(ra) == 0:
            return np.full(len(ra), np.nan)
        return self.field.pvalues(ra, dec, *self.field_inputs(features), seed=seed)

    def field_inputs(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``log_size``, ``snr`` and PS1 magnitudes (NaN without data) from `features`."""
        features = np.asarray(features, dtype=np.float64)
        locus = np.asarray(self.meta["locus_columns"], dtype=np.int64)
        mags = features[:, locus].copy()
        mags[features[:, locus + _VALID_OFFSET] < 0.5] = np.nan
        return features[:, -3], features[:, -1], mags

    def shift_scores(self, embeddings: np.ndarray, features: np.ndarray) -> np.ndarray:
        """``shift_score`` of objects: the component named by ``meta['score']`` or both."""
        score = self.meta.get("score", "embedding")
        if score == "input":
            return self.input_score(features)
        embedding = self.score(embeddings)
        if score == "embedding":
            return embedding
        return self.combine(embedding, self.input_score(features))

    def pvalue(self, scores: np.ndarray, method: str | None = None) -> np.ndarray:
        """Conformal p-values: the share of validation objects scoring at least as high.

        ``method`` names the validation scores (``knn``, ``mahalanobis``, ``input``,
        ``combined``); by default those of ``shift_score`` (`kind`).
        """
        val = np.sort(self.val_scores[method or self.kind])
        at_least = len(val) - np.searchsorted(val, np.asarray(scores), side="left")
        return (1.0 + at_least) / (1.0 + len(val))

    @staticmethod
    def combined_pvalue(object_pvalue: np.ndarray, field_pvalue: np.ndarray) -> np.ndarray:
        """Bonferroni min-p of the object and field p-values (the object's alone where NaN).

        ``min(1, 2 min(p_object, p_field))`` is at most ``alpha`` with probability at most
        ``alpha`` for in-distribution objects, whatever the dependence of the two parts.
        """
        object_pvalue = np.asarray(object_pvalue, dtype=np.float64)
        field_pvalue = np.asarray(field_pvalue, dtype=np.float64)
        both = np.minimum(1.0, 2.0 * np.fmin(object_pvalue, field_pvalue))
        return np.where(np.isfinite(field_pvalue), both, object_pvalue)

    def save(self, path: str | os.PathLike) -> Path:
        """Write an ``.npz`` (no pickled objects) atomically."""
        path = Path(path)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
        arrays = {f"val_{m}": v for m, v in self.val_scores.items()}
        meta = {**self.meta, "format_version": _FORMAT_VERSION}
        if self.field is not None:
            arrays |= {f"field_{name}": getattr(self.field, name) for name in _FIELD_ARRAYS}
            meta |= {"field_nside": self.field.nside, "field_min_objects": self.field.min_objects}
        meta = json.dumps(meta, sort_keys=True)
        np.savez(
            tmp,
            **{name: getattr(self, name) for name in _ARRAYS},
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
            If the file is not a readable shift reference of this format.
        """
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                if meta.get("format_version") != _FORMAT_VERSION:
                    raise ValueError(
                        f"format {meta.get('format_version')}, expected {_FORMAT_VERSION}; refit "
                        "it with `mantis explain --reference-only`"
                    )
                val = {m: data[f"val_{m}"] for m in _VAL_KINDS}
                field = None
                if "field_nside" in meta:
                    field = FieldReference(
                        *(data[f"field_{name}"] for name in _FIELD_ARRAYS),
                        nside=int(meta["field_nside"]),
                        min_objects=int(meta["field_min_objects"]),
                    )
                return cls(*(data[name] for name in _ARRAYS), val, meta, field)
        except (OSError, KeyError, ValueError) as err:
            raise ConfigError(f"shift reference {str(path)!r} is unreadable: {err}") from None


_ARRAYS = (
    "reference",
    "mean",
    "precision",
    "inputs",
    "input_centre",
    "input_scale",
    "noise",
    "envelope_columns",
)
_FIELD_ARRAYS = ("ra", "dec", "log_size", "snr", "residuals", "mags")
