"""The rich sky (``configs/sky/rich.yaml``): colour gradients, groups, source noise, photometry."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from astropy.cosmology import Planck18
from scipy.spatial import cKDTree

from mantis.config import config_file, load_yaml
from mantis.exceptions import ConfigError
from mantis.sky import Universe
from mantis.sky._coverage import _tan_wcs
from mantis.sky._population import field_area_deg2, generate_population, validate_sky_config
from mantis.sky._render import NativeFrame, SkyRenderer, frame_from_wcs
from mantis.sky._seds import galaxy_magnitudes
from mantis.surveys import BANDS, band, mag_to_nanomaggies

pytestmark = pytest.mark.filterwarnings(
    "ignore:The TestRunner:astropy.utils.exceptions.AstropyDeprecationWarning"
)

FIELD = {"name": "cosmos", "ra": 150.1, "dec": 2.2, "size": 0.2}


def rich_config() -> dict:
    config = dict(load_yaml(config_file("sky/rich")))
    config["fields"] = [FIELD]
    return config


@pytest.fixture(scope="module")
def rich() -> pd.DataFrame:
    return generate_population(rich_config(), seed=5)


def make_wcs(ra, dec, scale, n):
    """A north-up TAN cutout of n x n pixels of ``scale`` arcsec centred on (ra, dec)."""
    return _tan_wcs(ra, dec, (n + 1) / 2, scale / 3600.0, (n, n))


def component_colour(galaxies: pd.DataFrame, component: str) -> pd.Series:
    """g - z of the bulge or the disk alone, from the total magnitudes and bulge fractions."""
    colour = galaxies["mag_g"] - galaxies["mag_z"]
    fg, fz = galaxies["bulge_frac_g"], galaxies["bulge_frac_z"]
    if component == "disk":
        fg, fz = 1.0 - fg, 1.0 - fz
    return colour - 2.5 * np.log10(fg) + 2.5 * np.log10(fz)


def test_bulges_are_redder_than_disks_at_fixed_redshift(rich):
    galaxies = rich[(rich["kind"] == "galaxy") & (rich["mag_z"] < 30)]
    for lo in (0.2, 0.6, 1.0):
        in_bin = galaxies[(galaxies["z"] >= lo) & (galaxies["z"] < lo + 0.2)]
        assert len(in_bin) > 50
        excess = component_colour(in_bin, "bulge") - component_colour(in_bin, "disk")
        assert np.median(excess) > 0.3, lo
        assert np.mean(excess > 0) > 0.85, lo


def test_bulge_and_disk_add_up_to_the_catalogue_sed(rich):
    galaxies = rich[(rich["kind"] == "galaxy") & (rich["mag_r"] < 24)].head(200)
    z = galaxies["z"].to_numpy()
    coeff = galaxies[[f"coeff_{i}" for i in range(5)]].to_numpy()
    intrinsic = galaxy_magnitudes(
        coeff, z, galaxies["abs_mag_b"].to_numpy(), Planck18.distmod(z).value
    )
    for j, b in enumerate(BANDS):
        if b.survey == "galex":
            continue  # many galaxies have no flux there
        observed = intrinsic[:, j] + b.extinction_coeff * galaxies["ebv"].to_numpy()
        np.testing.assert_allclose(observed, galaxies[f"mag_{b.name}"], atol=1e-6)


def test_morphology_follows_type_and_redshift(rich):
    galaxies = rich[rich["kind"] == "galaxy"]
    red, blue = galaxies[galaxies["sed_class"] == "red"], galaxies[galaxies["sed_class"] == "blue"]
    assert np.median(red["bulge_frac"]) > 0.6 > 0.25 > np.median(blue["bulge_frac"])
    assert galaxies["n_bulge"].between(2.5, 5.0).all()
    assert galaxies["n_disk"].between(0.7, 1.5).all()
    assert galaxies["n_bulge"].nunique() > 15 and galaxies["n_disk"].nunique() > 5
    assert np.median(red["n_bulge"]) > np.median(blue["n_bulge"])
    # at fixed luminosity, galaxies are physically smaller at higher redshift
    kpc = galaxies["hlr_disk"] * Planck18.kpc_proper_per_arcmin(galaxies["z"]).value / 60.0
    lum = blue.index[blue["abs_mag_b"].between(-21.0, -20.0)]
    near, far = lum[blue.loc[lum, "z"] < 0.5], lum[blue.loc[lum, "z"] > 1.2]
    assert len(near) > 10 and len(far) > 10
    assert np.median(kpc[far]) < 0.8 * np.median(kpc[near])


def pairs_closer_than(ra, dec, arcsec: float) -> int:
    ra_r, dec_r = np.radians(ra), np.radians(dec)
    xyz = np.stack([np.cos(dec_r) * np.cos(ra_r), np.cos(dec_r) * np.sin(ra_r), np.sin(dec_r)], 1)
    tree = cKDTree(xyz)
    return (tree.count_neighbors(tree, np.radians(arcsec / 3600.0)) - len(ra)) // 2


def test_groups_raise_close_pairs_above_a_random_catalogue(rich):
    galaxies = rich[rich["kind"] == "galaxy"]
    assert galaxies["satellite"].mean() == pytest.approx(0.3, abs=0.01)
    rng = np.random.default_rng(0)
    half = FIELD["size"] / 2.0
    s_lo, s_hi = np.sin(np.radians(FIELD["dec"] - half)), np.sin(np.radians(FIELD["dec"] + half))
    width = FIELD["size"] / np.cos(np.radians(FIELD["dec"]))
    ra = FIELD["ra"] + rng.uniform(-width / 2, width / 2, len(galaxies))
    dec = np.degrees(np.arcsin(rng.uniform(s_lo, s_hi, len(galaxies))))
    assert field_area_deg2(FIELD) == pytest.approx(FIELD["size"] ** 2, rel=0.01)
    clustered = pairs_closer_than(galaxies["ra"], galaxies["dec"], 5.0)
    uniform = pairs_closer_than(ra, dec, 5.0)
    assert uniform > 100
    assert clustered > 1.3 * uniform
    # far apart, the pair counts of both agree: groups are small
    wide = pairs_closer_than(galaxies["ra"], galaxies["dec"], 120.0)
    assert wide == pytest.approx(pairs_closer_than(ra, dec, 120.0), rel=0.1)


def test_same_seed_gives_identical_rich_sky_and_pixels(rich):
    again = generate_population(rich_config(), seed=5)
    pd.testing.assert_frame_equal(rich, again)
    cfg = validate_sky_config(rich_config())
    spec = rich[rich["spec_sample"] != ""].iloc[0]
    wcs = make_wcs(spec["ra"], spec["dec"], 0.25, 120)
    frame = frame_from_wcs("skycell.test", 40, 60, wcs, (120, 120))
    first, second = (
        Universe(table, seed=2, config=cfg).render("g", wcs, (120, 120), frame=frame)
        for table in (rich, again)
    )
    np.testing.assert_array_equal(first, second)


def one_galaxy(rich: pd.DataFrame, *, bright: bool) -> pd.DataFrame:
    """A bulge + disk galaxy of the population, alone (no neighbours to add light)."""
    galaxies = rich[(rich["kind"] == "galaxy") & rich["bulge_frac"].between(0.2, 0.8)]
    if bright:
        pick = galaxies[(galaxies["mag_r"] < 20.5) & (galaxies["hlr_disk"] > 1.0)]
    else:
        pick = galaxies[galaxies["mag_r"].between(23.5, 24.0) & (galaxies["hlr_disk"] > 0.4)]
    return pick.head(1).reset_index(drop=True)


@pytest.mark.parametrize("bright", [True, False])
@pytest.mark.parametrize("band_name", ["NUV", "g", "r", "z", "W1"])
def test_aperture_flux_of_an_isolated_rich_galaxy_matches_its_magnitude(rich, band_name, bright):
    galaxy = one_galaxy(rich, bright=bright)
    universe = Universe(galaxy, seed=1, config=validate_sky_config(rich_config()))
    scale = {"galex": 1.5, "ps1": 0.25, "unwise": 2.75}[band(band_name).survey]
    n = {"galex": 64, "ps1": 200, "unwise": 64}[band(band_name).survey]
    pixels = universe.render(
        band_name, make_wcs(galaxy.loc[0, "ra"], galaxy.loc[0, "dec"], scale, n), (n, n),
        noise=False,
    )  # fmt: skip
    truth = float(mag_to_nanomaggies(galaxy.loc[0, f"mag_{band_name}"]))
    assert float(pixels.sum(dtype=np.float64)) == pytest.approx(truth, rel=0.02)


def centre_minus_outskirts_colour(galaxy: pd.DataFrame) -> float:
    """g - z inside 0.5" minus g - z between 1.5 and 3 disk half-light radii, noise-free."""
    universe = Universe(galaxy, seed=1, config=validate_sky_config(rich_config()))
    wcs = make_wcs(galaxy.loc[0, "ra"], galaxy.loc[0, "dec"], 0.25, 120)
    g, z = (universe.render(b, wcs, (120, 120), noise=False) for b in ("g", "z"))
    yy, xx = np.mgrid[:120, :120]
    radius = np.hypot(xx - 59.5, yy - 59.5) * 0.25
    hlr = galaxy.loc[0, "hlr_disk"]
    centre, outskirts = radius < 0.5, (radius > 1.5 * hlr) & (radius < 3.0 * hlr)
    return -2.5 * np.log10(
        g[centre].sum() / z[centre].sum() * z[outskirts].sum() / g[outskirts].sum()
    )


def test_rendered_bulge_disk_galaxy_is_redder_in_its_centre(rich):
    galaxy = one_galaxy(rich, bright=True)
    # the same galaxy with one bulge fraction in every band: only the g and z PSFs differ
    one_sed = galaxy.drop(columns=[c for c in galaxy if c.startswith("bulge_frac_")])
    gradient, psf_only = (centre_minus_outskirts_colour(t) for t in (galaxy, one_sed))
    assert gradient > psf_only + 0.1


def shot_noise(band_name: str, mag: float) -> tuple[np.ndarray, np.ndarray]:
    """(noise-free model, source noise) of nine stars of magnitude ``mag`` in one image."""
    scale = {"galex": 1.5, "ps1": 0.25}[band(band_name).survey]
    offsets = np.arange(-1, 2) * 40.0 * scale / 3600.0
    ra, dec = (c.ravel() for c in np.meshgrid(150.0 + offsets, 2.0 + offsets))
    stars = pd.DataFrame({"ra": ra, "dec": dec, "kind": "star", "hlr_arcsec": 0.0,
                          **{f"mag_{b.name}": mag for b in BANDS}})  # fmt: skip
    for column in ("bulge_frac", "hlr_disk", "hlr_bulge", "q_disk", "q_bulge", "pa_deg"):
        stars[column] = 0.0
    stars["n_disk"], stars["n_bulge"] = 1.0, 4.0
    wcs = make_wcs(150.0, 2.0, scale, 130)
    model = SkyRenderer(stars, seed=4).render(band_name, wcs, (130, 130), noise=False)
    sky_only = SkyRenderer(stars, seed=4).render(band_name, wcs, (130, 130))
    with_sources = SkyRenderer(stars, seed=4, source_noise=True).render(band_name, wcs, (130, 130))
    return model.astype(float), (with_sources - sky_only).astype(float)


@pytest.mark.parametrize("band_name", ["r", "NUV"])
def test_source_noise_variance_grows_in_proportion_to_flux(band_name):
    ratios = []
    for mag in (16.0, 19.0):
        model, noise = shot_noise(band_name, mag)
        lit = model > 1e-3 * model.max()
        dark = model == 0.0  # beyond every stamp
        assert dark.sum() > 100 and np.all(noise[dark] == 0.0)  # no light, no source noise
        assert abs(noise[lit].mean()) < 3.0 * noise[lit].std() / np.sqrt(lit.sum())
        ratios.append(np.sum(noise[lit] ** 2) / np.sum(model[lit]))
    # variance / flux is the same at fluxes 16x apart: Poisson, variance proportional to flux
    assert ratios[0] == pytest.approx(ratios[1], rel=0.2)


def test_sky_settings_are_checked():
    with pytest.raises(ConfigError, match=r"clustering\.satellite_fraction"):
        validate_sky_config({"clustering": {"satellite_fraction": 2.0}})
    with pytest.raises(ConfigError, match=r"morphology\.model"):
        validate_sky_config({"morphology": {"model": "spiral"}})


def test_structure_preview_finds_neighbours_and_draws_the_colour_map(rich):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mantis.sky._structure_preview import (
        NEIGHBOUR_RADIUS_ARCSEC,
        draw_structure,
        most_crowded_galaxy,
    )

    galaxy, neighbours = most_crowded_galaxy(rich)
    assert galaxy["mag_r"] < 22.0 and len(neighbours) >= 2
    others = rich.iloc[neighbours]
    cosd = np.cos(np.radians(galaxy["dec"]))
    separation = 3600.0 * np.hypot(
        (others["ra"] - galaxy["ra"]) * cosd, others["dec"] - galaxy["dec"]
    )
    assert (separation < NEIGHBOUR_RADIUS_ARCSEC).all() and (others["mag_r"] < 23.5).all()
    spans = []
    # the same sources with one bulge fraction in every band: only the g and z PSFs differ
    for table in (rich, rich.drop(columns=[c for c in rich if c.startswith("bulge_frac_")])):
        fig = plt.figure()
        draw_structure(Universe(table, seed=0), fig)
        colour_map = fig.axes[1].get_images()[0].get_array()
        spans.append(np.nanmax(colour_map) - np.nanmin(colour_map))
        plt.close(fig)
    assert spans[0] > spans[1] + 0.1


def noise_frame(native: NativeFrame, x0: int, y0: int) -> NativeFrame:
    """The window of ``native`` starting at native pixel (x0, y0)."""
    return NativeFrame(native.key, x0, y0, native.jac, native.ra, native.dec)


@pytest.mark.parametrize(("band_name", "scale"), [("r", 0.25), ("NUV", 1.5)])
def test_window_of_a_native_image_equals_the_image_with_source_noise(rich, band_name, scale):
    universe = Universe(rich, seed=0, config=validate_sky_config(rich_config()))
    spec = rich[rich["spec_sample"] != ""].iloc[0]
    full_wcs = make_wcs(spec["ra"], spec["dec"], scale, 160)
    native = frame_from_wcs("tile", 0, 0, full_wcs, (160, 160))
    full = universe.render(band_name, full_wcs, (160, 160), frame=noise_frame(native, 0, 0))
    window_wcs = full_wcs.deepcopy()
    window_wcs.wcs.crpix = full_wcs.wcs.crpix - np.array([30.0, 50.0])  # columns 30.., rows 50..
    window = universe.render(band_name, window_wcs, (64, 64), frame=noise_frame(native, 30, 50))
    np.testing.assert_array_equal(window, full[50:114, 30:94])
    noiseless = universe.render(band_name, full_wcs, (160, 160), noise=False)
    assert not np.array_equal(full, noiseless)


def test_default_options_and_rendering_keep_the_population_cache_name(tmp_path):
    from mantis.config import config_hash
    from mantis.sky._universe import POPULATION_VERSION

    small = {"fields": [{**FIELD, "size": 0.05}], "cache_dir": str(tmp_path)}
    Universe.from_config(small, seed=2)
    # the cache name the sky had before the morphology, clustering and rendering options
    before = {
        k: v
        for k, v in validate_sky_config(small).items()
        if k not in ("name", "cache_dir", "morphology", "clustering", "rendering")
    }
    before["population_version"] = POPULATION_VERSION
    assert [p.name for p in tmp_path.iterdir()] == [f"{config_hash(before)}-2.parquet"]
    Universe.from_config({**small, "rendering": {"source_noise": True}}, seed=2)
    assert len(list(tmp_path.iterdir())) == 1
    Universe.from_config({**small, "clustering": {"satellite_fraction": 0.2}}, seed=2)
    assert len(list(tmp_path.iterdir())) == 2
