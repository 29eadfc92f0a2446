"""How well the shift score finds objects unlike the training set (docs/benchmarks.md).

Needs the early-fusion run of ``configs/bench_shift.yaml`` (``mantis pipeline --config
configs/bench_shift.yaml``: the default sky, early fusion only). Every shifted set is rendered
by the simulated sky, served by ``mantis sky serve`` (factories in ``scripts/shift_skies.py``),
fetched and built by the same code as ``mantis predict``, then predicted by `predict_catalog`
(which adds ``shift_score``, ``shift_pvalue``, ``shifted``):

(a) bright, low-z galaxies (r < 17, z < 0.1) of another realisation of the sky (seed 1);
(b) faint, high-z galaxies (r > 22.5, 1 < z < 1.6) of that realisation;
(c) the in-distribution test split with GALEX, or unWISE, withheld (pixels and masks zeroed);
(d) test objects served with PS1 seeing 1.5x worse, or with PS1 r 0.2 mag too faint;
(e) stars and quasar-like point sources (seed-1 sky plus `shift_skies.quasar_sources`).

``--realisation R`` (default 0, the sets above) draws every set from other skies, everything
else identical: (a), (b), (e) from sky seed 2R + 1, and for R >= 1 the in-distribution set
from sky seed 2R (as many spec-z objects as the run's test split, served, fetched and built
like the shifted sets) in place of the test split; (c) and (d) are then made of that set.
Realisation 1 chooses the score (`scripts/shift_variants.py`), realisation 0 measures it.

Prints a table and writes ``bench/results/shift.json`` (``shift-r<R>.json``); ``--explain``
also runs `mantis explain` on the run with the shifted sets for the CKA profiles (and times it).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(ROOT / "scripts"), str(ROOT), os.environ.get("PYTHONPATH", "")]
)
N_PER_SET = 300
OUTLIER = 0.15
TOP_FRACTION = 0.05
CONTAMINATION = 0.10  # the realistic mix: the test split plus this share of shifted objects
REALISTIC_FROM = {"a": ["a_bright_lowz"], "b": ["b_faint_highz"],
                  "d": ["d_seeing_x1.5", "d_offset_r_0.2"], "e": ["e_stars_quasars"]}  # fmt: skip


@dataclass(frozen=True)
class H5Source:
    """Arrays of catalogue rows read by id from a built dataset, optionally a survey withheld."""

    path: str
    withheld: tuple[str, ...] = ()
    index: dict = field(default_factory=dict, hash=False, compare=False)

    def arrays(self, chunk: pd.DataFrame) -> dict[str, np.ndarray]:
        from mantis.explain._occlusion import withhold_bands
        from mantis.surveys import bands_of

        with h5py.File(self.path, "r") as f:
            if not self.index:
                ids = np.asarray(f["catalog/id"][:]).astype(str)
                self.index.update({k: i for i, k in enumerate(ids)})
            rows = np.array([self.index[i] for i in chunk["id"].astype(str)])
            order = np.argsort(rows)
            arrays = {}
            keys = ["catalog/ebv", "catalog/has_galex", "catalog/has_ps1", "catalog/has_unwise"]
            keys += [
                f"{g}/{k}" for g in ("early", "galex", "ps1", "unwise") for k in ("image", "valid")
            ]
            for key in keys:
                value = f[key][np.sort(rows)]
                arrays[key] = value[np.argsort(order)]
        if self.withheld:
            bands = [b.name for s in self.withheld for b in bands_of(s)]
            arrays = withhold_bands(arrays, {"fusion": "early", "bands": _BANDS}, bands)
            for s in self.withheld:
                arrays[f"catalog/has_{s}"] = np.zeros(len(chunk), bool)
        return arrays


_BANDS = ["FUV", "NUV", "g", "r", "i", "z", "y", "W1", "W2"]


def _serve_fetch_build(name, catalog, sky, seed, work, cache):
    from mantis.fetch import fetch_catalog
    from mantis.sky.testing import running_server
    from mantis.stack import build_dataset

    h5 = work / f"{name}.h5"
    cat_path = work / f"{name}.parquet"
    catalog.to_parquet(cat_path, index=False)
    if not h5.is_file():
        with running_server(config=sky, seed=seed, workers=2) as url:
            summary = fetch_catalog(
                catalog, cache_dir=cache, endpoint=url, concurrency=16, progress=False
            )
            print(f"   {name}: fetch {summary.format() if hasattr(summary, 'format') else ''}")
        build_dataset(catalog, cache, h5, "build", progress=False)
    return cat_path, h5


def _predict(name, cat_path, source, ckpt, work):
    from mantis.explain import reference_path
    from mantis.predict import predict_catalog, read_predictions

    out = work / f"{name}.pred.parquet"
    if out.is_file() and out.stat().st_mtime > reference_path(ckpt).stat().st_mtime:
        return read_predictions(out)[0]  # predicted with this reference already
    out.unlink(missing_ok=True)
    predict_catalog(cat_path, out, checkpoint=ckpt, source=source, progress=False)
    return read_predictions(out)[0]


def _point_summary(delta):
    if len(delta) == 0:
        return {"n": 0, "nmad": float("nan"), "eta": float("nan")}
    nmad = 1.4826 * np.median(np.abs(delta - np.median(delta)))
    return {"n": len(delta), "nmad": float(nmad), "eta": float(np.mean(np.abs(delta) > OUTLIER))}


def _removed_by_top(scores, delta, fraction=TOP_FRACTION):
    outlier = np.abs(delta) > OUTLIER
    if not outlier.any():
        return float("nan")
    top = np.argsort(-scores)[: round(fraction * len(scores))]
    return float(outlier[top].sum() / outlier.sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="runs/shift", help="pipeline run folder")
    parser.add_argument(
        "--work", default=None, help="scratch folder (default bench/shift, bench/shift-r<R>)"
    )
    parser.add_argument(
        "--realisation",
        type=int,
        default=0,
        help="which skies the sets come from: 0 the benchmark, 1 and up independent ones",
    )
    parser.add_argument("--explain", action="store_true", help="also run mantis explain")
    parser.add_argument(
        "--ceiling",
        action="store_true",
        help="also fit a supervised classifier per shifted set (scripts/shift_ceiling.py)",
    )
    parser.add_argument(
        "--prepare-only",
        action="store_true",
        help="only serve, fetch and build the sets (needs only the run's dataset)",
    )
    args = parser.parse_args()
    if args.realisation < 0:
        parser.error(f"--realisation must be an integer >= 0, got {args.realisation}")
    suffix = f"-r{args.realisation}" if args.realisation else ""
    args.work = args.work or f"bench/shift{suffix}"
    shifted_seed, id_seed = 2 * args.realisation + 1, 2 * args.realisation

    from shift_variants import CHOICE_SETS, choose, fit_variants
    from sklearn.metrics import roc_auc_score

    from mantis.config import load_config
    from mantis.explain import (
        ShiftReference,
        describe_rows,
        embed_arrays,
        ensure_shift_reference,
        explain_run,
        reference_path,
    )
    from mantis.models import load_predictor
    from mantis.sky import Universe

    run, work = ROOT / args.run, ROOT / args.work
    work.mkdir(parents=True, exist_ok=True)
    ckpt = run / "early" / "checkpoints" / "best.ckpt"
    data = run / "dataset.h5"
    if args.prepare_only and not data.is_file():
        sys.exit(f"{data} does not exist yet: build the run's dataset first")
    if not args.prepare_only and not (run / "early" / "finished.json").is_file():
        from mantis.pipeline import run_pipeline

        print(f"{run} has no finished early-fusion run: running configs/bench_shift.yaml")
        run_pipeline("bench_shift")  # the shipped mantis/configs/bench_shift.yaml
    t0 = time.perf_counter()
    if not args.prepare_only:
        ensure_shift_reference(ckpt, data)
    with h5py.File(data, "r") as f:
        split = np.asarray(f["catalog/split"][:]).astype(str)
        catalog = pd.DataFrame(
            {
                "id": np.asarray(f["catalog/id"][:]).astype(str),
                "ra": f["catalog/ra"][:],
                "dec": f["catalog/dec"][:],
                "z": f["catalog/z"][:],
            }
        )
    test = catalog[split == "test"].reset_index(drop=True)
    id_source = H5Source(str(data))
    if args.realisation:  # a spec-z sample of another sky stands in for the test split
        spec = Universe.from_config("default", seed=id_seed).spec_catalog()
        test = spec.sample(min(len(test), len(spec)), random_state=0).reset_index(drop=True)
        _, id_h5 = _serve_fetch_build(
            "test", test, "default", id_seed, work, work / f"cache-seed{id_seed}"
        )
        id_source = H5Source(str(id_h5))
    rng = np.random.default_rng(0)

    shifted_sky = Universe.from_config("default", seed=shifted_seed).sources
    from shift_skies import quasar_sources

    gal = shifted_sky[shifted_sky["kind"] == "galaxy"]
    sets = {
        "a_bright_lowz": gal[(gal["mag_r"] < 17.0) & (gal["z"] < 0.1)],
        "b_faint_highz": gal[(gal["mag_r"] > 22.5) & (gal["z"] > 1.0) & (gal["z"] < 1.6)],
        "e_stars_quasars": pd.concat(
            [
                shifted_sky[
                    (shifted_sky["kind"] == "star") & shifted_sky["mag_r"].between(16, 21.5)
                ].sample(N_PER_SET // 2, random_state=0),
                quasar_sources(shifted_sky, seed=shifted_seed).sample(
                    N_PER_SET // 2, random_state=0
                ),
            ]
        ),
    }
    for name in list(sets):
        frame = sets[name]
        frame = frame.sample(min(N_PER_SET, len(frame)), random_state=0)
        sets[name] = frame[["id", "ra", "dec", "z"]].reset_index(drop=True)
    degraded = test.iloc[np.sort(rng.choice(len(test), min(N_PER_SET, len(test)), False))]
    degraded = degraded.reset_index(drop=True)

    prepared = {}
    for name, frame in sets.items():
        prepared[name] = _serve_fetch_build(
            name,
            frame,
            "shift_skies:with_quasars",
            shifted_seed,
            work,
            work / f"cache-seed{shifted_seed}",
        )
    for name, factory in (("d_seeing_x1.5", "seeing"), ("d_offset_r_0.2", "offset_r")):
        prepared[name] = _serve_fetch_build(
            name, degraded, f"shift_skies:{factory}", id_seed, work, work / f"cache-{factory}"
        )
    test_path = work / "test.parquet"
    test.to_parquet(test_path, index=False)
    print(f"sets ready after {time.perf_counter() - t0:.0f} s")
    if args.prepare_only:
        return

    predictions = {"in-distribution test": _predict("test", test_path, id_source, ckpt, work)}
    for survey in ("galex", "unwise"):
        predictions[f"c_no_{survey}"] = _predict(
            f"c_no_{survey}", test_path, H5Source(id_source.path, (survey,)), ckpt, work
        )
    for name, (cat_path, h5) in prepared.items():
        predictions[name] = _predict(name, cat_path, H5Source(str(h5)), ckpt, work)

    # every variant from the same embeddings and input features, to choose the score
    configured = ShiftReference.load(ensure_shift_reference(ckpt, data))
    module = load_predictor(ckpt).module
    scale = configured.meta.get("morphology_scale")
    # the configured reference's own rows (survey-withheld ones included), raw features again
    train_inputs = configured.inputs * configured.input_scale + configured.input_centre
    train = (configured.reference, train_inputs)
    val = describe_rows(module, data, np.flatnonzero(split == "val"), configured.noise, scale)
    variants = fit_variants(configured, train, val)

    def described(name):
        if name == "in-distribution test" or name.startswith("c_no_"):
            source = H5Source(id_source.path, () if name.startswith("in") else (name[5:],))
            frame = test
        else:
            source, frame = H5Source(str(prepared[name][1])), sets.get(name, degraded)
        arrays = source.arrays(frame)
        if name.startswith("c_no_"):  # the withheld test split as a dataset, for the CKA
            _write_h5(work / f"{name}.h5", arrays, frame)
        return embed_arrays(module, arrays), configured.features(arrays)

    objects = {name: described(name) for name in predictions}
    # the predicted columns are the configured score and field part of the same objects
    test_pred = predictions["in-distribution test"]
    np.testing.assert_allclose(
        configured.shift_scores(*objects["in-distribution test"]),
        test_pred["shift_score"].to_numpy(),
        rtol=1e-5,
    )
    cache = {"train_emb": train[0], "train_in": train[1], "val_emb": val[0], "val_in": val[1]}
    results, variant_scores, rows = {}, {v: [] for v in variants}, {}
    for name, pred in predictions.items():
        ok = pred["valid"].to_numpy()
        delta = ((pred["z_median"] - pred["z"]) / (1 + pred["z"])).to_numpy()[ok]
        emb, feats = objects[name][0][ok], objects[name][1][ok]
        ra, dec = pred["ra"].to_numpy()[ok], pred["dec"].to_numpy()[ok]
        rows[name] = (emb, feats, ra, dec, delta)
        cache |= {f"{name}/emb": emb, f"{name}/in": feats, f"{name}/dz": delta}
        cache |= {f"{name}/ra": ra, f"{name}/dec": dec}
        scores = pred["shift_score"].to_numpy()[ok]
        pvalues = pred["shift_pvalue"].to_numpy()[ok]
        flagged = pred["shifted"].to_numpy()[ok]
        field = pred["field_shift_pvalue"].to_numpy()[ok]
        row = {
            "n": int(ok.sum()),
            "flag_rate": float(flagged.mean()),
            "field_tested": float(np.isfinite(field).mean()),
            "field_flag_rate": float(np.mean(field < 0.01)),
            "flagged": _point_summary(delta[flagged]),
            "unflagged": _point_summary(delta[~flagged]),
            "removed_top5": _removed_by_top(_rank_key(pvalues, scores), delta),
            "auroc": {},
            "flag_rate_variants": {},
        }
        for name_v, variant in variants.items():
            s_set = variant.scores(emb, feats)
            variant_scores[name_v].append(s_set)
            row["flag_rate_variants"][name_v] = float(np.mean(variant.pvalue(s_set) < 0.01))
        variant_scores.setdefault("combined + field (predicted)", []).append(
            _rank_key(pvalues, scores)
        )
        if name != "in-distribution test":
            for variant, per_set in variant_scores.items():
                s_id, s_set = per_set[0], per_set[-1]
                labels = np.r_[np.zeros(len(s_id)), np.ones(len(s_set))]
                row["auroc"][variant] = float(roc_auc_score(labels, np.r_[s_id, s_set]))
        results[name] = row
    np.savez(work / "described.npz", **cache)

    summary_mixes = {"all sets": _mixed(configured, variants, rows, dict.fromkeys(predictions))}
    draws = [_mixed(configured, variants, rows, _realistic_mix(rows, seed)) for seed in range(20)]
    summary_mixes["test + 10% shifted (seed 0)"] = draws[0]
    removed = np.array([d["removed_top5"] for d in draws])
    summary_mixes["test + 10% shifted, 20 seeds"] = {
        "removed_top5_mean": float(removed.mean()),
        "removed_top5_range": [float(removed.min()), float(removed.max())],
        "share_meeting_25": float(np.mean(removed >= 0.25)),
        "ceiling_mean": float(np.mean([d["ceiling"] for d in draws])),
        "outliers_mean": float(np.mean([d["outliers"] for d in draws])),
        "removed_top5_variants_mean": {
            v: float(np.mean([d["removed_top5_variants"][v] for d in draws])) for v in variants
        },
        "removed_top5_predicted_variants_mean": {
            v: float(np.mean([d["removed_top5_predicted_variants"][v] for d in draws]))
            for v in variants
        },
    }
    summary = {
        "results": results,
        "mixed": summary_mixes,
        "alpha": float(load_config("shift")["alpha"]),
        "reference": {k: configured.meta[k] for k in ("k", "method", "score")},
        "reference_bytes": reference_path(ckpt).stat().st_size,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    chosen, criteria = choose(summary)
    summary["choice"] = {"chosen": chosen, "criteria": criteria}
    if args.ceiling:
        from shift_ceiling import ceilings, support_share

        summary["ceiling"] = ceilings(rows, CHOICE_SETS, "in-distribution test")
        truth = pd.read_parquet(run / "catalog.truth.parquet")
        train_ids = set(catalog["id"][split == "train"])
        train_truth = truth[truth["id"].astype(str).isin(train_ids)]
        sources = shifted_sky.set_index("id")
        summary["support"] = {
            name: support_share(train_truth, sources.loc[sets[name]["id"], ["mag_r", "z"]])
            for name in ("a_bright_lowz", "b_faint_highz")
        }
    if args.explain:
        shifted = {name: str(work / f"{name}.h5") for name in ("c_no_galex", "c_no_unwise")}
        shifted |= {name: str(h5) for name, (_, h5) in prepared.items()}
        start = time.perf_counter()
        explain_run(ckpt, data, run / "early" / "explain", shifted=shifted)
        summary["explain_seconds"] = round(time.perf_counter() - start, 1)
    out = ROOT / "bench" / "results" / f"shift{suffix}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=1))
    _print_table(summary)
    print(f"chosen by the rule of scripts/shift_variants.py: {chosen}")
    for name, row in criteria.items():
        print(f"   {name}: " + ", ".join(f"{k} {v:.4f}" for k, v in row.items()))
    for name, row in summary.get("ceiling", {}).items():
        print(f"ceiling {name}: " + ", ".join(f"{k} {v:.3f}" for k, v in row.items()))
    for name, row in summary.get("support", {}).items():
        print(f"support {name}: {row}")


def _rank_key(pvalues, scores):
    """Order by the combined p-value, ties broken by the object score."""
    return -np.log(pvalues) + 1e-6 * np.asarray(scores)


def _realistic_mix(rows, seed=0):
    """The test split plus `CONTAMINATION` shifted objects drawn evenly from (a), (b), (d), (e)."""
    rng = np.random.default_rng(seed)
    n_test = len(rows["in-distribution test"][0])
    n_shifted = round(CONTAMINATION / (1 - CONTAMINATION) * n_test)
    picked = {"in-distribution test": None}
    per_group = n_shifted // len(REALISTIC_FROM)
    for names in REALISTIC_FROM.values():
        for i, name in enumerate(names):
            count = per_group // len(names) + (i < per_group % len(names))
            picked[name] = np.sort(rng.choice(len(rows[name][0]), count, replace=False))
    return picked


def _mixed(configured, variants, rows, picked):
    """Outliers removed by the top 5% of a mixed catalogue, per variant and with the field part.

    The field part is recomputed on the mixed catalogue itself (its cells hold every member).
    """
    parts = [[x if take is None else x[take] for x in rows[name]] for name, take in picked.items()]
    emb, feats, ra, dec, delta = (np.concatenate(x) for x in zip(*parts, strict=True))
    out = {"n": len(delta), "outliers": int(np.sum(np.abs(delta) > OUTLIER))}
    field = configured.field_pvalues(ra, dec, feats)
    out["removed_top5_variants"], out["removed_top5_predicted_variants"] = {}, {}
    for name, variant in variants.items():
        s_mix = variant.scores(emb, feats)
        p_mix = configured.combined_pvalue(variant.pvalue(s_mix), field)
        out["removed_top5_variants"][name] = _removed_by_top(s_mix, delta)
        ranked = _rank_key(p_mix, s_mix)
        out["removed_top5_predicted_variants"][name] = _removed_by_top(ranked, delta)
    scores = configured.shift_scores(emb, feats)
    pvalues = configured.combined_pvalue(configured.pvalue(scores), field)
    out["removed_top5"] = _removed_by_top(_rank_key(pvalues, scores), delta)
    out["field_tested"] = float(np.isfinite(field).mean())
    out["ceiling"] = min(1.0, round(TOP_FRACTION * len(delta)) / max(out["outliers"], 1))
    return out


def _write_h5(path, arrays, frame):
    """A dataset file of ``arrays`` (what `read_rows` and `mantis explain --shifted` read)."""
    tmp = path.with_name(f".{path.name}.tmp")
    with h5py.File(tmp, "w") as f:
        f["catalog/id"] = frame["id"].astype(str).to_numpy().astype("S")
        for key in ("ra", "dec", "z"):
            f[f"catalog/{key}"] = frame[key].to_numpy()
        for key, value in arrays.items():
            if key.startswith(("catalog/", "early/", "ps1/")) and key not in f:
                f[key] = value
    tmp.replace(path)


def _print_table(summary):
    variants = summary["results"]["in-distribution test"]["flag_rate_variants"]
    methods = [*variants, "combined + field (predicted)"]
    print(
        "| set | n | "
        + " | ".join(f"AUROC {m}" for m in methods)
        + " | flagged | field tested / flagged | NMAD / η flagged | NMAD / η unflagged "
        "| outliers removed by top 5% |"
    )
    print("|---" * (len(methods) + 7) + "|")
    for name, r in summary["results"].items():
        auc = [f"{r['auroc'][m]:.3f}" if m in r["auroc"] else "" for m in methods]
        f, u = r["flagged"], r["unflagged"]
        print(
            f"| {name} | {r['n']} | " + " | ".join(auc) + f" | {r['flag_rate']:.3f} | "
            f"{r['field_tested']:.2f} / {r['field_flag_rate']:.3f} | "
            f"{f['nmad']:.3f} / {f['eta']:.3f} | {u['nmad']:.3f} / {u['eta']:.3f} | "
            f"{r['removed_top5']:.2f} |"
        )
    for mix_name, m in summary["mixed"].items():
        if "removed_top5_mean" in m:
            print(
                f"mixed catalogue ({mix_name}): top 5% removes {m['removed_top5_mean']:.3f} of "
                f"{m['outliers_mean']:.1f} outliers on average (range {m['removed_top5_range']}, "
                f"{m['share_meeting_25']:.0%} of draws >= 0.25, ceiling {m['ceiling_mean']:.2f}); "
                "by variant: "
                + ", ".join(f"{v} {x:.3f}" for v, x in m["removed_top5_variants_mean"].items())
            )
            continue
        print(
            f"mixed catalogue ({mix_name}): {m['n']} objects, {m['outliers']} outliers, top 5% "
            f"removes {m['removed_top5']:.3f} of them (ceiling {m['ceiling']:.2f}, field tested "
            f"{m['field_tested']:.2f}); by variant: "
            + ", ".join(f"{v} {x:.3f}" for v, x in m["removed_top5_variants"].items())
        )
    flags = summary["results"]["in-distribution test"]["flag_rate_variants"]
    print(
        "in-distribution flag rate at p < 0.01 by variant: "
        + ", ".join(f"{v} {x:.4f}" for v, x in flags.items())
    )
    print(f"reference file {summary['reference_bytes'] / 1e6:.1f} MB, {summary['seconds']} s")


if __name__ == "__main__":
    main()
