"""Options several verbs share, spelled once and built from the library's own constants."""

from __future__ import annotations

import argparse

__all__ = ["add_calibration", "add_format", "add_no_progress", "add_split"]


def add_split(parser: argparse.ArgumentParser, *, default: str, help: str) -> None:
    """``--split`` with the dataset's splits as choices."""
    from mantis.stack import SPLITS  # here, so that verbs without --split start fast

    parser.add_argument(
        "--split", default=default, choices=SPLITS, help=f"{help} (default {default})"
    )


def add_no_progress(parser: argparse.ArgumentParser, *, what: str = "progress bars") -> None:
    """``--no-progress``."""
    parser.add_argument("--no-progress", action="store_true", help=f"hide the {what}")


def add_format(parser: argparse.ArgumentParser, formats: tuple[str, ...], *, help: str) -> None:
    """``--format`` choosing one of ``formats`` (default: from the output file's extension)."""
    parser.add_argument("--format", choices=formats, default=None, help=help)


def add_calibration(parser: argparse.ArgumentParser) -> None:
    """``--calibration FILE``: a file from `mantis calibrate` (default: beside the checkpoint)."""
    parser.add_argument(
        "--calibration",
        default=None,
        metavar="FILE",
        help="calibration file from mantis calibrate (default: the one beside the checkpoint)",
    )
