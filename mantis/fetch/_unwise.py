"""unWISE W1/W2 cutouts from unwise.me (``/cutout_fits``).

The service answers a tar.gz holding, per tile that overlaps the position, the image,
inverse-variance, coverage and standard-deviation FITS of each band. Near a tile edge it
returns several tiles, each clipped to the tile bounds; the archive is kept exactly as served
and the build stage stitches the tiles. Errors come back as HTTP 200 with a text body, so
every body must be a complete gzip stream of a tar whose FITS members are complete.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mantis.exceptions import NoCoverageError
from mantis.fetch._base import CutoutFetcher, PlannedRequest, Product, SkyObject
from mantis.fetch._client import HttpClient
from mantis.fetch._validate import check_unwise_tar

__all__ = ["UnwiseFetcher"]


class UnwiseFetcher(CutoutFetcher):
    """unWISE coadd cutouts, one tar.gz per object."""

    survey = "unwise"

    def __init__(self, endpoint: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(endpoint, **kwargs)
        self.version = str(self.options.get("version", endpoint.get("version", "neo7")))
        self.bands = str(self.options.get("bands", "12"))

    def build_requests(
        self, objects: Sequence[SkyObject], size: int | None = None
    ) -> list[PlannedRequest]:
        """One ``cutout_fits`` GET per object (``size`` pixels, default the object window).

        No ``file_*`` flag is sent, so the service returns all four products per band (any
        flag present, even ``=0``, would restrict the answer to the flagged ones).
        """
        return [
            PlannedRequest(
                "GET",
                self.url("cutout_path"),
                {
                    "version": self.version,
                    "ra": f"{o.ra:.8f}",
                    "dec": f"{o.dec:.8f}",
                    "size": str(size or self.pixels),
                    "bands": self.bands,
                },
                object_ids=(o.id,),
            )
            for o in objects
        ]

    async def fetch_object(self, client: HttpClient, obj: SkyObject) -> Product:
        """Fetch and check the tar.gz; an archive without members means no coverage."""
        (request,) = self.build_requests([obj])
        reply = await self.send(client, request, validate=check_unwise_tar)
        if not check_unwise_tar(reply.body):
            raise NoCoverageError(f"unwise.me returned no tile at ra={obj.ra}, dec={obj.dec}")
        return Product({".tar.gz": reply.body})

    async def fetch_group(
        self, client: HttpClient, members: Sequence[SkyObject], files: Any
    ) -> dict[str, Product | Exception]:
        """One ``cutout_fits`` for neighbours; each member's tiles cut from it."""
        from mantis.fetch._shared import fetch_unwise_shared

        return await fetch_unwise_shared(self, client, members, files)
