"""`mantis explain` as a library call: occlusion, attributions and CKA, written as a report."""

from __future__ import annotations

import json
import os
import time
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np

from mantis.exceptions import MantisError
from mantis.explain._cka import linear_cka_matrix
from mantis.explain._document import Section, write_document
from mantis.explain._embed import collect_layers
from mantis.explain._occlusion import aperture_mag, occlusion_study
from mantis.explain._shift_run import read_rows
from mantis.stack import DatasetReader
from mantis.surveys import SURVEY_NAMES, bands_of

__all__ = ["ExplainError", "explain_run", "network_layers"]

# A survey counts as used when withholding it raises the mean CRPS by more than this fraction.
USED_CRPS_INCREASE = 0.02


class ExplainError(MantisError):
    """A bad argument of `explain_run` (missing file, unknown split, bad count)."""


def network_layers(module: Any) -> dict[str, Any]:
    """Name the blocks of every encoder in depth order, then the head's hidden layer and logits."""
    net = module.net
    encoders = {"early": net.encoder} if hasattr(net, "encoder") else dict(net.encoders.items())
    layers = {}
    for group, encoder in encoders.items():
        blocks = encoder.body if hasattr(encoder, "body") else encoder
        for i, block in enumerate(blocks.children()):
            layers[f"{group}.{i}"] = block
    layers["head.hidden"] = net.head.hidden_layer
    layers["head.logits"] = net.head.logits_layer
    return layers


def _check(checkpoint, dataset, split, compare, shifted, counts) -> None:
    paths = [("checkpoint", checkpoint), ("dataset", dataset), ("--compare", compare)]
    paths += [(f"--shifted {name}", path) for name, path in shifted.items()]
    for label, path in paths:
        if path is not None and not Path(path).is_file():
            raise ExplainError(f"{label} {str(path)!r} does not exist")
    if split not in ("train", "val", "test"):
        raise ExplainError(f"split must be 'train', 'val' or 'test', got {split!r}")
    for name, value in counts.items():
        if int(value) != value or value < 4:
            raise ExplainError(f"{name} must be an integer >= 4, got {value!r}")


def _rows(dataset: Path, split: str, limit: int) -> tuple[np.ndarray, np.ndarray]:
    with DatasetReader(dataset) as reader:
        z = np.asarray(reader.catalog(["z"])["z"], dtype=np.float64)
        rows = reader.rows(split)
    rows = rows[np.isfinite(z[rows])]
    if len(rows) < 4:
        raise ExplainError(
            f"the {split} split of {str(dataset)!r} has {len(rows)} objects with "
            "a redshift; explain needs at least 4"
        )
    rows = rows[np.linspace(0, len(rows) - 1, min(limit, len(rows))).astype(int)]
    return np.unique(rows), z


def _fmt(value: float, digits: int = 4) -> str:
    return "nan" if not np.isfinite(value) else f"{value:+.{digits}f}"


def _occlusion_section(study: dict, out: Path) -> tuple[Section, dict[str, bool]]:
    from mantis.explain._plots import plot_heatmap

    base = study["baseline"]["all"]
    names = list(study["withheld"])
    rows = [
        [
            name,
            ", ".join(v["bands"]),
            _fmt(v["all"]["d_nmad"]),
            _fmt(v["all"]["d_eta"], 3),
            _fmt(v["all"]["d_crps"]),
        ]
        for name, v in study["withheld"].items()
    ]
    z_edges, m_edges = study["edges"]["z"], study["edges"]["mag"]
    z_cols = [f"{a:.2f}-{b:.2f}" for a, b in pairwise(z_edges)]
    m_cols = [f"{a:.1f}-{b:.1f}" for a, b in pairwise(m_edges)]
    panels = [
        (
            "ΔCRPS, withheld × z slice",
            [[s["d_crps"] for s in study["withheld"][n]["z"]] for n in names],
            names,
            z_cols,
        ),
        (
            "ΔNMAD, withheld × z slice",
            [[s["d_nmad"] for s in study["withheld"][n]["z"]] for n in names],
            names,
            z_cols,
        ),
        (
            "ΔCRPS, withheld × r slice",
            [[s["d_crps"] for s in study["withheld"][n]["mag"]] for n in names],
            names,
            m_cols,
        ),
    ]
    plot_heatmap(panels, out / "occlusion_heatmap.png", cmap="RdBu_r", symmetric=True)
    used = {
        s: study["withheld"][s]["all"]["d_crps"] > USED_CRPS_INCREASE * base["crps"]
        for s in SURVEY_NAMES
        if s in study["withheld"]
    }
    verdict = "; ".join(
        f"{s}: {'used' if u else 'IGNORED'} (CRPS {_fmt(study['withheld'][s]['all']['d_crps'])})"
        for s, u in used.items()
    )
    section = Section(
        "Occlusion: bands and surveys withheld",
        [
            f"Intact inputs: NMAD {base['nmad']:.4f}, η {base['eta']:.3f}, CRPS "
            f"{base['crps']:.4f} on {base['n']} objects. Each row withholds a band or a survey "
            "(pixels and valid mask zeroed, as the network sees missing coverage); Δ = withheld "
            "minus intact, so positive numbers mean the network needed what was taken away.",
            f"Surveys (used = CRPS rises by more than {USED_CRPS_INCREASE:.0%}): {verdict}.",
        ],
        [("Withheld band or survey", ["withheld", "bands", "ΔNMAD", "Δη (>0.15)", "ΔCRPS"], rows)],
        [
            (
                "ΔCRPS and ΔNMAD per withheld band/survey in redshift and r-magnitude slices",
                "occlusion_heatmap.png",
            )
        ],
    )
    return section, used


def _binned_shares(values, shares, n_bins=5):
    edges = np.quantile(values[np.isfinite(values)], np.linspace(0, 1, n_bins + 1))
    index = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, n_bins - 1)
    centres = np.array([np.nanmedian(values[index == i]) for i in range(n_bins)])
    return centres, {
        b: np.array(
            [np.mean(s[index == i]) if np.any(index == i) else np.nan for i in range(n_bins)]
        )
        for b, s in shares.items()
    }


def _attribution_section(module, spec, arrays, z, mag, n_steps, n_examples, out) -> tuple:
    from mantis.explain._attribution import attribute, band_attributions
    from mantis.explain._occlusion import channel_bands
    from mantis.explain._plots import plot_attribution_examples, plot_shares

    result = attribute(module, arrays, target="mean", n_steps=n_steps)
    per_band = band_attributions(result["maps"], spec)
    magnitude = np.abs(np.stack(list(per_band.values()), axis=1))
    total = np.maximum(magnitude.sum(axis=1, keepdims=True), 1e-30)
    shares = {b: magnitude[:, i] / total[:, 0] for i, b in enumerate(per_band)}
    change = result["output"] - result["baseline_output"]
    rel = np.abs(result["delta"]) / np.maximum(np.abs(change), 1e-12)
    bins = np.clip(module.zgrid.bin_index(z), 0, module.zgrid.n_bins - 1)
    n_bin = min(32, len(z))
    true_bin = attribute(
        module,
        {k: v[:n_bin] for k, v in arrays.items()},
        target="bin",
        target_bins=bins[:n_bin],
        n_steps=n_steps,
    )
    bin_bands = np.abs(np.stack(list(band_attributions(true_bin["maps"], spec).values()), 1))
    bin_shares = bin_bands / np.maximum(bin_bands.sum(axis=1, keepdims=True), 1e-30)
    plot_shares(
        [
            ("spectroscopic z", *_binned_shares(z, shares)),
            ("r aperture magnitude", *_binned_shares(mag, shares)),
        ],
        out / "attribution_share.png",
    )
    examples = []
    groups = channel_bands(spec)
    for i in np.linspace(0, len(z) - 1, min(n_examples, len(z))).astype(int):
        maps = {}
        for g, names in groups.items():
            a = result["maps"][g][i]
            for c, name in enumerate(names):
                maps[name] = a[c] + a[len(names) + c]
        examples.append((f"z={z[i]:.2f} r={mag[i]:.1f}", maps))
    plot_attribution_examples(examples, out / "attribution_examples.png")
    survey_share = {
        s: float(sum(np.mean(shares[b.name]) for b in bands_of(s) if b.name in shares))
        for s in SURVEY_NAMES
    }
    rows = [
        [b, f"{np.mean(shares[b]):.3f}", f"{np.mean(bin_shares[:, i]):.3f}"]
        for i, b in enumerate(per_band)
    ]
    section = Section(
        "Attributions: integrated gradients",
        [
            f"Integrated gradients (captum, {n_steps} Gauss-Legendre steps) of the density mean "
            f"E[z] on {len(z)} objects and of the probability in the true redshift bin on "
            f"{n_bin}, with respect to the stretched inputs, from the baseline 'same coverage, "
            "no light' (data channels zero, valid masks as observed: the networks read masks as "
            "switches, which a path must not cross). A band's attribution is that of its data "
            "channel; its share is |attribution| over the sum of |attribution| of all bands.",
            f"Completeness: median |Σ attributions − (f(x) − f(baseline))| / |f(x) − "
            f"f(baseline)| = {np.median(rel):.1e} (90th percentile {np.quantile(rel, 0.9):.1e}).",
            "Share per survey (E[z]): "
            + ", ".join(f"{s} {v:.2f}" for s, v in survey_share.items())
            + ".",
        ],
        [("Mean attribution share per band", ["band", "E[z]", "p(true bin)"], rows)],
        [
            ("Attribution share per band against redshift and magnitude", "attribution_share.png"),
            (
                "Example attribution maps (E[z]; red raises the mean redshift)",
                "attribution_examples.png",
            ),
        ],
    )
    summary = {
        "shares": {b: float(np.mean(s)) for b, s in shares.items()},
        "true_bin_shares": {b: float(np.mean(bin_shares[:, i])) for i, b in enumerate(per_band)},
        "survey_shares": survey_share,
        "completeness_median": float(np.median(rel)),
    }
    return section, summary


def _layer_features(module, arrays) -> tuple[list[str], list[np.ndarray]]:
    layers = network_layers(module)
    features = collect_layers(module, arrays, layers)
    return list(layers), [features[name] for name in layers]


def _adjacent(matrix: np.ndarray) -> np.ndarray:
    return np.array([matrix[i, i + 1] for i in range(len(matrix) - 1)])


def _cka_section(module, arrays, compare, dataset, rows, shifted, out) -> tuple:
    from mantis.explain._plots import plot_heatmap, plot_profiles

    names, feats = _layer_features(module, arrays)
    within = linear_cka_matrix(feats)
    panels = [("CKA between layers (this network)", within, names, names)]
    summary: dict[str, Any] = {"layers": names, "within": within.tolist()}
    paragraphs = [
        "Linear CKA with the debiased HSIC (Nguyen, Raghu & Kornblith 2021) between the "
        "spatially averaged outputs of every block, on the same objects."
    ]
    if compare is not None:
        from mantis.models import load_predictor

        other = load_predictor(compare)
        other_arrays = read_rows(dataset, other.module.groups, rows) | {
            "catalog/ebv": arrays["catalog/ebv"]
        }
        other_names, other_feats = _layer_features(other.module, other_arrays)
        cross = linear_cka_matrix(feats, other_feats)
        panels.append((f"CKA: this network × {Path(compare).name}", cross, names, other_names))
        summary["compare"] = {"layers": other_names, "cka": cross.tolist()}
    plot_heatmap(panels, out / "cka_layers.png", cmap="viridis", annotate=False)
    figures = [("CKA between layers, and against the other fusion network", "cka_layers.png")]
    if shifted:
        curves = {"in-distribution": _adjacent(within)}
        to_last = {"in-distribution": within[:, names.index("head.hidden")]}
        for name, path in shifted.items():
            with DatasetReader(path) as reader:
                n = reader.n_written
            pick = np.unique(np.linspace(0, n - 1, min(n, len(rows))).astype(int))
            _, s_feats = _layer_features(module, read_rows(path, module.groups, pick))
            s_matrix = linear_cka_matrix(s_feats)
            curves[name] = _adjacent(s_matrix)
            to_last[name] = s_matrix[:, names.index("head.hidden")]
        labels = [f"{a}→{b}" for a, b in pairwise(names)]
        plot_profiles(
            [
                ("CKA of adjacent layers", labels, curves),
                ("CKA of each layer with the penultimate layer", names, to_last),
            ],
            out / "cka_shift_profiles.png",
        )
        figures.append(
            (
                "CKA layer profiles, in-distribution against each shifted set",
                "cka_shift_profiles.png",
            )
        )
        means = {k: float(np.nanmean(v)) for k, v in curves.items()}
        summary["shift_profiles"] = {k: v.tolist() for k, v in curves.items()}
        summary["shift_to_penultimate"] = {k: v.tolist() for k, v in to_last.items()}
        paragraphs.append(
            "Mean adjacent-layer CKA (lower = the representation changes more from layer to "
            "layer): " + ", ".join(f"{k} {v:.3f}" for k, v in means.items()) + "."
        )
    return Section("Representation similarity (linear CKA)", paragraphs, [], figures), summary


def explain_run(
    checkpoint: str | os.PathLike,
    dataset: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    split: str = "test",
    compare: str | os.PathLike | None = None,
    shifted: dict[str, str | os.PathLike] | None = None,
    max_objects: int = 1000,
    attribution_objects: int = 96,
    n_steps: int = 32,
    n_examples: int = 3,
) -> dict[str, Any]:
    """Write ``explain.md``, ``explain.html``, ``explain.json`` and figures into ``out_dir``.

    Parameters
    ----------
    checkpoint : path-like
        A `mantis train` checkpoint.
    dataset : path-like
        Its dataset; the objects of ``split`` with a redshift are explained.
    out_dir : path-like
        Output folder (created).
    split : {'test', 'val', 'train'}
        Which objects.
    compare : path-like, optional
        A second checkpoint (the other fusion) for the CKA between the two networks.
    shifted : dict of str to path-like, optional
        Named datasets of shifted objects for the CKA layer profiles.
    max_objects, attribution_objects : int
        Objects for occlusion and CKA; the first of these (evenly spread) for the attributions.
    n_steps : int
        Integrated-gradient steps.
    n_examples : int
        Galaxies whose attribution maps are drawn.

    Returns
    -------
    dict
        The content of ``explain.json`` (the numbers behind every table and figure).
    """
    from mantis.models import load_predictor

    shifted = dict(shifted or {})
    dataset, out = Path(dataset), Path(out_dir)
    counts = {
        "max_objects": max_objects,
        "attribution_objects": attribution_objects,
        "n_steps": n_steps,
    }
    _check(checkpoint, dataset, split, compare, shifted, counts)
    start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    predictor = load_predictor(checkpoint)
    module, spec = predictor.module, predictor.spec
    rows, z_all = _rows(dataset, split, int(max_objects))
    arrays = read_rows(dataset, sorted(set(module.groups) | {"early"}), rows)
    z = z_all[rows]
    with DatasetReader(dataset) as reader:
        early_bands = [str(b) for b in reader.attrs["bands"]]
    mag = aperture_mag(arrays["early/image"], early_bands)
    model_arrays = {
        k: v for k, v in arrays.items() if k.split("/")[0] in module.groups or k == "catalog/ebv"
    }
    study = occlusion_study(predictor, model_arrays, z, mag)
    occ_section, used = _occlusion_section(study, out)
    pick = np.unique(
        np.linspace(0, len(rows) - 1, min(int(attribution_objects), len(rows))).astype(int)
    )
    sub = {k: v[pick] for k, v in model_arrays.items()}
    att_section, attributions = _attribution_section(
        module, spec, sub, z[pick], mag[pick], int(n_steps), int(n_examples), out
    )
    cka_section, cka = _cka_section(module, model_arrays, compare, dataset, rows, shifted, out)
    seconds = time.perf_counter() - start
    title = f"mantis explain: {Path(checkpoint).name} on {dataset.name} ({split})"
    intro = Section(
        "Summary",
        [
            f"{len(rows)} {split} objects ({spec['fusion']} fusion, network "
            f"{module.hparams['net']}); surveys used: "
            f"{', '.join(s for s, u in used.items() if u) or 'none'}; ignored: "
            f"{', '.join(s for s, u in used.items() if not u) or 'none'}. "
            f"Written in {seconds:.0f} s.",
        ],
    )
    write_document(out, title, [intro, occ_section, att_section, cka_section])
    result = {
        "checkpoint": str(checkpoint),
        "dataset": str(dataset),
        "split": split,
        "n_objects": len(rows),
        "seconds": round(seconds, 1),
        "surveys_used": used,
        "occlusion": study,
        "attributions": attributions,
        "cka": cka,
    }
    tmp = out / ".explain.json.tmp"
    tmp.write_text(json.dumps(result, indent=1, default=float))
    tmp.replace(out / "explain.json")
    return result
