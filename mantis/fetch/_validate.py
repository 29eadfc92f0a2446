"""Checks that a response body is what it claims to be, before anything is written.

Survey services answer errors in many shapes: an HTML page with HTTP 200, a one-line text
error behind HTTP 200 (unwise.me), a body cut short by a dropped connection. Every body is
checked here; a failed check raises `InvalidBodyError`, which the client treats as retryable.
The FITS checks walk the header blocks and compare the data size implied by BITPIX/NAXISn with
the bytes present, so a truncated file is caught without astropy (and without its warnings).
"""

from __future__ import annotations

import gzip
import io
import tarfile
import zlib
from dataclasses import dataclass

import numpy as np

__all__ = [
    "FitsHdu",
    "InvalidBodyError",
    "check_fits",
    "check_unwise_tar",
    "describe_body",
    "fits_image",
]

FITS_MAGIC = b"SIMPLE  ="
GZIP_MAGIC = b"\x1f\x8b"
BLOCK = 2880
_DTYPES = {8: ">u1", 16: ">i2", 32: ">i4", 64: ">i8", -32: ">f4", -64: ">f8"}


class InvalidBodyError(Exception):
    """The body is not a complete product of the expected kind.

    Attributes
    ----------
    reason : str
        Short category used to count failures (``'truncated body'``, ``'HTML instead of data'``...).
    detail : str
        What exactly was wrong.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason, self.detail = reason, detail


@dataclass(frozen=True)
class FitsHdu:
    """Location of one HDU inside a FITS byte string."""

    cards: dict[str, str]
    data_start: int
    data_bytes: int

    def value(self, key: str, default: str = "") -> str:
        """Raw value text of a header keyword (quotes and comments stripped)."""
        raw = self.cards.get(key)
        if raw is None:
            return default
        raw = raw.strip()
        if raw.startswith("'"):
            return raw[1:].split("'")[0].strip()
        return raw.split("/")[0].strip()


def describe_body(body: bytes) -> tuple[str, str]:
    """Name what a non-product body looks like, for error messages: (reason, snippet)."""
    head = body[:512].lstrip()
    snippet = head[:80].decode("utf-8", "replace").replace("\n", " ").strip()
    lowered = head[:200].lower()
    if not body:
        return "empty body", ""
    if lowered.startswith((b"<!doctype html", b"<html")) or b"<html" in lowered:
        return "HTML instead of data", snippet
    if all(32 <= c < 127 or c in (9, 10, 13) for c in head[:200]):
        return "text error behind HTTP 200", snippet
    return "not a FITS or gzip body", snippet


def _parse_header(body: bytes, start: int) -> tuple[dict[str, str], int]:
    cards: dict[str, str] = {}
    pos = start
    while True:
        if pos + BLOCK > len(body):
            raise InvalidBodyError("truncated body", f"FITS header unterminated at byte {pos}")
        block = body[pos : pos + BLOCK]
        pos += BLOCK
        for i in range(0, BLOCK, 80):
            card = block[i : i + 80].decode("ascii", "replace")
            key = card[:8].strip()
            if key == "END":
                return cards, pos
            if card[8:10] == "= " and key not in cards:
                cards[key] = card[10:]


def _data_size(hdu_cards: dict[str, str]) -> int:
    def num(key: str, default: int = 0) -> int:
        raw = hdu_cards.get(key)
        if raw is None:
            return default
        return int(raw.split("/")[0].strip())

    try:
        bitpix, naxis = num("BITPIX"), num("NAXIS")
        if naxis == 0:
            return 0
        n = 1
        for axis in range(1, naxis + 1):
            n *= num(f"NAXIS{axis}")
        return abs(bitpix) // 8 * num("GCOUNT", 1) * (num("PCOUNT", 0) + n)
    except ValueError as err:
        raise InvalidBodyError("corrupt FITS header", str(err)) from None


def check_fits(body: bytes) -> list[FitsHdu]:
    """Check a whole FITS file: magic, every header, every data block present.

    Returns
    -------
    list of FitsHdu
        The HDUs found, in order.

    Raises
    ------
    InvalidBodyError
        If the body is not FITS or is truncated.
    """
    if not body.startswith(FITS_MAGIC):
        if body and FITS_MAGIC.startswith(body):
            raise InvalidBodyError("truncated body", f"FITS cut after {len(body)} bytes")
        raise InvalidBodyError(*describe_body(body))
    hdus, pos = [], 0
    while pos < len(body):
        cards, data_start = _parse_header(body, pos)
        size = _data_size(cards)
        padded = -(-size // BLOCK) * BLOCK
        if data_start + size > len(body):
            raise InvalidBodyError(
                "truncated body",
                f"FITS data needs {data_start + size} bytes, got {len(body)}",
            )
        hdus.append(FitsHdu(cards, data_start, size))
        pos = data_start + padded
        if pos > len(body):  # last block padding missing: astropy warns, we refuse
            raise InvalidBodyError("truncated body", f"FITS padding short of {pos} bytes")
    return hdus


def fits_image(body: bytes, hdu: FitsHdu) -> np.ndarray | None:
    """Return the image array of an uncompressed image HDU (None when it holds none)."""
    bitpix, naxis = int(hdu.value("BITPIX", "0")), int(hdu.value("NAXIS", "0"))
    if naxis == 0 or hdu.value("XTENSION", "IMAGE") != "IMAGE" or bitpix not in _DTYPES:
        return None
    shape = tuple(int(hdu.value(f"NAXIS{a}")) for a in range(naxis, 0, -1))
    raw = body[hdu.data_start : hdu.data_start + hdu.data_bytes]
    return np.frombuffer(raw, dtype=_DTYPES[bitpix]).reshape(shape)


def check_unwise_tar(body: bytes) -> list[str]:
    """Check an unwise.me tar.gz: gzip complete, tar readable, every FITS member complete.

    An image member (``-img-``) that is NaN everywhere is refused as well.

    Returns
    -------
    list of str
        Member names (empty when no tile overlaps the position).
    """
    if not body.startswith(GZIP_MAGIC):
        raise InvalidBodyError(*describe_body(body))
    try:
        raw = gzip.decompress(body)
    except (EOFError, OSError, zlib.error) as err:
        raise InvalidBodyError("truncated body", f"gzip stream: {err}") from None
    names = []
    try:
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
            for member in tar:
                names.append(member.name)
                if not member.isfile():
                    continue
                handle = tar.extractfile(member)
                content = handle.read() if handle else b""
                if len(content) != member.size:
                    raise InvalidBodyError("truncated body", f"tar member {member.name} short")
                if member.name.endswith(".gz"):
                    try:
                        content = gzip.decompress(content)
                    except (EOFError, OSError, zlib.error) as err:
                        raise InvalidBodyError("truncated body", f"{member.name}: {err}") from None
                if ".fits" in member.name:
                    hdus = check_fits(content)
                    image = fits_image(content, hdus[0]) if "-img-" in member.name else None
                    if image is not None and image.size and not np.isfinite(image).any():
                        raise InvalidBodyError("all-NaN cutout", f"{member.name} is NaN everywhere")
    except tarfile.TarError as err:
        raise InvalidBodyError("truncated body", f"tar archive: {err}") from None
    return names
