"""Fast batched reprojection vs `reproject.reproject_exact`, side by side in one run.

Synthetic single-band cutouts in each survey's native frame (PS1 with its projection-cell
tangent point a degree or two away, so the frames are rotated; GALEX and unWISE north-up TAN),
each holding a bright Gaussian source, are reprojected by both paths onto the object-centred
native grid, the early grid, and both (as `mantis build` does; the fast path shares its tables
between the two). Prints a table and writes bench/results/stack.json.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path

import numpy as np

from mantis.stack import (
    Plane,
    TanProjection,
    grids_from_config,
    object_projection,
    reproject_planes_to_grids,
    resolve_build_config,
)
from mantis.stack._reproject_ref import reproject_planes_reference
from mantis.surveys import bands_of, survey

CUTOUT_PIXELS = {"ps1": 170, "galex": 32, "unwise": 32}  # the fetch room's 42.5" default


def synthetic_plane(survey_name: str, ra: float, dec: float, rng: np.random.Generator) -> Plane:
    scale = survey(survey_name).pixel_scale
    size = CUTOUT_PIXELS[survey_name]
    band = bands_of(survey_name)[0]
    if survey_name == "ps1":
        crval = (ra + rng.uniform(-1.5, 1.5), dec + rng.uniform(-1.5, 1.5))
    else:
        crval = (ra, dec)
    base = TanProjection(crval, (1.0, 1.0), ((-scale / 3600, 0.0), (0.0, scale / 3600)))
    wcs = base.to_wcs()
    x, y = wcs.world_to_pixel_values(ra, dec)
    crpix = (1.0 - round(float(x)) + size // 2, 1.0 - round(float(y)) + size // 2)
    projection = TanProjection(crval, crpix, base.cd)
    x, y = projection.to_wcs().world_to_pixel_values(ra, dec)
    sigma = band.psf_fwhm / 2.3548 / scale
    yy, xx = np.mgrid[:size, :size]
    flux = (
        100.0 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2)) / (2 * math.pi * sigma**2)
    )
    flux = (flux + rng.normal(0, 1e-3, flux.shape)).astype(np.float32)
    ivar = np.full(flux.shape, 1e6, dtype=np.float32)
    return Plane(band.name, flux, np.ones(flux.shape, bool), ivar, projection, "synthetic")


def reference_on_grids(planes: list[Plane], chosen: list) -> list:
    """`reproject_planes_reference` of the planes onto each (targets, grid), one by one."""
    return [
        reproject_planes_reference(planes, targets[: len(planes)], grid.shape)
        for targets, grid in chosen
    ]


def timed(function, *args, repeats: int, warm_up: bool) -> tuple[float, object]:
    if warm_up:
        function(*args)  # first-call costs (allocations, torch kernels) outside the timing
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function(*args)
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=48, help="cutouts per case for the fast path")
    parser.add_argument("--n-ref", type=int, default=6, help="cutouts per case for reproject")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads of the fast path (reproject_exact uses one core)",
    )
    parser.add_argument("--out", default="bench/results/stack.json")
    args = parser.parse_args()

    grids = grids_from_config(resolve_build_config("build"))
    rng = np.random.default_rng(0)
    import torch  # imported before timing

    torch.set_num_threads(args.threads)

    rows = []
    for survey_name in ("ps1", "galex", "unwise"):
        positions = [(rng.uniform(0, 360), rng.uniform(-25, 70)) for _ in range(args.n)]
        planes = [synthetic_plane(survey_name, ra, dec, rng) for ra, dec in positions]
        grid_sets = {
            name: ([object_projection(ra, dec, grids[name]) for ra, dec in positions], grids[name])
            for name in (survey_name, "early")
        }
        # each grid alone, then both as `mantis build` makes them (tables shared by the grids)
        for names in ((survey_name,), ("early",), (survey_name, "early")):
            chosen = [grid_sets[name] for name in names]
            fast_s, fast = timed(
                reproject_planes_to_grids,
                planes,
                [(targets, grid.shape) for targets, grid in chosen],
                repeats=args.repeats,
                warm_up=True,
            )
            ref_s, ref = timed(
                reference_on_grids,
                planes[: args.n_ref],
                chosen,
                repeats=args.repeats,
                warm_up=False,
            )
            flux_err, rms_peak = [], []
            for fast_grid, ref_grid in zip(fast, ref, strict=True):
                for k in range(args.n_ref):
                    flux_err.append(
                        float(abs(fast_grid.image[k].sum() / ref_grid.image[k].sum() - 1))
                    )
                    diff = fast_grid.image[k] - ref_grid.image[k]
                    rms_peak.append(float(np.sqrt(np.mean(diff**2)) / ref_grid.image[k].max()))
            fast_rate = args.n / fast_s
            ref_rate = args.n_ref / ref_s
            rows.append(
                {
                    "survey": survey_name,
                    "grid": " + ".join(
                        f'{name} {grids[name].pixel_scale}"/px x {grids[name].size}'
                        if len(names) == 1
                        else name
                        for name in names
                    ),
                    "fast_cutouts_per_s": fast_rate,
                    "reference_cutouts_per_s": ref_rate,
                    "speedup": fast_rate / ref_rate,
                    "max_flux_error": max(flux_err),
                    "max_rms_over_peak": max(rms_peak),
                }
            )
    header = (
        f"{'survey':7s} {'grid':26s} {'fast/s':>9s} {'reproject/s':>12s} {'speedup':>8s} "
        f"{'max |dF|/F':>11s} {'max rms/peak':>13s}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        print(
            f"{row['survey']:7s} {row['grid']:26s} {row['fast_cutouts_per_s']:9.0f} "
            f"{row['reference_cutouts_per_s']:12.1f} {row['speedup']:8.0f} "
            f"{row['max_flux_error']:11.2e} {row['max_rms_over_peak']:13.2e}"
        )
    speedups = [row["speedup"] for row in rows]
    print(f"median speedup {statistics.median(speedups):.0f}x (min {min(speedups):.0f}x)")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "rows": rows,
        "median_speedup": statistics.median(speedups),
        "min_speedup": min(speedups),
        "n_fast": args.n,
        "n_reference": args.n_ref,
        "torch_threads": torch.get_num_threads(),
    }
    out.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
