"""Drawing the simulated sky into any celestial WCS with GalSim.

Each source is drawn once per request and band as a small stamp at its exact sub-pixel position
(through the request's WCS), convolved with the band's PSF, and added into the image. Bright
resolved galaxies go through GalSim's FFT convolution of their bulge + disk Sersic profiles
(n = 4 and 1: few distinct indices keep GalSim's tables cached); stars, compact and faint
galaxies are drawn in one vectorised pass by `mantis.sky._analytic`. The PSF
is the *effective* PSF (optics, atmosphere and pixel response together), so stamps are drawn
with ``method='no_pixel'``: the FWHM measured on a rendered star equals `psf_fwhm`. Sky noise is
white Gaussian with the per-pixel sigma that gives a point source at the band's 5-sigma depth a
signal-to-noise of 5 in an optimal (PSF-weighted) aperture.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from mantis.exceptions import MantisError
from mantis.sky._analytic import FWHM_PER_SIGMA, add_profiles, stamp_halves
from mantis.surveys import BANDS, mag_to_nanomaggies
from mantis.surveys import band as get_band

if TYPE_CHECKING:
    import galsim
    from astropy.wcs import WCS

__all__ = [
    "MOFFAT_BETA",
    "SKIP_SNR",
    "NativeFrame",
    "SkyRenderer",
    "local_jacobian",
    "psf_fwhm",
    "psf_profile",
]

MOFFAT_BETA = 3.0  # PS1 PSF wings (a typical Moffat index for ground-based seeing)
PSF_RADIUS_FWHM = {"ps1": 4.5, "galex": 3.0, "unwise": 3.0}  # stamp/truncation radius
SERSIC_TRUNC_HLR = 8.0  # Sersic profiles are truncated (flux renormalised) at 8 half-light radii
SKIP_SNR = 0.3  # with noise on, sources whose optimal S/N is below this are not drawn
POINT_LIKE_HLR_FWHM = 0.05  # galaxies smaller than this fraction of the PSF FWHM are drawn as PSFs
# Galaxies smaller than this fraction of the FWHM, or fainter than FAST_SNR (optimal S/N in the
# request), are drawn as the PSF stretched to the second moments of galaxy + PSF: no FFT, and
# the difference from the exact convolution is far below the noise.
COMPACT_HLR_FWHM = 0.25
FAST_SNR = 30.0
# faint profiles get smaller stamps: the light beyond 3 FWHM (~1% for the Moffat) is far below
# the noise, while bright ones keep PSF_RADIUS_FWHM so that their flux is conserved
FAINT_RADIUS_FWHM = 3.0
_HLR_PER_SIGMA = math.sqrt(2.0 * math.log(2.0))  # half-light radius of a unit Gaussian
MAX_STAMP_HALF = 256  # pixels


@dataclass(frozen=True)
class NativeFrame:
    """A request's pixels as a window of one fixed native image (a skycell, a tile).

    Rendered with a frame, a pixel's value depends only on its place in the native image, not
    on the request that contains it, as for the real services' stored images: the PSF, noise
    level and pixel Jacobian are those at the native image's anchor, and the noise of native
    pixel (X, Y) is drawn from a hash of (seed, band, key, X, Y). A large cutout cut down then
    equals the small cutout of the same pixels.

    Attributes
    ----------
    key : str
        Name of the native image (``'skycell.1234.056'``, an unWISE coadd id).
    x0, y0 : int
        Native 0-based pixel of the window's first column and row.
    jac : tuple of float
        The native image's (east, north) arcsec-per-pixel Jacobian at its anchor, row-major.
    ra, dec : float
        The anchor (PSF position), degrees.
    """

    key: str
    x0: int
    y0: int
    jac: tuple[float, float, float, float]
    ra: float
    dec: float


def frame_from_wcs(key: str, x0: int, y0: int, wcs: WCS, shape: tuple[int, int]) -> NativeFrame:
    """Frame of the window at (x0, y0) of native image ``wcs`` (``shape``), anchored mid-image."""
    jac, ra, dec = local_jacobian(wcs, shape)
    return NativeFrame(key, int(x0), int(y0), tuple(float(v) for v in jac.ravel()), ra, dec)


_MIX1, _MIX2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def _splitmix64(values: np.ndarray) -> np.ndarray:
    z = values + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


def _pixel_hash(seed: int, key: str, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    base = np.uint64(
        int.from_bytes(hashlib.sha256(f"{seed}/{key}".encode()).digest()[:8], "little")
    )
    xs = np.asarray(xs, dtype=np.int64).view(np.uint64)
    ys = np.asarray(ys, dtype=np.int64).view(np.uint64)
    return _splitmix64(_splitmix64(xs ^ base) ^ ys)


def stationary_uniform(seed: int, key: str, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Draw uniform deviates in (0, 1) fixed by (seed, key, native pixel)."""
    h = _pixel_hash(seed, key, xs, ys)
    return ((_splitmix64(h) >> np.uint64(11)).astype(np.float64) + 0.5) / 2.0**53


def stationary_normal(seed: int, key: str, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Draw standard normal deviates fixed by (seed, key, native pixel): one pixel, one value."""
    h = _pixel_hash(seed, key, xs, ys)
    u1 = ((_splitmix64(h) >> np.uint64(11)).astype(np.float64) + 0.5) / 2.0**53
    u2 = (_splitmix64(h ^ _MIX1) >> np.uint64(11)).astype(np.float64) / 2.0**53
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


def psf_fwhm(band_name: str, ra: float, dec: float, seed: int = 0) -> float:
    """PSF FWHM in arcsec at (ra, dec): a smooth, seeded pattern within ``psf_fwhm_range``.

    All bands of one survey share the pattern (seeing is correlated between PS1 stacks); each
    band maps it into its own range.
    """
    band = get_band(band_name)
    digest = hashlib.sha256(f"psf/{seed}/{band.survey}".encode()).digest()
    phases = np.frombuffer(digest[:16], dtype=np.uint32).astype(float) / 2**32 * 2 * np.pi
    ra_r, dec_r = math.radians(ra), math.radians(dec)
    # low-order harmonics on the sphere: varies on scales of a few degrees
    pattern = (
        math.sin(7.0 * ra_r * math.cos(dec_r) + phases[0]) * math.cos(5.0 * dec_r + phases[1])
        + 0.5 * math.sin(13.0 * dec_r + 3.0 * ra_r + phases[2])
        + 0.3 * math.cos(23.0 * ra_r * math.cos(dec_r) - 11.0 * dec_r + phases[3])
    ) / 1.8
    lo, hi = band.psf_fwhm_range
    return float(lo + (hi - lo) * 0.5 * (1.0 + max(-1.0, min(1.0, pattern))))


@lru_cache(maxsize=256)
def psf_profile(band_name: str, fwhm: float) -> galsim.GSObject:
    """Return the effective unit-flux PSF of a band with a given FWHM (arcsec).

    PS1: a Moffat (beta = `MOFFAT_BETA`); GALEX and unWISE: a Gaussian.
    """
    import galsim

    band = get_band(band_name)
    if band.survey == "ps1":
        # untruncated: a hard edge on both PSF and galaxy would make GalSim's FFTs huge;
        # the stamp radius keeps all but ~0.2% of the light
        return galsim.Moffat(beta=MOFFAT_BETA, fwhm=fwhm)
    return galsim.Gaussian(fwhm=fwhm)


def local_jacobian(wcs: WCS, shape: tuple[int, int]) -> tuple[np.ndarray, float, float]:
    """Local (east, north) arcsec per pixel Jacobian at the image centre, and that centre.

    Returns
    -------
    jac : ndarray, shape (2, 2)
        ``[[de/dx, de/dy], [dn/dx, dn/dy]]`` in arcsec per pixel.
    ra, dec : float
        Sky position of the image centre, degrees.
    """
    ny, nx = shape
    cx, cy = (nx - 1) / 2.0, (ny - 1) / 2.0
    px = np.array([cx, cx - 0.5, cx + 0.5, cx, cx])
    py = np.array([cy, cy, cy, cy - 0.5, cy + 0.5])
    ra, dec = wcs.all_pix2world(px, py, 0)
    cosd = math.cos(math.radians(dec[0]))
    dra = (np.asarray(ra) - ra[0] + 180.0) % 360.0 - 180.0
    east, north = dra * cosd * 3600.0, (np.asarray(dec) - dec[0]) * 3600.0
    jac = np.array(
        [[east[2] - east[1], east[4] - east[3]], [north[2] - north[1], north[4] - north[3]]]
    )
    return jac, float(ra[0]), float(dec[0])


def _unit_vectors(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    ra_r, dec_r = np.radians(ra), np.radians(dec)
    return np.stack(
        [np.cos(dec_r) * np.cos(ra_r), np.cos(dec_r) * np.sin(ra_r), np.sin(dec_r)], axis=1
    )


class SkyRenderer:
    """Renders a table of sources; built once per `Universe`.

    Parameters
    ----------
    sources : pandas.DataFrame
        Columns ``ra, dec, kind, mag_<band>`` and the morphology columns of
        `mantis.sky._population.SOURCE_COLUMNS`.
    seed : int
        Seed of the PSF pattern and of the noise.
    source_noise : bool
        Add the sources' own photon noise (`mantis.sky._source_noise`) when noise is on.
    exact_min_snr : float
        Resolved galaxies at least this optimal S/N are convolved exactly (GalSim FFT);
        fainter ones are drawn as the PSF stretched to their second moments.

    Notes
    -----
    With columns ``bulge_frac_<band>`` (bulge + disk galaxies with their own SEDs) the light
    is split between bulge and disk band by band, in both drawing paths, so galaxies have
    colour gradients; without them every band uses ``bulge_frac``.
    """

    def __init__(
        self,
        sources: pd.DataFrame,
        seed: int = 0,
        *,
        source_noise: bool = False,
        exact_min_snr: float = FAST_SNR,
    ) -> None:
        from scipy.spatial import cKDTree

        self.seed = int(seed)
        self.source_noise = bool(source_noise)
        self.exact_min_snr = float(exact_min_snr)
        # per-band bulge light fractions (bulge + disk SEDs); None: one fraction for all bands
        self._band_bulge = (
            {b.name: sources[f"bulge_frac_{b.name}"].to_numpy(float) for b in BANDS}
            if all(f"bulge_frac_{b.name}" in sources for b in BANDS)
            else None
        )
        self._ra = sources["ra"].to_numpy(float)
        self._dec = sources["dec"].to_numpy(float)
        self._tree = cKDTree(_unit_vectors(self._ra, self._dec))
        self._flux = {b.name: mag_to_nanomaggies(sources[f"mag_{b.name}"].to_numpy(float))
                      for b in BANDS}  # fmt: skip
        self._point = (sources["kind"].to_numpy() == "star") | (
            sources["hlr_arcsec"].to_numpy(float) <= 0
        )
        cols = ["bulge_frac", "hlr_disk", "hlr_bulge", "n_disk", "n_bulge", "q_disk", "q_bulge",
                "pa_deg"]  # fmt: skip
        self._morph = {c: sources[c].to_numpy(float) for c in cols}
        self._extent = np.where(
            self._point,
            0.0,
            SERSIC_TRUNC_HLR * np.maximum(self._morph["hlr_disk"], self._morph["hlr_bulge"]),
        )
        self._max_extent = float(self._extent.max()) if len(self._extent) else 0.0
        self._hlr = np.maximum(self._morph["hlr_disk"], self._morph["hlr_bulge"])
        self._cov_galaxy = self._galaxy_covariances()
        if self._band_bulge is not None:
            self._cov_components = {
                kind: self._galaxy_covariances(only=kind) for kind in ("disk", "bulge")
            }
        self._galaxy_cache: dict[int | tuple[int, str], galsim.GSObject] = {}

    def _galaxy_covariances(self, only: str | None = None) -> np.ndarray:
        """Second-moment-equivalent (east, north) covariances of each galaxy, arcsec², (n, 2, 2).

        Each Sersic component counts as the Gaussian with its half-light radius and axis ratio;
        ``only='disk'`` or ``'bulge'`` gives that component's alone (at unit weight).
        """
        m = self._morph
        theta = np.radians(90.0 - m["pa_deg"])
        cos, sin = np.cos(theta), np.sin(theta)
        frac = np.clip(m["bulge_frac"], 0.0, 1.0)
        cov = np.zeros((len(theta), 2, 2))
        for kind, weight in (("disk", 1.0 - frac), ("bulge", frac)):
            if only is not None:
                if kind != only:
                    continue
                weight = np.ones_like(frac)
            q = np.clip(m[f"q_{kind}"], 0.05, 1.0)
            var = (np.nan_to_num(m[f"hlr_{kind}"]) / _HLR_PER_SIGMA) ** 2 * weight
            major, minor = var / q, var * q
            cov[:, 0, 0] += major * cos**2 + minor * sin**2
            cov[:, 1, 1] += major * sin**2 + minor * cos**2
            cov[:, 0, 1] += (major - minor) * cos * sin
        cov[:, 1, 0] = cov[:, 0, 1]
        cov[self._point] = 0.0
        return cov

    # -- noise -------------------------------------------------------------------------------
    def noise_sigma(self, band_name: str, jac: np.ndarray, fwhm: float) -> float:
        """Per-pixel noise sigma (nanomaggies) for a pixel grid with Jacobian ``jac``."""
        return _noise_sigma(band_name, round(fwhm, 4), tuple(np.round(jac, 5).ravel()))

    # -- drawing -----------------------------------------------------------------------------
    def _galaxy(self, i: int, band_name: str) -> galsim.GSObject:
        """Unit-flux bulge + disk profile of source ``i`` (cached: built once per source)."""
        key = i if self._band_bulge is None else (i, band_name)
        obj = self._galaxy_cache.get(key)
        if obj is not None:
            return obj
        import galsim

        m = self._morph
        beta = (90.0 - m["pa_deg"][i]) * galsim.degrees  # PA east of north -> angle from east
        parts = []
        bulge = m["bulge_frac"] if self._band_bulge is None else self._band_bulge[band_name]
        frac = float(np.clip(bulge[i], 0.0, 1.0))
        for kind, weight in (("disk", 1.0 - frac), ("bulge", frac)):
            hlr = float(m[f"hlr_{kind}"][i])
            if weight <= 0 or hlr <= 0:
                continue
            n = float(m[f"n_{kind}"][i])
            # below n = 1 the light beyond the truncation radius is under 2e-5 of the total
            # (an exponential's), and GalSim may fail to solve for the truncated profile there
            prof = galsim.Sersic(
                n=n, half_light_radius=hlr,
                trunc=SERSIC_TRUNC_HLR * hlr if n >= 1.0 else 0.0, flux_untruncated=False,
            )  # fmt: skip
            q = float(np.clip(m[f"q_{kind}"][i], 0.05, 1.0))
            if q < 1.0:
                prof = prof.shear(q=q, beta=beta)
            parts.append(weight * prof)
        obj = galsim.Add(parts) if len(parts) > 1 else parts[0]
        obj = obj.withFlux(1.0)
        if len(self._galaxy_cache) > 200_000:
            self._galaxy_cache.clear()
        self._galaxy_cache[key] = obj
        return obj

    def render(
        self,
        band_name: str,
        wcs: WCS,
        shape: tuple[int, int],
        *,
        noise: bool = True,
        frame: NativeFrame | None = None,
    ) -> np.ndarray:
        """Render one band on ``wcs`` with ``shape`` = (ny, nx); see `Universe.render`."""
        import galsim

        band = get_band(band_name)
        ny, nx = (int(s) for s in shape)
        if ny <= 0 or nx <= 0 or ny > 8192 or nx > 8192:
            raise MantisError(f"render shape must be two sizes in 1..8192, got {shape!r}")
        if not getattr(wcs, "has_celestial", False) or wcs.pixel_n_dim != 2:
            raise MantisError("render needs a two-dimensional celestial astropy WCS")
        jac, ra_c, dec_c = local_jacobian(wcs, (ny, nx))
        psf_ra, psf_dec = ra_c, dec_c
        if frame is not None:  # the native image's PSF and pixel grid, whatever the window
            jac, psf_ra, psf_dec = np.array(frame.jac).reshape(2, 2), frame.ra, frame.dec
        pixscale = math.sqrt(abs(np.linalg.det(jac)))
        if not np.isfinite(pixscale) or pixscale <= 0:
            raise MantisError(f"WCS has a degenerate pixel scale at ({ra_c}, {dec_c})")
        fwhm = psf_fwhm(band_name, psf_ra, psf_dec, self.seed)
        psf = psf_profile(band_name, round(fwhm, 4))
        sigma = self.noise_sigma(band_name, jac, fwhm)
        n_eff = _psf_neff(band_name, round(fwhm, 4), tuple(np.round(jac, 5).ravel()))
        snr_per_flux = 1.0 / (sigma * math.sqrt(n_eff))
        local = galsim.JacobianWCS(jac[0, 0], jac[0, 1], jac[1, 0], jac[1, 1])
        psf_radius = PSF_RADIUS_FWHM[band.survey] * fwhm
        image = galsim.ImageD(nx, ny, xmin=1, ymin=1)

        # candidate sources: within the half-diagonal plus the largest possible stamp
        half_diag = 0.5 * math.hypot(nx, ny) * pixscale + psf_radius + self._max_extent
        centre = _unit_vectors(np.array([ra_c]), np.array([dec_c]))[0]
        chord = 2.0 * math.sin(min(math.radians(half_diag / 3600.0), math.pi) / 2.0)
        # sorted: sources add up in one order whatever the request, so overlapping windows agree
        idx = np.sort(np.array(self._tree.query_ball_point(centre, chord), dtype=int))
        if idx.size:
            flux = self._flux[band_name][idx]
            keep = np.isfinite(flux) & (flux > 0)
            if noise:
                keep &= flux * snr_per_flux > SKIP_SNR
            idx, flux = idx[keep], flux[keep]
        if idx.size:
            x, y = wcs.all_world2pix(self._ra[idx], self._dec[idx], 0)
            radius_pix = np.minimum(np.ceil((psf_radius + self._extent[idx]) / pixscale) + 1,
                                    MAX_STAMP_HALF)  # fmt: skip
            hlr = self._hlr[idx]
            point_like = self._point[idx] | (hlr < POINT_LIKE_HLR_FWHM * fwhm)
            use_fft = ~point_like & (hlr >= COMPACT_HLR_FWHM * fwhm)
            use_fft &= flux * snr_per_flux >= self.exact_min_snr
            cov = np.where(point_like[:, None, None], 0.0, self._cov_galaxy[idx])
            cov = cov + np.eye(2) * (fwhm / FWHM_PER_SIGMA) ** 2
            radius_fwhm = np.where(flux * snr_per_flux < FAST_SNR, FAINT_RADIUS_FWHM,
                                   PSF_RADIUS_FWHM[band.survey])  # fmt: skip
            # a source is kept if the stamp it is drawn with reaches the image: then a window
            # of a larger image gets every source the larger image got there
            parts = self._analytic_parts(band_name, idx, flux, point_like, cov, fwhm)
            analytic_half = np.max(
                [stamp_halves(c, jac, radius_fwhm, MAX_STAMP_HALF) for _, c in parts], axis=0
            )
            reach = np.where(use_fft, radius_pix, analytic_half + 1)
            inside = (
                np.isfinite(x) & np.isfinite(y)
                & (x + reach >= -0.5) & (x - reach <= nx - 0.5)
                & (y + reach >= -0.5) & (y - reach <= ny - 0.5)
            )  # fmt: skip
            idx, flux, x, y = idx[inside], flux[inside], x[inside], y[inside]
            radius_pix, use_fft = radius_pix[inside], use_fft[inside]
            radius_fwhm = radius_fwhm[inside]
            analytic = ~use_fft
            parts = [(f[inside][analytic], c[inside][analytic]) for f, c in parts]
            n_parts = len(parts)
            accumulated = np.zeros((ny, nx))
            add_profiles(
                accumulated,
                np.tile(x[analytic], n_parts),
                np.tile(y[analytic], n_parts),
                np.concatenate([f for f, _ in parts]),
                np.concatenate([c for _, c in parts]),
                jac,
                psf_fwhm=fwhm,
                moffat_beta=MOFFAT_BETA if band.survey == "ps1" else None,
                radius_fwhm=np.tile(radius_fwhm[analytic], n_parts),
                max_half=MAX_STAMP_HALF,
            )
            image.array[:, :] += accumulated
            for i, f, xi, yi, half in zip(
                idx[use_fft],
                flux[use_fft],
                x[use_fft],
                y[use_fft],
                radius_pix[use_fft],
                strict=True,
            ):
                self._draw_one(image, int(i), float(f), float(xi), float(yi), int(half), psf,
                               local, band_name)  # fmt: skip
        pixels = image.array.astype(np.float32, copy=True)
        if noise and self.source_noise:
            # imported here: it reads PS1 exposure times from _formats, which imports this
            from mantis.sky._source_noise import add_source_noise
        if noise and frame is not None:
            rows, cols = np.mgrid[frame.y0 : frame.y0 + ny, frame.x0 : frame.x0 + nx]
            deviates = stationary_normal(self.seed, f"{band_name}/{frame.key}", cols, rows)
            pixels += (sigma * deviates).astype(np.float32)
            if self.source_noise:
                uniform = stationary_uniform(self.seed, f"{band_name}/{frame.key}/source",
                                             cols, rows)  # fmt: skip
                add_source_noise(pixels, image.array, band_name, uniform)
        elif noise:
            noise_seed = _noise_seed(self.seed, band_name, ra_c, dec_c, (ny, nx))
            rng = np.random.default_rng(noise_seed)
            pixels += rng.normal(0.0, sigma, size=pixels.shape).astype(np.float32)
            if self.source_noise:
                uniform = np.random.default_rng([noise_seed, 1]).random(pixels.shape)
                add_source_noise(pixels, image.array, band_name, np.maximum(uniform, 2.0**-54))
        return pixels

    def _analytic_parts(self, band_name, idx, flux, point_like, cov, fwhm):
        """(flux, covariance + PSF) of each profile the analytic path draws for ``idx``.

        One profile per source (galaxy and PSF second moments together); with per-band bulge
        fractions two, the bulge and the disk, each with its share of the band's flux.
        """
        if self._band_bulge is None:
            return [(flux, cov)]
        psf_cov = np.eye(2) * (fwhm / FWHM_PER_SIGMA) ** 2
        frac = np.where(point_like, 0.0, np.clip(self._band_bulge[band_name][idx], 0.0, 1.0))
        return [
            (flux * (1.0 - frac), np.where(point_like[:, None, None], 0.0,
                                           self._cov_components["disk"][idx]) + psf_cov),
            (flux * frac, np.where(point_like[:, None, None], 0.0,
                                   self._cov_components["bulge"][idx]) + psf_cov),
        ]  # fmt: skip

    def _draw_one(self, image, i, flux, x, y, half, psf, local, band_name) -> None:
        """Draw galaxy ``i`` exactly (GalSim FFT convolution with the PSF) into ``image``."""
        import galsim

        # GalSim pixel centres are integers starting at 1; astropy's start at 0
        gx, gy = x + 1.0, y + 1.0
        ix, iy = round(gx), round(gy)
        bounds = galsim.BoundsI(ix - half, ix + half, iy - half, iy + half)
        overlap = bounds & image.bounds
        if not overlap.isDefined():
            return
        stamp = galsim.ImageF(bounds, wcs=local)
        offset = galsim.PositionD(gx - ix, gy - iy)
        obj = galsim.Convolve(
            self._galaxy(i, band_name), psf, real_space=False, gsparams=_FFT_GSPARAMS()
        )
        obj = obj.withFlux(flux)
        obj.drawImage(image=stamp, offset=offset, method="no_pixel")
        image[overlap] += stamp[overlap]


@lru_cache(maxsize=1)
def _FFT_GSPARAMS() -> galsim.GSParams:  # noqa: N802 (a constant, built lazily)
    """GalSim accuracy for the FFT path: 1% ringing and folding, invisible under the noise.

    Neither setting moves flux (k = 0 is exact and folded light stays in the stamp), so the
    flux round trip is unaffected; they shrink the FFTs about fourfold.
    """
    import galsim

    return galsim.GSParams(folding_threshold=1e-2, maxk_threshold=1e-2)


@lru_cache(maxsize=4096)
def _psf_neff(band_name: str, fwhm: float, jac: tuple[float, ...]) -> float:
    """Effective number of pixels 1 / sum(p_i^2) of the PSF on this pixel grid."""
    import galsim

    local = galsim.JacobianWCS(*jac)
    scale = math.sqrt(abs(jac[0] * jac[3] - jac[1] * jac[2]))
    half = math.ceil(PSF_RADIUS_FWHM[get_band(band_name).survey] * fwhm / scale) + 1
    stamp = galsim.ImageF(2 * half + 1, 2 * half + 1, wcs=local)
    psf_profile(band_name, fwhm).drawImage(image=stamp, method="no_pixel")
    p = stamp.array.astype(float)
    p /= p.sum()
    return float(1.0 / np.sum(p**2))


@lru_cache(maxsize=4096)
def _noise_sigma(band_name: str, fwhm: float, jac: tuple[float, ...]) -> float:
    flux_5sigma = float(mag_to_nanomaggies(get_band(band_name).depth_5sigma))
    return flux_5sigma / (5.0 * math.sqrt(_psf_neff(band_name, fwhm, jac)))


def _noise_seed(seed: int, band_name: str, ra: float, dec: float, shape: tuple[int, int]) -> int:
    key = f"noise/{seed}/{band_name}/{ra:.7f}/{dec:.7f}/{shape[0]}x{shape[1]}"
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little")
