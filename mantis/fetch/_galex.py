"""GALEX NUV/FUV cutouts through the Legacy Survey viewer (``layer=galex``).

The viewer resamples the GR6/7 background-subtracted intensity maps (counts/s per pixel) onto a
TAN grid centred on the request and answers one FITS: HDU0 the cube (NUV, FUV), HDU1 its
inverse variance. Outside every GALEX pointing the viewer fails with HTTP 500 (an uncaught
NoOverlapError); inside the footprint but in a gap it answers zeros. Both are recorded as
``no_coverage``: HTTP 500 only when it repeats on consecutive attempts (a single 500 is an
ordinary server fault and is retried), zeros only when every pixel of the cube is exactly 0.

Alternatives, should the viewer be unavailable: CDS hips2fits with the HiPS
``CDS/P/GALEXGR6_7/NUV`` and ``/FUV`` (pixels are counts/s per native 1.5" pixel, resampled
bilinearly, NaN outside coverage), or whole ``-nd-int``/``-fd-int`` tiles from MAST
(``astroquery.mast.Observations``, obs_collection GALEX) cut locally.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from mantis.exceptions import NoCoverageError
from mantis.fetch._base import CutoutFetcher, PlannedRequest, Product, SkyObject
from mantis.fetch._client import HttpClient
from mantis.fetch._validate import InvalidBodyError, check_fits, fits_image
from mantis.surveys import survey as survey_info

__all__ = ["GalexFetcher", "galex_cube_is_empty"]


def galex_cube_is_empty(body: bytes) -> bool:
    """Tell whether a cutout cube holds no data: every pixel exactly 0 (no NaN)."""
    hdus = check_fits(body)
    image = fits_image(body, hdus[0])
    if image is None:
        # tile-compressed answers keep the image in an extension: let astropy decode it
        import io
        import warnings

        from astropy.io import fits

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with fits.open(io.BytesIO(body)) as hdul:
                image = next((h.data for h in hdul if h.is_image and h.data is not None), None)
        if image is None:
            raise InvalidBodyError("no image in FITS", "viewer answer holds no image HDU")
    return bool(np.all(image == 0))


class GalexFetcher(CutoutFetcher):
    """GALEX cutout cubes from the Legacy Survey viewer."""

    survey = "galex"

    def __init__(self, endpoint: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(endpoint, **kwargs)
        self.layer = str(endpoint.get("layer", "galex"))
        self.bands = str(self.options.get("bands", "nf"))
        self.invvar = bool(self.options.get("invvar", True))
        self.no_coverage_after = int(self.options.get("no_coverage_after_500s", 3))

    def build_requests(
        self, objects: Sequence[SkyObject], size: int | None = None
    ) -> list[PlannedRequest]:
        """One ``fits-cutout`` GET per object at the native 1.5"/px, ``size`` pixels a side."""
        scale = survey_info(self.survey).pixel_scale
        requests = []
        for o in objects:
            params = {
                "ra": f"{o.ra:.8f}",
                "dec": f"{o.dec:.8f}",
                "layer": self.layer,
                "size": str(size or self.pixels),
                "pixscale": f"{scale}",
                "bands": self.bands,
            }
            if self.invvar:
                params["invvar"] = "1"
            requests.append(
                PlannedRequest("GET", self.url("cutout_path"), params, object_ids=(o.id,))
            )
        return requests

    def check_cube(self, body: bytes) -> None:
        """Accept a complete FITS holding the cube (not all NaN) and, if asked for, its invvar.

        A body cut exactly at an HDU boundary is still valid FITS, so the HDU count is checked.
        """
        hdus = check_fits(body)
        expected = 2 if self.invvar else 1
        if len(hdus) < expected:
            raise InvalidBodyError(
                "truncated body", f"{len(hdus)} HDU(s), expected {expected} (cube, invvar)"
            )
        cube = fits_image(body, hdus[0])
        if cube is not None and cube.size and not np.isfinite(cube).any():
            # the viewer fills gaps with zeros, never NaN: a NaN cube is a broken answer
            raise InvalidBodyError("all-NaN cutout", f"cube {cube.shape} NaN everywhere")

    async def fetch_object(self, client: HttpClient, obj: SkyObject) -> Product:
        """Fetch the cube; repeated HTTP 500 or an all-zero cube mean no coverage."""
        (request,) = self.build_requests([obj])
        reply = await self.send(
            client,
            request,
            validate=self.check_cube,
            no_coverage_status=500,
            no_coverage_after=self.no_coverage_after,
        )
        if galex_cube_is_empty(reply.body):
            raise NoCoverageError(f"GALEX cube all zeros at ra={obj.ra}, dec={obj.dec} (a gap)")
        return Product({".fits": reply.body})

    async def fetch_group(
        self, client: HttpClient, members: Sequence[SkyObject], files: Any
    ) -> dict[str, Product | Exception]:
        """One viewer cube for neighbours; each member's window cut from it."""
        from mantis.fetch._shared import fetch_galex_shared

        return await fetch_galex_shared(self, client, members, files)
