"""Checks of the files named on the command line, run before any work starts.

Each check raises `mantis.exceptions.ConfigError` with one line that names the option, the
value and what is expected, so a wrong path never ends in a library's traceback or in a
half-written output.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from mantis.exceptions import ConfigError

__all__ = [
    "check_dataset_file",
    "check_input_file",
    "check_output_file",
    "check_parquet_file",
    "image_suffixes",
]


def check_input_file(
    value: str | os.PathLike, option: str, *, expected: str, allow_empty: bool = False
) -> Path:
    """Return ``value`` as a path if it names a readable (and, by default, non-empty) file.

    Parameters
    ----------
    value : path-like
        What the user gave.
    option : str
        The option or argument it was given as (``'--dataset'``, ``'CATALOG'``).
    expected : str
        What the file should hold, for the message (``'a CSV, parquet or FITS catalogue'``).
    allow_empty : bool
        Leave a 0-byte file to the reader (whose own message is more specific).
    """
    path = Path(value)
    if path.is_dir():
        raise ConfigError(f"{option} {str(value)!r} is a folder; expected {expected}")
    if not path.is_file():
        raise ConfigError(f"{option} {str(value)!r} does not exist; expected {expected}")
    if not allow_empty and path.stat().st_size == 0:
        raise ConfigError(f"{option} {str(value)!r} is empty (0 bytes); expected {expected}")
    if not os.access(path, os.R_OK):
        raise ConfigError(f"{option} {str(value)!r} is not readable; expected {expected}")
    return path


def check_dataset_file(value: str | os.PathLike, option: str = "--dataset") -> Path:
    """Return the path of a complete, readable HDF5 file (a dataset written by ``build``).

    Its layout is left to the dataset reader, which names what is missing.
    """
    expected = "a mantis dataset (.h5 written by mantis build)"
    path = check_input_file(value, option, expected=expected)
    import h5py

    if not h5py.is_hdf5(path):
        raise ConfigError(f"{option} {str(value)!r} is not an HDF5 file; expected {expected}")
    from mantis.stack import DatasetError, DatasetReader

    try:
        DatasetReader(path).close()  # the store is the one module that opens datasets
    except DatasetError as err:
        reason = " ".join(str(err).split())[:200]
        raise ConfigError(
            f"{option} {str(value)!r} cannot be read (truncated or damaged HDF5: {reason}); "
            f"expected {expected}"
        ) from None
    return path


def check_parquet_file(value: str | os.PathLike, option: str, *, expected: str) -> Path:
    """Return the path of a readable parquet file."""
    path = check_input_file(value, option, expected=expected)
    import pyarrow.parquet as pq

    try:
        pq.read_schema(path)
    except (OSError, ValueError) as err:
        reason = " ".join(str(err).split())[:200]
        raise ConfigError(
            f"{option} {str(value)!r} is not a parquet file ({reason}); expected {expected}"
        ) from None
    return path


def check_output_file(
    value: str | os.PathLike,
    option: str = "--out",
    *,
    suffixes: Iterable[str] | None = None,
    creates_folder: bool = False,
) -> Path:
    """Return ``value`` as a path if a file can be written there.

    The path must not be a folder, and its extension must be one of ``suffixes`` when given.
    Unless the command ``creates_folder`` itself, the folder must exist (a typo in it should
    not end in a traceback after the work is done).
    """
    path = Path(value)
    if path.is_dir():
        raise ConfigError(f"{option} {str(value)!r} is a folder; give a file name inside it")
    folder = path.parent
    if creates_folder:
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent  # the first existing ancestor is where folders get made
        if folder.exists() and not folder.is_dir():
            raise ConfigError(f"{option} {str(value)!r}: {str(folder)!r} is not a folder")
    elif not folder.is_dir():
        raise ConfigError(
            f"{option} {str(value)!r}: the folder {str(folder)!r} does not exist; create it first"
        )
    if folder.is_dir() and not os.access(folder, os.W_OK):
        raise ConfigError(f"{option} {str(value)!r}: the folder {str(folder)!r} is not writable")
    if suffixes is not None:
        allowed = sorted(set(suffixes))
        if path.suffix.lower() not in allowed:
            raise ConfigError(
                f"{option} {str(value)!r} has extension {path.suffix or '(none)'!r}; "
                f"allowed: {', '.join(allowed)}"
            )
    return path


def image_suffixes() -> list[str]:
    """File extensions matplotlib can write (``.png``, ``.pdf``, ``.svg``, ...)."""
    from matplotlib.backend_bases import FigureCanvasBase

    return [f".{ext}" for ext in FigureCanvasBase.get_supported_filetypes()]
