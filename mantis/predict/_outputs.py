"""Checks on ``--out`` before any work: format against extension, an existing output's inputs.

An output that exists already is only taken as finished when the fingerprints stored in it
(`read_made_from`) are those of the present catalogue, checkpoint and settings; anything else
is refused by name rather than reported as written.
"""

from __future__ import annotations

import os
from pathlib import Path

from mantis.predict._parts import PredictionError
from mantis.predict._writers import FORMATS, format_from_path, read_made_from

__all__ = ["check_existing_output", "output_format"]


def output_format(out: str | os.PathLike, fmt: str | None) -> str:
    """Return the output format: ``fmt``, else the one the extension of ``out`` implies.

    Raises
    ------
    PredictionError
        If ``fmt`` is unknown, or contradicts a known extension (``--format csv`` with
        ``out.parquet``), or neither is given and the extension is unknown.
    """
    if fmt is None:
        return format_from_path(out)
    if fmt not in FORMATS:
        raise PredictionError(f"unknown output format {fmt!r}; allowed: {', '.join(FORMATS)}")
    try:
        implied = format_from_path(out)
    except PredictionError:
        return fmt  # an extension of no known format contradicts nothing
    if implied != fmt:
        raise PredictionError(
            f"--format {fmt} contradicts the extension of {str(out)!r}, which means {implied}; "
            f"drop --format or name the output with a {fmt} extension"
        )
    return fmt


def check_existing_output(out: Path, fmt: str, made_from: dict) -> None:
    """Raise unless the existing ``out`` was made from the same inputs as this run.

    Raises
    ------
    PredictionError
        Naming what differs (catalogue, checkpoint, settings) or saying that the file was not
        written by ``mantis predict``, and how to proceed.
    """
    found = read_made_from(out, fmt)
    if found is None:
        raise PredictionError(
            f"{out} exists and is not a {fmt} output of mantis predict with a record of its "
            "inputs; pass --overwrite to replace it or choose another --out"
        )
    differ = sorted(k for k in set(found) | set(made_from) if found.get(k) != made_from.get(k))
    if differ:
        raise PredictionError(
            f"{out} exists and was made with a different {', '.join(differ)}; pass "
            "--overwrite to replace it or choose another --out"
        )
