"""A ceiling for any per-object shift score (`bench_shift.py --ceiling`).

A supervised classifier (histogram gradient boosting) learns to tell one shifted set from the
in-distribution set on the very inputs the score sees: the input features, the embeddings, or
both. Its out-of-fold AUROC (stratified 5-fold cross-validation) estimates how separable the
two populations are on those inputs; an unsupervised score, which never sees a shifted object,
cannot separate them better (up to the estimate's own noise). Nothing is written but numbers.

`support_share` says why a set may not be separable: the share of its objects whose true r
magnitude and redshift lie inside the training sample's range, and inside a cell of that plane
(0.5 mag by 0.05 in z) holding at least `DENSE_CELL` training objects.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

FOLDS = 5
DENSE_CELL = 5
MAG_STEP, Z_STEP = 0.5, 0.05


def out_of_fold_auroc(inside: np.ndarray, shifted: np.ndarray, seed: int = 0) -> float:
    """Out-of-fold AUROC of a gradient-boosted classifier separating ``shifted`` rows."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    x = np.concatenate([inside, shifted]).astype(np.float64)
    y = np.r_[np.zeros(len(inside)), np.ones(len(shifted))]
    model = HistGradientBoostingClassifier(max_iter=200, learning_rate=0.05, random_state=seed)
    folds = StratifiedKFold(FOLDS, shuffle=True, random_state=seed)
    proba = cross_val_predict(model, x, y, cv=folds, method="predict_proba")[:, 1]
    return float(roc_auc_score(y, proba))


def ceilings(rows: dict, sets: tuple[str, ...], inside: str) -> dict[str, dict[str, float]]:
    """Per set, the out-of-fold AUROC on ``input``, ``embedding`` and ``both``.

    ``rows[name]`` starts with (embeddings, input features), as `bench_shift.py` holds them.
    """
    emb_in, feats_in = rows[inside][:2]
    out = {}
    for name in sets:
        emb, feats = rows[name][:2]
        out[name] = {
            "input": out_of_fold_auroc(feats_in, feats),
            "embedding": out_of_fold_auroc(emb_in, emb),
            "both": out_of_fold_auroc(np.c_[emb_in, feats_in], np.c_[emb, feats]),
        }
    return out


def support_share(train: pd.DataFrame, shifted: pd.DataFrame) -> dict[str, float]:
    """Share of ``shifted`` inside the training (``mag_r``, ``z``) range and its dense cells."""
    mag, z = shifted["mag_r"].to_numpy(), shifted["z"].to_numpy()
    t_mag, t_z = train["mag_r"].to_numpy(), train["z"].to_numpy()
    in_box = (mag >= t_mag.min()) & (mag <= t_mag.max()) & (z >= t_z.min()) & (z <= t_z.max())
    cells = pd.Series(list(zip(*_cells(t_mag, t_z), strict=True))).value_counts()
    counts = np.array([cells.get(c, 0) for c in zip(*_cells(mag, z), strict=True)])
    return {
        "n": len(shifted),
        "inside_range": float(in_box.mean()),
        "inside_dense_cells": float(np.mean(counts >= DENSE_CELL)),
        "train_r_range": [float(t_mag.min()), float(t_mag.max())],
        "train_z_range": [float(t_z.min()), float(t_z.max())],
    }


def _cells(mag: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.floor(mag / MAG_STEP).astype(int), np.floor(z / Z_STEP).astype(int)
