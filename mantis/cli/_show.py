"""``mantis show``: a gallery of a dataset's objects, band by band."""

from __future__ import annotations

import argparse

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``show`` sub-command."""
    parser = subparsers.add_parser(
        "show",
        help="draw N objects x nine bands (and the early stack) of a dataset",
        description="Draw the first N objects of a dataset: every band as stored, masked "
        "pixels in grey, and a colour view of the early-fusion stack.",
    )
    parser.add_argument("dataset", help="dataset written by mantis build (.h5)")
    parser.add_argument("--out", required=True, help="image file to write (.png, .pdf)")
    parser.add_argument("--n", type=int, default=8, help="number of objects (default 8)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Write the gallery."""
    from mantis.cli._inputs import check_dataset_file, check_output_file, image_suffixes
    from mantis.stack import render_gallery

    check_dataset_file(args.dataset, "DATASET")
    check_output_file(args.out, "--out", suffixes=image_suffixes(), creates_folder=True)

    print(f"wrote {render_gallery(args.dataset, args.out, n=args.n)}")
    return 0
