"""The structure panel of ``mantis sky preview``: colour gradients and neighbours.

Two things a sky needs for realistic pixels, shown on the sky's own sources: the g - z colour
map of a large bulge + disk galaxy (red centre and bluer disk when bulge and disk have their
own SEDs, flat when they share one), and an r-band PS1 cutout, with noise, around the galaxy
with the most neighbours within `NEIGHBOUR_RADIUS_ARCSEC`, its neighbours circled.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["NEIGHBOUR_RADIUS_ARCSEC", "draw_structure", "most_crowded_galaxy"]

NEIGHBOUR_RADIUS_ARCSEC = 8.0
_PS1_SCALE = 0.25  # arcsec per pixel
_STAMP = 96  # pixels: 24 arcsec


def _stamp_wcs(ra: float, dec: float, n: int):
    from mantis.sky._coverage import _tan_wcs  # astropy only when drawing

    return _tan_wcs(ra, dec, (n + 1) / 2, _PS1_SCALE / 3600.0, (n, n))


def _largest_bulge_disk_galaxy(sources) -> Any:
    galaxies = sources[
        (sources["kind"] == "galaxy")
        & sources["bulge_frac"].between(0.2, 0.8)
        & (sources["mag_r"] < 20.5)
    ]
    if len(galaxies) == 0:
        galaxies = sources[sources["kind"] == "galaxy"]
    return galaxies.loc[galaxies["hlr_disk"].idxmax()]


def most_crowded_galaxy(sources, mag_limit: float = 22.0) -> tuple[Any, np.ndarray]:
    """Find the galaxy brighter than ``mag_limit`` (r) with most sources within the radius.

    Only sources brighter than r = 23.5 (visible in the cutout) count as neighbours.

    Returns
    -------
    row : pandas.Series
        The galaxy.
    neighbours : ndarray of int
        Positional indices (into ``sources``) of the other sources within the radius.
    """
    from scipy.spatial import cKDTree

    from mantis.sky._render import _unit_vectors

    xyz = _unit_vectors(sources["ra"].to_numpy(float), sources["dec"].to_numpy(float))
    visible = np.flatnonzero(sources["mag_r"].to_numpy(float) < 23.5)
    tree = cKDTree(xyz[visible])
    chord = 2.0 * np.sin(np.radians(NEIGHBOUR_RADIUS_ARCSEC / 3600.0) / 2.0)
    bright = np.flatnonzero(
        (sources["kind"].to_numpy() == "galaxy") & (sources["mag_r"].to_numpy(float) < mag_limit)
    )
    counts = tree.query_ball_point(xyz[bright], chord, return_length=True)
    best = int(bright[int(np.argmax(counts))])
    found = visible[np.asarray(tree.query_ball_point(xyz[best], chord), dtype=int)]
    neighbours = found[found != best]
    return sources.iloc[best], neighbours


def draw_structure(universe: Any, fig) -> None:
    """Fill ``fig`` (a matplotlib figure) with the colour-gradient and neighbour panels."""
    sources = universe.sources
    galaxy = _largest_bulge_disk_galaxy(sources)
    wcs = _stamp_wcs(galaxy["ra"], galaxy["dec"], _STAMP)
    g, z = (universe.render(b, wcs, (_STAMP, _STAMP), noise=False) for b in ("g", "z"))
    lit = (g > 0.01 * g.max()) & (z > 0.01 * z.max())
    colour = np.full(g.shape, np.nan)
    colour[lit] = -2.5 * np.log10(g[lit] / z[lit])
    axes = fig.subplots(1, 3)
    extent = [-_STAMP * _PS1_SCALE / 2, _STAMP * _PS1_SCALE / 2] * 2
    axes[0].imshow(np.arcsinh(z / (0.02 * z.max())), origin="lower", cmap="gray_r",
                   extent=extent)  # fmt: skip
    axes[0].set_title(f"{galaxy['id']} z band (noise-free)\nz={galaxy['z']:.2f}", fontsize=8)
    image = axes[1].imshow(colour, origin="lower", cmap="RdYlBu_r", extent=extent)
    fig.colorbar(image, ax=axes[1], shrink=0.8, label="g - z (AB)")
    axes[1].set_title("g - z colour map", fontsize=8)
    crowded, neighbours = most_crowded_galaxy(sources)
    wcs = _stamp_wcs(crowded["ra"], crowded["dec"], _STAMP)
    from scipy.ndimage import gaussian_filter

    # smoothed by about the PSF for display (0.25" pixels hold little signal each), and
    # clipped at a few sigma so that faint neighbours show next to bright ones
    r = gaussian_filter(universe.render("r", wcs, (_STAMP, _STAMP)), 2.0)
    noise = 1.4826 * np.median(np.abs(r - np.median(r)))
    axes[2].imshow(np.arcsinh(r / max(noise, 1e-6)), origin="lower", cmap="gray_r", vmin=-1.0,
                   vmax=4.0)  # fmt: skip
    if len(neighbours):
        x, y = wcs.all_world2pix(
            sources["ra"].to_numpy()[neighbours], sources["dec"].to_numpy()[neighbours], 0
        )
        axes[2].scatter(x, y, s=160, facecolors="none", edgecolors="tab:red", linewidths=0.8)
    axes[2].plot([(_STAMP - 1) / 2], [(_STAMP - 1) / 2], "+", color="tab:blue", ms=12)
    axes[2].set_title(
        f"r band with noise (smoothed): {len(neighbours)} sources\n"
        f'within {NEIGHBOUR_RADIUS_ARCSEC:g}" of {crowded["id"]}',
        fontsize=8,
    )
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
