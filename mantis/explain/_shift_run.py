"""The shift score applied: fitting the reference from a dataset, scoring prediction chunks.

`fit_shift_reference` embeds and measures a seeded training subsample and the validation split
of the dataset a checkpoint was trained on and stores a `ShiftReference` beside it;
`ShiftScorer` adds ``shift_score``, ``shift_pvalue`` and ``shifted`` to prediction chunks and,
once the catalogue is complete, the field part (``field_shift_pvalue``);
`shift_calibration` measures the flag rate on a held-out split.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from mantis.exceptions import ConfigError
from mantis.explain._embed import penultimate_layer
from mantis.explain._field import FieldReference, locus_residuals
from mantis.explain._inputs import band_noise_levels, colour_columns, magnitude_columns
from mantis.explain._shift import (
    _VALID_OFFSET,
    ShiftReference,
    measure_inputs,
    reference_path,
    settings_of,
    weights_fingerprint,
)
from mantis.stack import DatasetReader
from mantis.surveys import bands_of, survey

__all__ = [
    "FIELD_INPUT_PREFIX",
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


def _groups_read(module: Any, morphology_scale: float | None) -> list[str]:
    """List the network's image groups, and ``ps1`` where the native morphology is measured."""
    extra = ["ps1"] if morphology_scale is not None and "ps1" not in module.groups else []
    return [*module.groups, *extra]


def embed_rows(module: Any, h5_path: str | os.PathLike, rows: np.ndarray) -> np.ndarray:
    """Penultimate embeddings of dataset ``rows``, read 512 at a time."""
    return describe_rows(module, h5_path, rows)[0]


def describe_rows(
    module: Any,
    h5_path: str | os.PathLike,
    rows: np.ndarray,
    noise: np.ndarray | None = None,
    morphology_scale: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings and (given the band ``noise`` levels) raw input features of dataset ``rows``.

    With ``morphology_scale`` the features end with the native PS1 morphology
    (`measure_inputs`).

    Returns
    -------
    embeddings : ndarray, shape (n, d)
    features : ndarray, shape (n, f)
        ``(n, 0)`` without ``noise``.
    """
    from mantis.explain._embed import embed_arrays

    embeddings, features = [], []
    groups = _groups_read(module, morphology_scale)
    for start in range(0, len(rows), 512):
        arrays = read_rows(h5_path, groups, rows[start : start + 512])
        embeddings.append(embed_arrays(module, arrays))
        if noise is not None:
            features.append(measure_inputs(arrays, module.groups, noise, morphology_scale))
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
    morphology_scale: float | None,
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
            groups = _groups_read(module, morphology_scale)
            arrays = read_rows(h5_path, groups, chosen[start : start + 512])
            arrays = withhold_bands(arrays, module.spec, bands)
            features = measure_inputs(arrays, module.groups, noise, morphology_scale)
            variants.append((embed_arrays(module, arrays), features))
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
    scale = _morphology_scale(module, dataset)
    train_emb, train_inputs = describe_rows(module, dataset, chosen, noise, scale)
    field = None
    locus = _ps1_magnitude_columns(module, sample)
    if scale is not None and len(locus) >= 2:
        field = _field_reference(dataset, chosen, train_inputs, locus, settings)
    for embeddings, features in _withheld_variants(module, dataset, chosen, noise, rng, scale):
        train_emb = np.concatenate([train_emb, embeddings])
        train_inputs = np.concatenate([train_inputs, features])
    val_emb, val_inputs = describe_rows(module, dataset, val_rows, noise, scale)
    reference = ShiftReference.fit(
        train_emb,
        val_emb,
        train_inputs,
        val_inputs,
        noise=noise,
        k=int(settings["k"]),
        method=settings["method"],
        score=settings["score"],
        field=field,
        n_train=len(train_rows),
        fingerprint=weights_fingerprint(module),
        layer=next(n for n, m in module.named_modules() if m is penultimate_layer(module)),
        groups=list(module.groups),
        envelope_columns=magnitude_columns(sample, module.groups),
        morphology_scale=scale,
        locus_columns=[int(c) for c in locus],
        density_columns=_density_columns(sample, module, locus, train_inputs.shape[1], scale),
    )
    return reference.save(reference_path(checkpoint))


def _morphology_scale(module: Any, dataset: str | os.PathLike) -> float | None:
    """Arcsec per pixel of the dataset's native ``ps1`` group (None: it has none)."""
    with DatasetReader(dataset) as reader:
        if "ps1/image" not in reader:
            return None
    grids = module.spec.get("grids", {})
    return float(grids["ps1"]["pixel_scale"]) if "ps1" in grids else survey("ps1").pixel_scale


def _ps1_magnitude_columns(module: Any, sample: dict[str, np.ndarray]) -> np.ndarray:
    """Return the `input_features` columns of the PS1 bands' ``mag`` (in band order)."""
    from mantis.explain._occlusion import channel_bands

    names = [name for group in module.groups for name in channel_bands(module.spec)[group]]
    columns = magnitude_columns(sample, module.groups)
    ps1 = {band.name for band in bands_of("ps1")}
    return np.array([c for c, name in zip(columns, names, strict=True) if name in ps1], int)


def _density_columns(
    sample: dict[str, np.ndarray],
    module: Any,
    locus: np.ndarray,
    n_features: int,
    scale: float | None,
) -> list[int] | None:
    """Features of the density part: colours, the PS1 r magnitude and the native morphology.

    Without the native morphology the density part reads every feature, as before.
    """
    if scale is None or len(locus) < 2:
        return None
    r_mag = [int(locus[1])]  # PS1 g r i z y: r, the band magnitudes are quoted in
    morphology = [n_features - 3, n_features - 2]  # log_size, concentration
    return [*map(int, colour_columns(sample, module.groups)), *r_mag, *morphology]


def _field_reference(
    dataset: str | os.PathLike,
    rows: np.ndarray,
    features: np.ndarray,
    locus: np.ndarray,
    settings: dict[str, Any],
) -> FieldReference:
    """Build the field test's reference: training objects' positions and field features."""
    with DatasetReader(dataset) as reader:
        catalog = reader.catalog(["ra", "dec"])
    mags = features[:, locus].copy()
    has_data = np.all(features[:, locus + _VALID_OFFSET] >= 0.5, axis=1)
    keep = has_data & (features[:, -1] > 0)
    mags = mags[keep]
    return FieldReference(
        np.asarray(catalog["ra"])[rows][keep],
        np.asarray(catalog["dec"])[rows][keep],
        features[keep, -3],
        features[keep, -1],
        locus_residuals(mags, mags, leave_one_out=True),
        mags.astype(np.float32),
        nside=int(settings["field_nside"]),
        min_objects=int(settings["field_min_objects"]),
    )


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
        """Return the `SHIFT_COLUMNS` of ``n_rows``, and the field part's inputs.

        ``shift_pvalue`` and ``shifted`` are the object part's here and ``field_shift_pvalue``
        NaN: the field part needs the whole catalogue (`with_field_part`). The field inputs are
        columns named ``_field_*`` (`FIELD_INPUT_PREFIX`), dropped by `with_field_part`.
        """
        nan = np.full(n_rows, np.nan)
        has_field = self.reference is not None and self.reference.field is not None
        if self.reference is None or not n_rows:
            out = {
                "shift_score": nan,
                "shift_pvalue": nan.copy(),
                "shifted": np.zeros(n_rows, dtype=bool),
                "field_shift_pvalue": nan.copy(),
            }
            if has_field:
                n_mags = self.reference.field.mags.shape[1]
                out |= {name: nan.copy() for name in _field_input_names(n_mags)}
            return out
        from mantis.explain._embed import embed_arrays

        features = self.reference.features(arrays)
        scores = self.reference.shift_scores(embed_arrays(self.module, arrays), features)
        pvalues = self.reference.pvalue(scores)
        out = {
            "shift_score": scores,
            "shift_pvalue": pvalues,
            "shifted": pvalues < self.alpha,
            "field_shift_pvalue": nan,
        }
        if has_field:
            log_size, snr, mags = self.reference.field_inputs(features)
            values = [log_size, snr, *mags.T]
            out |= dict(zip(_field_input_names(mags.shape[1]), values, strict=True))
        return out

    def with_field_part(self, frame: Any) -> Any:
        """Fill ``field_shift_pvalue`` of a whole catalogue and fold it into ``shift_pvalue``.

        Parameters
        ----------
        frame : pandas.DataFrame
            The catalogue's rows with ``ra``, ``dec``, ``valid``, the `SHIFT_COLUMNS` and the
            ``_field_*`` inputs of `columns`.

        Returns
        -------
        pandas.DataFrame
            ``frame`` without the ``_field_*`` columns; ``field_shift_pvalue`` set where the
            object's cell was tested, ``shift_pvalue`` the Bonferroni combination of the
            object and field p-values (`ShiftReference.combined_pvalue`), ``shifted`` redone.
        """
        hidden = [c for c in frame.columns if str(c).startswith(FIELD_INPUT_PREFIX)]
        out = frame.drop(columns=hidden)
        if self.reference is None or self.reference.field is None or not hidden:
            return out
        n_mags = self.reference.field.mags.shape[1]
        names = _field_input_names(n_mags)
        valid = np.asarray(frame["valid"], dtype=bool)
        inputs = frame.loc[valid, names].to_numpy(dtype=np.float64)
        field = np.full(len(frame), np.nan)
        field[valid] = self.reference.field.pvalues(
            frame.loc[valid, "ra"].to_numpy(dtype=np.float64),
            frame.loc[valid, "dec"].to_numpy(dtype=np.float64),
            inputs[:, 0],
            inputs[:, 1],
            inputs[:, 2:],
        )
        combined = self.reference.combined_pvalue(out["shift_pvalue"].to_numpy(float), field)
        out["field_shift_pvalue"] = field
        out["shift_pvalue"] = combined
        out["shifted"] = valid & (combined < self.alpha)
        return out
        valid = np.asarray(frame["valid"], dtype=bool)
        values = frame.loc[valid, :].assign(**{c: None for c in []})
        inputs = np.column_stack([np.asarray(values_of, dtype=np.float64) for values_of in []])
        del values, inputs
        return frame


FIELD_INPUT_PREFIX = "_field_"


def _field_input_names(n_mags: int) -> list[str]:
    """Names of the field part's per-object inputs in prediction parts."""
    mags = [f"{FIELD_INPUT_PREFIX}mag{i}" for i in range(n_mags)]
    return [f"{FIELD_INPUT_PREFIX}log_size", f"{FIELD_INPUT_PREFIX}snr", *mags]


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
        (``sqrt(alpha (1 - alpha) / n)``), ``within_2sigma``, the flag rates at
        p < 0.05 and p < 0.1, and ``n_field_tested``: objects whose cell the field part
        tested (the split taken as one catalogue; their ``shift_pvalue`` is combined).
    """
    from mantis.models import load_predictor

    settings = settings_of()
    reference = ShiftReference.load(ensure_shift_reference(checkpoint, dataset))
    module = load_predictor(checkpoint).module
    rows = _split_rows(dataset, split)
    scale = reference.meta.get("morphology_scale")
    embeddings, features = describe_rows(module, dataset, rows, reference.noise, scale)
    pvalues = reference.pvalue(reference.shift_scores(embeddings, features))
    field = np.full(len(rows), np.nan)
    if reference.field is not None:  # the split as one catalogue: its cells are tested
        with DatasetReader(dataset) as reader:
            catalog = reader.catalog(["ra", "dec"])
        positions = (np.asarray(catalog["ra"])[rows], np.asarray(catalog["dec"])[rows])
        field = reference.field_pvalues(*positions, features)
        pvalues = reference.combined_pvalue(pvalues, field)
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
        "n_field_tested": int(np.isfinite(field).sum()),
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
        f"p < 0.1: {c['flag_rate_p10']:.3f}; the field part tested the cells of "
        f"{c.get('n_field_tested', 0)} of them. Explanations (`mantis explain`): "
        "explain/explain.html."
    )
