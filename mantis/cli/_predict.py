"""``mantis predict``: redshift densities for a whole catalogue."""

from __future__ import annotations

import argparse

from mantis.cli._options import add_calibration, add_format, add_no_progress

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
            "resume where they stopped; invalid rows are flagged, not fatal. Rows whose products "
            "failed to download are flagged valid=False and the exit status is 1 (0 with "
            "--allow-failed); rerunning predicts exactly those rows again."
        ),
    )
    parser.add_argument(
        "catalog", help="catalogue (CSV, parquet, FITS or VOTable) with ra, dec[, id]"
    )
    parser.add_argument("--checkpoint", required=True, help="trained model checkpoint (.ckpt)")
    parser.add_argument("--out", required=True, help="output file")
    add_calibration(parser)
    from mantis.predict import FORMATS

    add_format(
        parser, FORMATS, help="output format (default: from the extension of --out; qp is HDF5)"
    )
    parser.add_argument("--endpoint", default=None, help="base URL replacing every service")
    parser.add_argument(
        "--cache",
        default=None,
        help="raw cutout cache folder (default: $MANTIS_CACHE_DIR/cutouts, else the user "
        "cache folder's mantis/cutouts)",
    )
    parser.add_argument("--batch-size", type=int, default=256, help="objects per chunk")
    parser.add_argument("--devices", type=int, default=1, help="CPU processes sharing the work")
    parser.add_argument("--tta", action="store_true", help="average over the 8 flips and rotations")
    parser.add_argument("--overwrite", action="store_true", help="predict again if --out exists")
    parser.add_argument(
        "--allow-failed", action="store_true",
        help="exit 0 even when rows are flagged because their products failed to download "
        "(they stay valid=False; rerunning predicts exactly those rows again)",
    )  # fmt: skip
    add_no_progress(parser, what="progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Predict and print the fetch summary and a one-line report; 1 if rows failed."""
    import sys

    from mantis.cli._inputs import check_input_file, check_output_file
    from mantis.predict import predict_catalog

    check_input_file(args.catalog, "CATALOG", expected="a CSV, parquet or FITS table with ra, dec")
    check_input_file(
        args.checkpoint, "--checkpoint", expected="a checkpoint of mantis train", allow_empty=True
    )
    check_output_file(args.out, "--out", creates_folder=True)

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
        calibration=args.calibration,
    )
    if not summary.merged:
        print(f"wrote parts of {summary.n_predicted} rows; rank 0 merges them into {summary.out}")
        return 0
    if summary.up_to_date:
        print(f"{summary.out} already holds the predictions of this catalogue and checkpoint "
              f"({summary.n_rows} rows); nothing to do (--overwrite predicts again)")  # fmt: skip
        return 0
    if summary.fetch is not None and any(sum(c.values()) for c in summary.fetch.statuses.values()):
        print(summary.fetch.format())
    print(
        f"wrote {summary.out}: {summary.n_rows} rows ({summary.n_predicted} predicted now, "
        f"{summary.n_invalid} flagged invalid, {summary.n_failed} with failed products)"
    )
    if summary.n_failed:
        print(
            f"mantis predict: {summary.n_failed} row(s) have products that failed to download "
            "and are flagged valid=False; rerun to retry them",
            file=sys.stderr,
        )
        return 0 if args.allow_failed else 1
    return 0
