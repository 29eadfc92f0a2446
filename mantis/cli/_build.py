"""``mantis build``: raw cutouts to one HDF5 dataset."""

from __future__ import annotations

import argparse

from mantis.cli._options import add_no_progress

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``build`` sub-command."""
    parser = subparsers.add_parser(
        "build",
        help="reproject and stack fetched cutouts into an HDF5 dataset",
        description=(
            "Convert the cached cutouts of every catalogue object to AB nanomaggies, reproject "
            "them onto object-centred grids (per survey and the nine-band early stack), add "
            "E(B-V) and a sky-position split, and write one HDF5 file. Rerunning the same "
            "command after an interruption continues where it stopped."
        ),
    )
    parser.add_argument("catalog", help="catalogue (CSV, parquet or FITS) with id, ra, dec[, z]")
    parser.add_argument("--cutouts", required=True, help="cutout cache folder of mantis fetch")
    parser.add_argument("--out", required=True, help="output dataset (.h5)")
    parser.add_argument("--config", default="build", help="build config name or YAML path")
    add_no_progress(parser, what="progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Build the dataset and print what was masked and why."""
    from pathlib import Path

    from mantis.cli._inputs import check_input_file, check_output_file
    from mantis.exceptions import ConfigError
    from mantis.stack import build_dataset

    check_input_file(args.catalog, "CATALOG", expected="a CSV, parquet or FITS table with ra, dec")
    check_output_file(args.out, "--out", creates_folder=True)

    if not Path(args.cutouts).is_dir():
        raise ConfigError(f"--cutouts {args.cutouts!r} is not a folder (run mantis fetch first)")
    summary = build_dataset(
        args.catalog, args.cutouts, args.out, args.config, progress=not args.no_progress
    )
    for line in summary.lines():
        print(line)
    print(f"wrote {args.out}")
    return 0
