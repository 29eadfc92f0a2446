"""``mantis priors``: redshift priors for SPS fitting from a prediction file."""

from __future__ import annotations

import argparse

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``priors`` sub-command."""
    parser = subparsers.add_parser(
        "priors",
        help="export per-object redshift priors for Prospector, Bagpipes or as a table",
        description=(
            "Turn each predicted p(z) into a redshift prior. prospector: an HDF5 file read by "
            "mantis.priors.load_prospector_priors(path); bagpipes: a CSV of redshift and "
            "redshift_sigma for fit_catalogue plus a fit_instructions JSON; table: grid and "
            "density per object (CSV or parquet). Invalid rows are left out."
        ),
    )
    parser.add_argument("predictions", help="output of mantis predict (parquet, FITS, CSV, qp)")
    from mantis.priors import PRIOR_FORMATS

    parser.add_argument("--format", required=True, choices=PRIOR_FORMATS, help="prior format")
    parser.add_argument("--out", required=True, help="prior file to write")
    parser.add_argument(
        "--broaden", type=float, default=1.0, metavar="T",
        help="temperature T > 0: p -> p**(1/T); T > 1 widens each density (default 1)",
    )  # fmt: skip
    parser.add_argument(
        "--floor", type=float, default=0.0, metavar="EPS",
        help="fraction 0 <= EPS < 1 of probability spread uniformly over the grid (default 0)",
    )  # fmt: skip
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Export the priors and say how many were written."""
    from mantis.cli._inputs import check_output_file
    from mantis.priors import export_priors

    check_output_file(args.out, "--out")

    n = export_priors(
        args.predictions, args.out, args.format, broaden=args.broaden, floor=args.floor
    )
    print(f"wrote {n} {args.format} priors to {args.out}")
    return 0
