"""Benchmark of the rich sky (``configs/sky/rich.yaml``) against the default one.

Both skies cover the fields of the ``test`` sky (seed 0). Rendering: complete nine-band sets
with noise (`bench_sky.render_set`) at the same spec-z positions, the skies measured
alternately, ``repeats`` rounds, medians; the rich sky is also measured without its exact
rendering of faint galaxies and without source noise, to show where its cost goes.
Clustering: galaxy pairs closer than 2-20 arcsec in each sky against a uniform random
catalogue of the same size over the same fields. Also the CPU time of drawing each population,
and how far the stretched-PSF approximation is from the exact profile for the faint resolved
galaxies the rich sky renders exactly. Prints tables and writes
``bench/results/rich_sky.json``.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from bench_sky import render_set, tan_wcs

from mantis.config import config_file, load_yaml
from mantis.sky import Universe
from mantis.sky._population import _uniform_positions, field_area_deg2
from mantis.surveys import band, mag_to_nanomaggies

RESULTS = Path(__file__).resolve().parent.parent / "bench" / "results" / "rich_sky.json"
PAIR_SEPARATIONS_ARCSEC = (2.0, 5.0, 10.0, 20.0)


def _sky(name: str, **rendering) -> dict:
    config = dict(load_yaml(config_file(f"sky/{name}")))
    config["fields"] = load_yaml(config_file("sky/test"))["fields"]
    if rendering:
        config["rendering"] = {**config.get("rendering", {}), **rendering}
    return config


def _unit_vectors(ra, dec) -> np.ndarray:
    ra, dec = np.radians(ra), np.radians(dec)
    return np.stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)], axis=1)


def pair_counts(ra, dec, separations_arcsec) -> list[int]:
    """Number of distinct pairs closer than each separation."""
    from scipy.spatial import cKDTree

    tree = cKDTree(_unit_vectors(ra, dec))
    chords = 2.0 * np.sin(np.radians(np.asarray(separations_arcsec) / 3600.0) / 2.0)
    return [int(tree.count_neighbors(tree, c) - len(ra)) // 2 for c in chords]


def uniform_like(sources, fields, rng) -> tuple[np.ndarray, np.ndarray]:
    """Uniform positions with as many galaxies per field as ``sources`` holds there."""
    ras, decs = [], []
    for field in fields:
        ra, dec = _uniform_positions(field, int((sources["field"] == field["name"]).sum()), rng)
        ras.append(ra)
        decs.append(dec)
    return np.concatenate(ras), np.concatenate(decs)


def bench_clustering(seed: int = 0) -> dict:
    """Galaxy pair counts of both skies and of matched uniform catalogues."""
    out = {"separations_arcsec": list(PAIR_SEPARATIONS_ARCSEC)}
    for name in ("test", "rich"):
        universe = Universe.from_config(_sky(name), seed=seed)
        galaxies = universe.sources[universe.sources["kind"] == "galaxy"]
        fields = universe.config["fields"]
        ra, dec = uniform_like(galaxies, fields, np.random.default_rng(seed))
        counts = pair_counts(galaxies["ra"], galaxies["dec"], PAIR_SEPARATIONS_ARCSEC)
        random = pair_counts(ra, dec, PAIR_SEPARATIONS_ARCSEC)
        out[name] = {
            "n_galaxies": len(galaxies),
            "area_deg2": sum(field_area_deg2(f) for f in fields),
            "pairs": counts,
            "random_pairs": random,
            "pairs_over_random": [c / max(r, 1) for c, r in zip(counts, random, strict=True)],
        }
    return out


def bench_render(n_sets: int = 20, repeats: int = 3) -> dict:
    """Nine-band sets per second of each sky variant at the same positions, alternately."""
    variants = {
        "default": _sky("test"),
        "rich": _sky("rich"),
        "rich, exact only above S/N 30": _sky("rich", exact_min_snr=30.0),
        "rich, no source noise": _sky("rich", source_noise=False),
    }
    universes = {k: Universe.from_config(c, seed=0) for k, c in variants.items()}
    spec = universes["default"].spec_catalog()
    positions = list(zip(spec["ra"], spec["dec"], strict=True))
    positions = (positions * (n_sets // max(len(positions), 1) + 1))[:n_sets]
    for universe in universes.values():  # warm-up: GalSim tables, renderer index
        for ra, dec in positions:
            render_set(universe, ra, dec)
    rates = {k: [] for k in universes}
    cpu_rates = {k: [] for k in universes}
    for _ in range(repeats):
        for name, universe in universes.items():
            start, cpu_start = time.perf_counter(), time.process_time()
            for ra, dec in positions:
                render_set(universe, ra, dec)
            rates[name].append(n_sets / (time.perf_counter() - start))
            cpu_rates[name].append(n_sets / (time.process_time() - cpu_start))
    return {
        "n_sets": n_sets,
        "repeats": repeats,
        "median_sets_per_s": {k: statistics.median(v) for k, v in rates.items()},
        "median_sets_per_cpu_s": {k: statistics.median(v) for k, v in cpu_rates.items()},
        "load_average_1min": os.getloadavg()[0],
    }


def bench_exactness(n_galaxies: int = 40, band_name: str = "r") -> dict:
    """How far a stretched PSF is from the exact profile for faint resolved rich galaxies.

    For galaxies of the rich sky with an optimal S/N of 5-30 in ``band_name`` and half-light
    radii of at least a quarter of the PSF FWHM (those `exact_min_snr` = 5 moves to the exact
    path), each alone on a 64 px PS1 grid without noise: the S/N of the difference between
    the two drawings, sqrt(sum(diff²)) / sky sigma. Above ~1 the approximation is visible in
    the noise.
    """
    from mantis.sky._render import SkyRenderer, psf_fwhm

    universe = Universe.from_config(_sky("rich"), seed=0)
    sources = universe.sources
    sigma_5 = float(mag_to_nanomaggies(band(band_name).depth_5sigma)) / 5.0
    snr = pd.Series(mag_to_nanomaggies(sources[f"mag_{band_name}"]), index=sources.index) / sigma_5
    hlr = sources[["hlr_disk", "hlr_bulge"]].max(axis=1)
    candidates = sources[(sources["kind"] == "galaxy") & snr.between(5.0, 30.0) & (hlr > 0.4)]
    differences, checked = [], 0
    for _, galaxy in candidates.head(n_galaxies).iterrows():
        one = galaxy.to_frame().T.reset_index(drop=True).infer_objects()
        wcs = tan_wcs(galaxy["ra"], galaxy["dec"], 0.25, 64)
        if hlr[galaxy.name] < 0.25 * psf_fwhm(band_name, galaxy["ra"], galaxy["dec"], 0):
            continue
        exact, stretched = (
            SkyRenderer(one, seed=0, exact_min_snr=threshold).render(
                band_name, wcs, (64, 64), noise=False
            )
            for threshold in (5.0, 30.0)
        )
        sigma = universe.renderer.noise_sigma(
            band_name, np.array([[-0.25, 0.0], [0.0, 0.25]]),
            psf_fwhm(band_name, galaxy["ra"], galaxy["dec"], 0),
        )  # fmt: skip
        differences.append(float(np.sqrt(np.sum((exact - stretched) ** 2.0)) / sigma))
        checked += 1
    return {
        "band": band_name,
        "n_galaxies": checked,
        "median_difference_snr": statistics.median(differences),
        "fraction_above_1": float(np.mean(np.asarray(differences) > 1.0)),
        "max_difference_snr": max(differences),
    }


def bench_population(repeats: int = 3) -> dict:
    """CPU-seconds of `generate_population` for each sky (no cache), medians of ``repeats``."""
    from mantis.sky._population import generate_population

    cpu = {"default": [], "rich": []}
    for _ in range(repeats):
        for name, config in (("default", _sky("test")), ("rich", _sky("rich"))):
            start = time.process_time()
            generate_population(config, 0)
            cpu[name].append(time.process_time() - start)
    return {"repeats": repeats, "median_cpu_s": {k: statistics.median(v) for k, v in cpu.items()}}


def main() -> int:
    population = bench_population()
    render = bench_render()
    clustering = bench_clustering()
    exactness = bench_exactness()
    print("| sky | nine-band sets/s (wall) | per CPU-second | / default (CPU) |")
    print("|---|---:|---:|---:|")
    base = render["median_sets_per_cpu_s"]["default"]
    for name, rate in render["median_sets_per_s"].items():
        cpu = render["median_sets_per_cpu_s"][name]
        print(f"| {name} | {rate:.1f} | {cpu:.1f} | {cpu / base:.2f} |")
    print(f"load average (1 min): {render['load_average_1min']:.1f}")
    seps = clustering["separations_arcsec"]
    print("| sky | galaxies | " + " | ".join(f'pairs < {s:g}" / random' for s in seps) + " |")
    print("|---|---:|" + "---:|" * len(seps))
    for name in ("test", "rich"):
        row = clustering[name]
        cells = " | ".join(
            f"{c} / {r} = {c / max(r, 1):.2f}"
            for c, r in zip(row["pairs"], row["random_pairs"], strict=True)
        )
        print(f"| {name} | {row['n_galaxies']} | {cells} |")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    tmp = RESULTS.with_suffix(".json.tmp")
    print(
        f"stretched PSF vs exact, {exactness['n_galaxies']} resolved galaxies at S/N 5-30 in "
        f"{exactness['band']}: difference S/N median {exactness['median_difference_snr']:.2f}, "
        f"max {exactness['max_difference_snr']:.2f}, above 1 for "
        f"{100 * exactness['fraction_above_1']:.0f}%"
    )
    print(
        "population CPU-seconds (median): "
        + ", ".join(f"{k} {v:.2f}" for k, v in population["median_cpu_s"].items())
    )
    results = {
        "population": population,
        "render": render,
        "clustering": clustering,
        "exactness": exactness,
    }
    tmp.write_text(json.dumps(results, indent=2))
    tmp.replace(RESULTS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
