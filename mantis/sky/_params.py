"""Request parameters of the imitated services, validated the way each real service does.

Each ``parse_*`` function turns a query mapping into the keyword arguments of a builder in
`mantis.sky._formats`, or raises `BadRequest` carrying the status and body the real service
would answer with (unwise.me answers most errors with HTTP 200 and a line of text).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from mantis.sky._coverage import PS1_MIN_DEC, ps1_skycell
from mantis.sky._formats import GALEX_BAND_LETTERS, PS1_TYPE_SUFFIX, UNWISE_FILE_TYPES

__all__ = [
    "GALEX_MAX_SIZE",
    "PS1_MAX_SIZE",
    "UNWISE_MAX_SIZE",
    "UNWISE_VERSIONS",
    "BadRequest",
    "parse_fitscut",
    "parse_galex",
    "parse_ps1_filenames",
    "parse_unwise",
]

PS1_MAX_SIZE = 2400  # the largest cutout third parties report fetching
UNWISE_MAX_SIZE = 1024
GALEX_MAX_SIZE = 3000
UNWISE_VERSIONS = ("allwise", "neo1", "neo2", "neo3", "neo4", "neo5", "neo6", "neo7")
_PS1_FILE_RE = re.compile(
    r"^/rings\.v3\.skycell/(\d{4})/(\d{3})/rings\.v3\.skycell\.(\d{4})\.(\d{3})"
    r"\.stk\.([grizy])\.unconv(\.wt)?\.fits$"
)
_FALSE_WORDS = ("", "false")  # Django BooleanField: only these (and absence) mean False


class BadRequest(Exception):  # noqa: N818  (an HTTP answer, not a program error)
    """A request the real service refuses; ``status`` and ``text`` are its answer."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


def _float(value: str | None, name: str, status: int = 400) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise BadRequest(status, f"{name}={value!r} is not a number in degrees") from None


def _check_position(ra: float, dec: float) -> tuple[float, float]:
    if not -90.0 <= dec <= 90.0:
        raise BadRequest(400, f"dec={dec!r} is outside [-90, 90]")
    return ra % 360.0, dec


# ------------------------------------------------------------------------------------- PS1


def parse_ps1_filenames(
    form: Mapping[str, str], upload: str | None
) -> tuple[list[tuple[float, float]], str, list[str]]:
    """Positions, filters and types of a ``ps1filenames.py`` request (GET or POST)."""
    form = {k.lower(): v for k, v in form.items()}
    filters = form.get("filters") or "grizy"
    bad = sorted(set(filters) - set("grizy"))
    if bad:
        raise BadRequest(400, f"filters={filters!r} holds {''.join(bad)!r}; allowed: g r i z y")
    types = [t.strip() for t in (form.get("type") or "stack").split(",") if t.strip()]
    unknown = [t for t in types if t not in PS1_TYPE_SUFFIX]
    if unknown or not types:
        raise BadRequest(
            400, f"type={form.get('type')!r} is not served; allowed: {', '.join(PS1_TYPE_SUFFIX)}"
        )
    positions = []
    if upload is not None:
        for number, line in enumerate(upload.splitlines(), start=1):
            tokens = line.replace(",", " ").split()
            if not tokens or not re.match(r"^[-+.\d]", tokens[0]):
                continue  # blank or header line
            if len(tokens) < 2:
                raise BadRequest(400, f"line {number} of the upload needs 'ra dec': {line!r}")
            ra = _float(tokens[0], f"ra (line {number})")
            dec = _float(tokens[1], f"dec (line {number})")
            positions.append(_check_position(ra, dec))
    elif "skycell" in form:
        match = re.fullmatch(r"(\d{1,4})\.(\d{1,3})", form["skycell"].strip())
        cell = ps1_skycell(int(match[1]), int(match[2])) if match else None
        if cell is None:
            raise BadRequest(400, f"skycell={form['skycell']!r} is not a skycell (PPPP.SSS)")
        positions.append(cell.centre())
    else:
        if not form.get("ra") or not form.get("dec"):
            raise BadRequest(400, "ra and dec are required (decimal degrees)")
        positions.append(_check_position(_float(form["ra"], "ra"), _float(form["dec"], "dec")))
    return positions, filters, types


def parse_fitscut(query: Mapping[str, str]) -> dict:
    """Builder arguments of a ``fitscut.cgi`` request (parameter names are case-insensitive)."""
    query = {k.lower(): v for k, v in query.items()}
    red = query.get("red")
    if not red:
        raise BadRequest(400, "red=<filename> is required (a filename from ps1filenames.py)")
    match = _PS1_FILE_RE.match(red)
    if not match or match[1] != match[3] or match[2] != match[4]:
        raise BadRequest(404, f"file not found: {red}")
    skycell = ps1_skycell(int(match[1]), int(match[2]))
    if skycell is None or skycell.dec0 + 2.0 < PS1_MIN_DEC:
        raise BadRequest(404, f"file not found: {red}")
    if "ra" not in query or "dec" not in query:
        raise BadRequest(400, "ra and dec are required (decimal degrees)")
    ra, dec = _check_position(_float(query["ra"], "ra"), _float(query["dec"], "dec"))
    try:
        size = int(query.get("size", "240"))
    except ValueError:
        raise BadRequest(400, f"size={query['size']!r} is not an integer") from None
    if not 1 <= size <= PS1_MAX_SIZE:
        raise BadRequest(400, f"size={size} pixels is outside 1..{PS1_MAX_SIZE}")
    output = (query.get("format") or "jpg").lower()
    if output not in ("fits", "jpg", "jpeg", "png"):
        raise BadRequest(400, f"format={output!r} is not one of fits, jpg, png")
    return {
        "projcell": skycell.projcell,
        "subcell": skycell.subcell,
        "band": match[5],
        "product": "stack.wt" if match[6] else "stack",
        "ra": ra,
        "dec": dec,
        "size": size,
        "format": "jpg" if output == "jpeg" else output,
    }


# ---------------------------------------------------------------------------------- unWISE


def _parse_angle(text: str, *, hours: bool) -> float:
    """Decimal degrees, or sexagesimal (``HH:MM:SS`` for RA, ``+DD:MM:SS`` for Dec)."""
    try:
        return float(text)
    except ValueError:
        pass
    parts = text.strip().split(":")
    if len(parts) != 3:
        raise ValueError(text)
    sign = -1.0 if parts[0].strip().startswith("-") else 1.0
    first, minutes, seconds = abs(float(parts[0])), float(parts[1]), float(parts[2])
    value = sign * (first + minutes / 60.0 + seconds / 3600.0)
    return value * 15.0 if hours else value


def parse_unwise(query: Mapping[str, str]) -> dict:
    """Builder arguments of an unwise.me ``cutout_fits`` request.

    Errors are those of the real Django view: ``failed to parse request`` and
    ``RA and Dec arguments are required`` with HTTP 200, HTTP 500 for non-digit bands.
    """
    version = query.get("version") or "neo7"
    if version not in UNWISE_VERSIONS:
        raise BadRequest(200, "failed to parse request")
    try:
        ra = _parse_angle(query["ra"], hours=True) if query.get("ra") else None
        dec = _parse_angle(query["dec"], hours=False) if query.get("dec") else None
        size = int(query["size"]) if query.get("size") else 100
    except ValueError:
        raise BadRequest(200, "failed to parse request") from None
    if ra is None or dec is None:
        raise BadRequest(200, "RA and Dec arguments are required")
    if not -90.0 <= dec <= 90.0 or size < 1:
        raise BadRequest(200, "failed to parse request")
    band_text = query.get("bands") or "12"
    if not band_text.isdigit():
        raise BadRequest(500, f"bands={band_text!r} must be digits")
    bands = [int(c) for c in band_text if int(c) in (1, 2, 3, 4)]
    if version.startswith("neo"):
        bands = [b for b in bands if b in (1, 2)]
    file_types = [
        t for t in UNWISE_FILE_TYPES if query.get(f"file_{t}", "").lower() not in _FALSE_WORDS
    ]
    return {
        "ra": ra % 360.0,
        "dec": dec,
        "size": min(UNWISE_MAX_SIZE, size),
        "bands": list(dict.fromkeys(bands)),
        "file_types": file_types or list(UNWISE_FILE_TYPES),
    }


# ----------------------------------------------------------------------------------- GALEX


def parse_galex(query: Mapping[str, str]) -> dict:
    """Builder arguments of a Legacy Survey viewer ``fits-cutout`` request for ``layer=galex``.

    Missing ra/dec give HTTP 400 ``Need ra,dec keywords``; any layer but ``galex`` gives HTTP
    200 ``no such layer``; unparsable numbers give HTTP 500 as in the viewer.
    """
    if not query.get("ra") or not query.get("dec"):
        raise BadRequest(400, "Need ra,dec keywords")
    layer = query.get("layer") or "ls-dr9"
    if layer != "galex":
        raise BadRequest(200, "no such layer")
    ra = _float(query["ra"], "ra", status=500)
    dec = _float(query["dec"], "dec", status=500)
    if not -90.0 <= dec <= 90.0:
        raise BadRequest(500, f"dec={dec!r} is outside [-90, 90]")
    try:
        size = int(query.get("size") or 256)
        width = min(int(query.get("width") or size), GALEX_MAX_SIZE)
        height = min(int(query.get("height") or size), GALEX_MAX_SIZE)
        pixscale = float(query.get("pixscale") or 1.5)
    except ValueError as err:
        raise BadRequest(500, f"ValueError: {err}") from None
    if width < 1 or height < 1 or not pixscale > 0:
        raise BadRequest(500, f"bad cutout geometry {width}x{height} at {pixscale} arcsec/px")
    bands = query.get("bands") or "nf"
    bad = sorted(set(bands) - set(GALEX_BAND_LETTERS))
    if bad:
        raise BadRequest(
            400, f"bands={bands!r}: no band {''.join(bad)!r} in layer galex (allowed: n, f)"
        )
    return {
        "ra": ra % 360.0,
        "dec": dec,
        "width": width,
        "height": height,
        "pixscale": pixscale,
        "bands": bands,
        "invvar": "invvar" in query and query["invvar"].lower() not in ("0", "false", "no"),
    }
