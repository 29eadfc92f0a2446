"""The `Universe`: a simulated population plus the means to render it and write its catalogues."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mantis.config import cache_root, config_file, config_hash, load_yaml
from mantis.exceptions import CatalogError, ConfigError, MantisError
from mantis.sky._population import generate_population, validate_sky_config
from mantis.surveys import BANDS
from mantis.surveys import band as get_band

if TYPE_CHECKING:
    from astropy.wcs import WCS

    from mantis.sky._render import SkyRenderer

__all__ = ["POPULATION_VERSION", "Universe", "default_cache_dir", "write_catalog"]

POPULATION_VERSION = 1  # bump when the population model changes, so caches are rebuilt
_OPTIONAL_POPULATION_KEYS = ("morphology", "clustering")
MAG_COLUMNS = tuple(f"mag_{b.name}" for b in BANDS)


def default_cache_dir() -> Path:
    """Directory of cached populations: ``$MANTIS_SKY_CACHE``, else ``<cache root>/sky``.

    The cache root is ``$MANTIS_CACHE_DIR`` or the user cache folder (`mantis.config.cache_root`),
    never a folder inside the installed package.
    """
    if env := os.environ.get("MANTIS_SKY_CACHE"):
        return Path(env)
    return cache_root() / "sky"


def _write_atomic(frame: pd.DataFrame, path: Path, writer: str = "parquet") -> None:
    """Write ``frame`` to a temporary name beside ``path`` and rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        if writer == "parquet":
            frame.to_parquet(tmp, index=False)
        elif writer == "csv":
            frame.to_csv(tmp, index=False)
        else:
            from astropy.table import Table

            Table.from_pandas(frame).write(tmp, format="fits", overwrite=True)
        Path(tmp).replace(path)
    finally:
        Path(tmp).unlink(missing_ok=True)


class Universe:
    """A simulated (or user-given) set of sources that can be rendered in any band.

    Build one with `from_config` or `from_catalog`.

    Parameters
    ----------
    sources : pandas.DataFrame
        One row per source with `mantis.sky._population.SOURCE_COLUMNS`.
    seed : int
        Seed of the PSF pattern and of the pixel noise.
    config : dict or None
        The validated sky configuration, when built from one.
    """

    def __init__(
        self, sources: pd.DataFrame, *, seed: int = 0, config: dict[str, Any] | None = None
    ) -> None:
        self._sources = sources.reset_index(drop=True)
        self.seed = int(seed)
        self.config = config
        self._renderer: SkyRenderer | None = None
        self._row_of_id: pd.Series | None = None

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def from_config(
        cls, config: Mapping[str, Any] | str | None = None, *, seed: int = 0
    ) -> Universe:
        """Build (or load from the cache) the universe of a sky configuration.

        Parameters
        ----------
        config : mapping, str or None
            A configuration mapping, a name under ``mantis/configs/sky/`` (``'default'``,
            ``'smoke'``, ``'test'``, ``'rich'``) or a YAML path; None means ``'default'``. Keys
            left out take the defaults of the sky schema.
        seed : int
            Seed of every random draw.

        Raises
        ------
        ConfigError
            If the configuration is unknown or holds a value that is not allowed.
        """
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
            raise ConfigError(f"sky seed must be a non-negative integer, got {seed!r}")
        if config is None:
            config = "default"
        origin = None
        if isinstance(config, str):
            name = config
            is_path = Path(name).suffix in (".yaml", ".yml")
            path = config_file(name if is_path or name.startswith("sky/") else f"sky/{name}")
            config, origin = dict(load_yaml(path)), str(path)
            config.setdefault("name", Path(name).stem if is_path else name)
        cfg = validate_sky_config(config, origin=origin)
        cache_dir = Path(cfg.pop("cache_dir", None) or default_cache_dir())
        # renderer options never change the population, and the population options left at
        # their defaults keep the cache names the sky had before they existed
        defaults = validate_sky_config({})
        hashed = {
            k: v
            for k, v in cfg.items()
            if k not in ("name", "rendering")
            and not (k in _OPTIONAL_POPULATION_KEYS and v == defaults[k])
        }
        hashed["population_version"] = POPULATION_VERSION
        path = cache_dir / f"{config_hash(hashed)}-{int(seed)}.parquet"
        if path.is_file():
            sources = pd.read_parquet(path)
        else:
            sources = generate_population(cfg, int(seed))
            _write_atomic(sources, path)
        return cls(sources, seed=int(seed), config=cfg)

    @classmethod
    def from_catalog(cls, path: str | os.PathLike, *, seed: int = 0) -> Universe:
        """Render a user's own source catalogue instead of a simulated one.

        Parameters
        ----------
        path : path-like
            A table of any kind ``mantis.catalog`` reads, with columns ``ra, dec`` (degrees),
            ``mag_<band>`` (AB) for each of the nine bands, and optionally ``id``, ``z``, ``kind``
            (``'galaxy' | 'star'``), ``size_arcsec`` (half-light radius, 0 for a point source),
            ``ellipticity`` ((1 - q) / (1 + q), in [0, 1)), ``pa_deg`` (east of north) and
            ``sersic_n`` (0.5 to 6, rounded to 0.5).

        Raises
        ------
        CatalogError
            If the file cannot be read or a column is missing or out of range.
        """
        from mantis.sky._catalog_input import sources_from_table

        return cls(sources_from_table(path), seed=seed, config=None)

    # -- tables ------------------------------------------------------------------------------
    @property
    def sources(self) -> pd.DataFrame:
        """Every source: ``id, ra, dec, z, kind, mag_<band>, ebv`` and morphology columns."""
        return self._sources

    def spec_catalog(self) -> pd.DataFrame:
        """Return the spectroscopic sample: ``id, ra, dec, z`` (only 0 < z < 1.6)."""
        spec = self._sources[self._sources["spec_sample"] != ""]
        return spec[["id", "ra", "dec", "z"]].reset_index(drop=True)

    def truth(self, ids: Iterable[str]) -> pd.DataFrame:
        """Truth rows for ``ids``, in that order, with 1-sigma magnitude errors from the depths.

        Raises
        ------
        CatalogError
            If an id is not a source of this universe (the first ten are named).
        """
        if self._row_of_id is None:
            self._row_of_id = pd.Series(np.arange(len(self._sources)), index=self._sources["id"])
        ids = [str(i) for i in ids]
        missing = [i for i in ids if i not in self._row_of_id.index]
        if missing:
            raise CatalogError(f"{len(missing)} ids are not in this universe: {missing[:10]}")
        rows = self._sources.iloc[self._row_of_id.loc[ids].to_numpy()].reset_index(drop=True)
        out = rows.copy()
        for b in BANDS:
            snr = 5.0 * np.power(10.0, -0.4 * (rows[f"mag_{b.name}"] - b.depth_5sigma))
            out[f"magerr_{b.name}"] = 2.5 / np.log(10.0) / snr
        return out

    # -- rendering ---------------------------------------------------------------------------
    @property
    def renderer(self) -> SkyRenderer:
        """The `SkyRenderer` over these sources (built on first use)."""
        if self._renderer is None:
            from mantis.sky._render import SkyRenderer

            options = (self.config or {}).get("rendering", {})
            self._renderer = SkyRenderer(self._sources, seed=self.seed, **options)
        return self._renderer

    def psf_fwhm(self, band: str, ra: float, dec: float) -> float:
        """PSF FWHM in arcsec of ``band`` at (ra, dec); PS1 seeing varies over the sky."""
        from mantis.sky._render import psf_fwhm

        _check_band(band)
        return psf_fwhm(band, float(ra), float(dec), self.seed)

    # `render` and `noise_sigma` take a `mantis.sky._render.NativeFrame`
    supports_frames = True

    def noise_sigma(
        self, band: str, wcs: WCS, shape: tuple[int, int], *, frame: Any = None
    ) -> float:
        """Per-pixel 1-sigma noise (AB nanomaggies) that `render` adds for this request."""
        from mantis.sky._render import local_jacobian

        _check_band(band)
        if frame is not None:
            jac, ra, dec = np.array(frame.jac).reshape(2, 2), frame.ra, frame.dec
        else:
            jac, ra, dec = local_jacobian(wcs, tuple(shape))
        return self.renderer.noise_sigma(band, jac, self.psf_fwhm(band, ra, dec))

    def render(
        self,
        band: str,
        wcs: WCS,
        shape: tuple[int, int],
        *,
        noise: bool = True,
        frame: Any = None,
    ) -> np.ndarray:
        """Pixels of ``band`` on ``wcs`` in AB nanomaggies per pixel.

        Parameters
        ----------
        band : str
            One of FUV, NUV, g, r, i, z, y, W1, W2.
        wcs : astropy.wcs.WCS
            Any two-dimensional celestial WCS; a source lands where the WCS puts it.
        shape : tuple of int
            ``(ny, nx)``.
        noise : bool
            Add sky noise at the band's depth (seeded by the request, so the same request
            gives the same pixels whatever came before).
        frame : mantis.sky._render.NativeFrame, optional
            The request is a window of a fixed native image: pixels then depend only on their
            place in it (PSF, noise level and noise draws of the native image), so overlapping
            requests agree where they overlap.

        Returns
        -------
        ndarray of float32, shape ``(ny, nx)``
            Sky-subtracted pixels holding every source whose light falls in them.
        """
        _check_band(band)
        return self.renderer.render(band, wcs, shape, noise=noise, frame=frame)


def _check_band(name: str) -> None:
    try:
        get_band(name)
    except KeyError as err:
        raise MantisError(str(err.args[0])) from None


def write_catalog(universe: Universe, path: str | os.PathLike) -> tuple[Path, Path]:
    """Write the spec-z catalogue and, beside it, its truth table.

    Parameters
    ----------
    universe : Universe
        The universe whose `Universe.spec_catalog` is written.
    path : path-like
        ``.parquet``, ``.csv`` or ``.fits``; the truth goes to ``<stem>.truth.parquet``.

    Returns
    -------
    tuple of Path
        The catalogue and truth paths.

    Raises
    ------
    CatalogError
        If the extension is not one of those allowed.
    """
    path = Path(path)
    writers = {".parquet": "parquet", ".csv": "csv", ".fits": "fits"}
    suffix = path.suffix.lower()
    if suffix not in writers:
        raise CatalogError(
            f"catalogue file {str(path)!r} has extension {path.suffix!r}; allowed: "
            ".parquet, .csv, .fits"
        )
    spec = universe.spec_catalog()
    truth_path = path.with_name(f"{path.stem}.truth.parquet")
    _write_atomic(universe.truth(spec["id"]), truth_path)
    _write_atomic(spec, path, writers[suffix])
    return path, truth_path
