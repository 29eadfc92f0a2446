"""Pan-STARRS1 3pi stack cutouts from ps1images.stsci.edu.

Two steps, as the service requires: the skycell file names are looked up in batches (one POST
of many ``ra dec`` lines to ``ps1filenames.py`` per chunk of objects, shared by every object of
the chunk), then ``fitscut.cgi`` cuts one FITS per band at the object's position.

Coverage: south of dec -30 the lookup answers an empty table, recorded as ``no_coverage``.
A cutout that is NaN everywhere (a gap or mask in the stack) is retried like any bad body,
since a flaky answer looks the same; when it stays all-NaN after every attempt that band is
left out of the product and named in the manifest's ``last_error``; if every band is so, the
object is ``no_coverage``. Partly NaN cutouts (skycell edges) are kept as served; the build
stage masks them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import numpy as np

from mantis.exceptions import FetchError, NoCoverageError
from mantis.fetch._base import CutoutFetcher, PlannedRequest, Product, SkyObject
from mantis.fetch._client import HttpClient, RequestFailedError
from mantis.fetch._validate import InvalidBodyError, check_fits, describe_body, fits_image
from mantis.surveys import survey as survey_info

__all__ = [
    "PanStarrsFetcher",
    "assign_lookup_rows",
    "check_ps1_cutout",
    "parse_filenames_table",
]

ALL_NAN = "all-NaN cutout"
_MATCH_TOLERANCE_DEG = 1e-5
_SKYCELL_REACH_DEG = 0.5  # a position lies within ~0.3 deg of its skycell centre


def parse_filenames_table(text: str) -> list[dict[str, str]]:
    """Rows of a ``ps1filenames.py`` answer, keyed by header name.

    Raises
    ------
    InvalidBodyError
        If the text is not the whitespace table with a ``filename`` column (HTML, an error).
    """
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise InvalidBodyError("empty body", "ps1filenames answered nothing")
    header = lines[0].split()
    if "filename" not in header or "filter" not in header:
        raise InvalidBodyError(*describe_body(text.encode()))
    rows = []
    for line in lines[1:]:
        values = line.split()
        if len(values) != len(header):
            raise InvalidBodyError("truncated body", f"table row {line[:60]!r}")
        rows.append(dict(zip(header, values, strict=True)))
    return rows


def _check_table(body: bytes) -> None:
    parse_filenames_table(body.decode("utf-8", "replace"))


def _separation_deg(obj: SkyObject, row: dict[str, str]) -> float:
    try:
        ra, dec = float(row["ra"]), float(row["dec"])
    except (KeyError, ValueError):
        return np.inf
    dra = (obj.ra - ra + 180.0) % 360.0 - 180.0
    return float(np.hypot(dra * np.cos(np.radians((obj.dec + dec) / 2)), obj.dec - dec))


def assign_lookup_rows(
    objects: Sequence[SkyObject], rows: list[dict[str, str]], n_filters: int
) -> dict[str, list[dict[str, str]] | None]:
    """Give each object its rows of a batched ``ps1filenames.py`` answer.

    Rows whose ``ra``/``dec`` echo a requested position go to that object. When the rows carry
    skycell centres instead, the answer lists, in request order, ``n_filters`` rows for every
    position inside the 3pi footprint and none for positions south of it; that order is used
    when the row count agrees and every block's skycell centre lies near its object. Objects
    that cannot be matched either way get None (the caller looks them up one by one).
    """
    by_id: dict[str, list[dict[str, str]] | None] = {o.id: [] for o in objects}
    if not rows:
        return by_id
    ras, decs = np.array([o.ra for o in objects]), np.array([o.dec for o in objects])
    unmatched = []
    for row in rows:
        try:
            ra, dec = float(row["ra"]), float(row["dec"])
        except (KeyError, ValueError):
            ra = dec = np.nan
        hits = np.flatnonzero(
            (np.abs(ras - ra) < _MATCH_TOLERANCE_DEG) & (np.abs(decs - dec) < _MATCH_TOLERANCE_DEG)
        )
        for i in hits:
            by_id[objects[i].id].append(row)
        if hits.size == 0:
            unmatched.append((ra, dec))
    if not unmatched:
        return by_id
    covered = [o for o in objects if o.dec >= survey_info("ps1").min_dec]
    blocks = [rows[i : i + n_filters] for i in range(0, len(rows), n_filters)]
    if len(rows) == len(covered) * n_filters and all(
        len({(r.get("projcell"), r.get("subcell")) for r in block}) == 1
        and _separation_deg(obj, block[0]) < _SKYCELL_REACH_DEG
        for obj, block in zip(covered, blocks, strict=True)
    ):
        by_id = {o.id: [] for o in objects}
        for obj, block in zip(covered, blocks, strict=True):
            by_id[obj.id] = list(block)
        return by_id
    return {o.id: (v or None) for o, v in ((o, by_id[o.id]) for o in objects)}


def check_ps1_cutout(body: bytes) -> None:
    """Accept a complete fitscut FITS whose image holds at least one finite pixel."""
    hdus = check_fits(body)
    image = fits_image(body, hdus[0])
    if image is None:
        raise InvalidBodyError("no image in FITS", "fitscut primary HDU is empty")
    if not np.isfinite(image).any():
        raise InvalidBodyError(ALL_NAN, f"{image.shape} pixels all NaN")


class PanStarrsFetcher(CutoutFetcher):
    """PS1 g r i z y stack cutouts (one FITS per band, as served)."""

    survey = "ps1"

    def __init__(self, endpoint: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(endpoint, **kwargs)
        self.bands = tuple(self.options.get("bands", survey_info("ps1").bands))
        self.lookup_chunk = int(self.options.get("lookup_chunk", 250))
        self.image_type = str(self.options.get("type", "stack"))
        self._chunk_of: dict[str, int] = {}
        self._chunks: list[list[SkyObject]] = []
        self._lookups: dict[int, asyncio.Task] = {}

    def body_cap(self, request: PlannedRequest) -> tuple[int | None, str]:
        """``max_lookup_mb`` for file-name lookups, ``max_cutout_mb`` for each band's FITS."""
        key = "max_lookup_mb" if request.purpose == "lookup" else "max_cutout_mb"
        megabytes = self.options.get(key)
        return (None if megabytes is None else int(megabytes * 2**20)), f"ps1.{key}"

    # -- request plans ---------------------------------------------------------------------
    def build_requests(self, objects: Sequence[SkyObject]) -> list[PlannedRequest]:
        """Build the batched file-name lookups for ``objects`` (one POST per chunk).

        The cutout requests depend on the lookup's answer; `cutout_requests` builds them.
        """
        return [
            self.lookup_request(objects[i : i + self.lookup_chunk])
            for i in range(0, len(objects), self.lookup_chunk)
        ]

    def lookup_request(self, objects: Sequence[SkyObject]) -> PlannedRequest:
        """POST of many positions to ``ps1filenames.py``."""
        lines = "".join(f"{o.ra:.8f} {o.dec:.8f}\n" for o in objects)
        return PlannedRequest(
            "POST",
            self.url("filenames_path"),
            {},
            form={"filters": "".join(self.bands), "type": self.image_type, "file": lines},
            purpose="lookup",
            object_ids=tuple(o.id for o in objects),
        )

    def single_lookup_request(self, obj: SkyObject) -> PlannedRequest:
        """GET lookup of one position (used when a batch answer cannot be matched)."""
        params = {
            "ra": f"{obj.ra:.8f}",
            "dec": f"{obj.dec:.8f}",
            "filters": "".join(self.bands),
            "type": self.image_type,
        }
        return PlannedRequest(
            "GET", self.url("filenames_path"), params, purpose="lookup", object_ids=(obj.id,)
        )

    def cutout_requests(
        self, obj: SkyObject, rows: list[dict[str, str]], size: int | None = None
    ) -> list[PlannedRequest]:
        """One ``fitscut.cgi`` FITS request per band row of the lookup table."""
        return [
            PlannedRequest(
                "GET",
                self.url("cutout_path"),
                {
                    "ra": f"{obj.ra:.8f}",
                    "dec": f"{obj.dec:.8f}",
                    "size": str(size or self.pixels),
                    "format": "fits",
                    "red": row["filename"],
                },
                purpose=f"cutout {row['filter']}",
                object_ids=(obj.id,),
            )
            for row in rows
        ]

    # -- lookups -----------------------------------------------------------------------------
    def prepare(self, objects: Sequence[SkyObject]) -> None:
        """Split the objects into lookup chunks in fetch order."""
        self._chunks = [
            list(objects[i : i + self.lookup_chunk])
            for i in range(0, len(objects), self.lookup_chunk)
        ]
        self._chunk_of = {o.id: k for k, chunk in enumerate(self._chunks) for o in chunk}
        self._lookups = {}

    async def _lookup_chunk(self, client: HttpClient, k: int) -> dict[str, list[dict] | None]:
        chunk = self._chunks[k]
        reply = await self.send(client, self.lookup_request(chunk), validate=_check_table)
        rows = parse_filenames_table(reply.body.decode("utf-8", "replace"))
        return assign_lookup_rows(chunk, rows, len(self.bands))

    async def filename_rows(self, client: HttpClient, obj: SkyObject) -> list[dict[str, str]]:
        """Lookup rows (one per band with data) for one object, batched with its chunk."""
        rows: list[dict] | None = None
        k = self._chunk_of.get(obj.id)
        if k is not None:
            if k not in self._lookups:
                self._lookups[k] = asyncio.ensure_future(self._lookup_chunk(client, k))
            rows = (await asyncio.shield(self._lookups[k]))[obj.id]
        if rows is None:
            reply = await self.send(client, self.single_lookup_request(obj), validate=_check_table)
            rows = parse_filenames_table(reply.body.decode("utf-8", "replace"))
        return rows

    # -- cutouts -----------------------------------------------------------------------------
    def band_rows(self, obj: SkyObject, rows: list[dict[str, str]]) -> list[dict[str, str]]:
        """Pick the first lookup row of each band, in band order.

        Raises
        ------
        NoCoverageError
            If the lookup lists no file of any wanted band.
        """
        rows = [r for r in rows if r.get("filter") in self.bands]
        if not rows:
            raise NoCoverageError(
                f"ps1filenames lists no {self.image_type} file at ra={obj.ra}, dec={obj.dec} "
                "(outside the 3pi footprint, dec < -30)"
            )
        # one row per band; several skycells may contain the position, the first one is used
        first: dict[str, dict] = {}
        for row in rows:
            first.setdefault(row["filter"], row)
        return [first[b] for b in self.bands if b in first]

    def assemble(self, files: dict[str, bytes], empty: list[str]) -> Product:
        """Product of the bands with data; bands without are named in the note."""
        note = None
        if empty or len(files) < len(self.bands):
            missing = [b for b in self.bands if f".{b}.fits" not in files]
            note = f"no coverage in band(s) {''.join(missing)}: {ALL_NAN} after every attempt"
        if not files:
            raise NoCoverageError(note)
        return Product(files, note)

    async def fetch_bands(
        self, client: HttpClient, obj: SkyObject, ordered: list[dict[str, str]]
    ) -> Product:
        """Fetch one cutout per band row for one object."""
        requests = self.cutout_requests(obj, ordered)
        outcomes = await asyncio.gather(
            *(self.send(client, r, validate=check_ps1_cutout) for r in requests),
            return_exceptions=True,
        )
        files, empty = {}, []
        for row, outcome in zip(ordered, outcomes, strict=True):
            if isinstance(outcome, RequestFailedError) and outcome.reason == ALL_NAN:
                empty.append(row["filter"])
            elif isinstance(outcome, BaseException):
                raise outcome
            else:
                files[f".{row['filter']}.fits"] = outcome.body
        return self.assemble(files, empty)

    async def fetch_object(self, client: HttpClient, obj: SkyObject) -> Product:
        """Look up the skycell files, then fetch one cutout per band."""
        rows = await self.filename_rows(client, obj)
        return await self.fetch_bands(client, obj, self.band_rows(obj, rows))

    async def fetch_group(
        self, client: HttpClient, members: Sequence[SkyObject], files: Any
    ) -> dict[str, Product | Exception]:
        """Look up every member, then share one cutout per band among those on one skycell."""
        from mantis.fetch._shared import fetch_ps1_shared

        looked = await asyncio.gather(
            *(self.filename_rows(client, o) for o in members), return_exceptions=True
        )
        outcomes: dict[str, Product | Exception] = {}
        same_files: dict[tuple[str, ...], list[tuple[SkyObject, list[dict]]]] = {}
        for obj, rows in zip(members, looked, strict=True):
            if isinstance(rows, FetchError):
                outcomes[obj.id] = rows
                continue
            if isinstance(rows, BaseException):
                raise rows
            try:
                ordered = self.band_rows(obj, rows)
            except NoCoverageError as err:
                outcomes[obj.id] = err
                continue
            same_files.setdefault(tuple(r["filename"] for r in ordered), []).append((obj, ordered))
        for entries in same_files.values():
            outcomes.update(await fetch_ps1_shared(self, client, entries, files))
        return outcomes
