"""Test support for the sky: point-source skies, and the server runners re-exported.

`running_server` (a subprocess ``mantis sky serve``) and `serving_in_process` live with the
server (`mantis.sky`); they are re-exported here for the tests.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from mantis.sky._runner import SERVER_START_TIMEOUT_S, running_server, serving_in_process
from mantis.surveys import BANDS, band, mag_to_nanomaggies

__all__ = [
    "SERVER_START_TIMEOUT_S",
    "PointSourceUniverse",
    "point_source_universe",
    "running_server",
    "serving_in_process",
    "serving_in_thread",
]


class PointSourceUniverse:
    """A tiny stand-in sky: Gaussian point sources of known magnitudes, no noise.

    It has the two methods the server needs (`render`, `psf_fwhm`), draws each source with the
    band's typical PSF (flux integrated over each pixel, so totals are exact), and is meant
    for tests that need truth known to the last digit.

    Parameters
    ----------
    sources : iterable of (ra, dec, mags)
        Position in degrees and a mapping band name -> AB magnitude.
    """

    def __init__(self, sources: Iterable[tuple[float, float, dict[str, float]]]) -> None:
        self.sources = [(float(ra), float(dec), dict(mags)) for ra, dec, mags in sources]

    def psf_fwhm(self, band_name: str, ra: float, dec: float) -> float:
        """PSF FWHM in arcsec (the band's typical value everywhere)."""
        return band(band_name).psf_fwhm

    def render(self, band_name: str, wcs, shape: tuple[int, int], *, noise: bool = True):
        """AB nanomaggies per pixel on ``wcs``; ``noise`` is accepted and ignored."""
        from scipy.special import erf

        height, width = shape
        scale = float(np.sqrt(abs(np.linalg.det(wcs.celestial.pixel_scale_matrix)))) * 3600.0
        sigma = band(band_name).psf_fwhm / (2.0 * np.sqrt(2.0 * np.log(2.0))) / scale
        image = np.zeros(shape)
        edges_x = np.arange(width + 1) - 0.5
        edges_y = np.arange(height + 1) - 0.5
        for ra, dec, mags in self.sources:
            x, y = wcs.celestial.all_world2pix(ra, dec, 0)
            if not (-10 * sigma < x < width + 10 * sigma and -10 * sigma < y < height + 10 * sigma):
                continue
            fx = np.diff(erf((edges_x - x) / (np.sqrt(2.0) * sigma))) / 2.0
            fy = np.diff(erf((edges_y - y) / (np.sqrt(2.0) * sigma))) / 2.0
            image += float(mag_to_nanomaggies(mags[band_name])) * np.outer(fy, fx)
        return image.astype(np.float32)


def point_source_universe(seed: int = 0) -> PointSourceUniverse:
    """Stand-in sky for ``--config mantis.sky.testing:point_source_universe``.

    A 5 x 5 grid of sources 30 arcsec apart around (150.1, 2.2), magnitudes 16-18 depending on
    the seed; a second grid around (10.3, -45.0), south of the PS1 footprint.
    """
    rng = np.random.default_rng(seed)
    sources = []
    for ra0, dec0 in ((150.1, 2.2), (10.3, -45.0)):
        for i in range(5):
            for j in range(5):
                mags = {b.name: float(rng.uniform(16.0, 18.0)) for b in BANDS}
                sources.append(
                    (ra0 + (i - 2) * 30.0 / 3600.0, dec0 + (j - 2) * 30.0 / 3600.0, mags)
                )
    return PointSourceUniverse(sources)


@contextlib.contextmanager
def serving_in_thread(universe: Any, **settings: Any) -> Iterator[str]:
    """`serving_in_process` on an event loop of its own thread, so synchronous code can fetch.

    Yields
    ------
    str
        ``http://127.0.0.1:PORT``; the server stops when the block exits.
    """
    import asyncio
    import threading

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = serving_in_process(universe, **settings)
    url = asyncio.run_coroutine_threadsafe(server.__aenter__(), loop).result(60)
    try:
        yield url
    finally:
        asyncio.run_coroutine_threadsafe(server.__aexit__(None, None, None), loop).result(60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
