"""``mantis predict``: redshift densities for a whole catalogue."""

from __future__ import annotations

import argparse

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``predict`` sub-command."""
    parser = subparsers.add_parser(
        "predict",
        help="predict p(z) for every object of a catalogue",
        description=(
            "Stream a catalogue through fetch (cache-aware), build, the network and its "
            "recalibration, and write one row per object: the catalogue's columns, point "
            "estimates, intervals, odds, coverage flags and the density. Interrupted runs "
            "resume where they stopped; invalid rows are flagged, not fatal."
        ),
    )
    parser.add_argument(
        "catalog", help="catalogue (CSV, parquet, FITS or VOTable) with ra, dec[, id]"
    )
    parser.add_argument("--checkpoint", required=True, help="trained model checkpoint (.ckpt)")
    parser.add_argument("--out", required=True, help="output file")
    parser.add_argument(
        "--format", choices=("parquet", "fits", "csv", "qp", "votable"), default=None,
        help="output format (default: from the extension of --out; qp writes HDF5)",
    )  # fmt: skip
    parser.add_argument("--endpoint", default=None, help="base URL replacing every service")
    parser.add_argument("--cache", default="data/cutouts", help="raw cutout cache folder")
    parser.add_argument("--batch-size", type=int, default=256, help="objects per chunk")
    parser.add_argument("--devices", type=int, default=1, help="CPU processes sharing the work")
    parser.add_argument("--tta", action="store_true", help="average over the 8 flips and rotations")
    parser.add_argument("--overwrite", action="store_true", help="predict again if --out exists")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Predict and print a one-line summary."""
    from mantis.predict import predict_catalog

    summary = predict_catalog(
        args.catalog,
        args.out,
        checkpoint=args.checkpoint,
        cache_dir=args.cache,
        endpoint=args.endpoint,
        fmt=args.format,
        batch_size=args.batch_size,
        devices=args.devices,
        tta=args.tta,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    print(
        f"wrote {summary.out}: {summary.n_rows} rows ({summary.n_predicted} predicted now, "
        f"{summary.n_invalid} flagged invalid)"
    )
    return 0
