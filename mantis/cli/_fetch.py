"""``mantis fetch``: download survey cutouts for a catalogue into a resumable cache."""

from __future__ import annotations

import argparse
import sys

from mantis.cli._options import add_no_progress

__all__ = ["register", "run"]


def _surveys(text: str) -> tuple[str, ...]:
    return tuple(s.strip().lower() for s in text.split(",") if s.strip())


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``fetch`` sub-command."""
    parser = subparsers.add_parser(
        "fetch",
        help="download GALEX, PS1 and unWISE cutouts for a catalogue",
        description="Fetch survey cutouts for every row of CATALOG (CSV, parquet or FITS with "
        "ra, dec in degrees and optional id) into a resumable cache. Rerunning skips what is "
        "done; the exit status is 1 if failures remain.",
    )
    parser.add_argument("catalog", metavar="CATALOG", help="CSV, parquet or FITS catalogue")
    parser.add_argument("--out", required=True, metavar="DIR", help="cache folder")
    parser.add_argument(
        "--endpoint",
        "--source",
        dest="endpoint",
        metavar="URL",
        help="one base URL for all services (e.g. the imitation server), or local:DIR to cut "
        "from a survey mirror on disk (PS1 skycells, unWISE tiles; see mantis sky mirror)",
    )
    parser.add_argument(
        "--surveys",
        type=_surveys,
        default=("galex", "ps1", "unwise"),
        metavar="LIST",
        help="comma-separated subset of galex,ps1,unwise",
    )
    parser.add_argument(
        "--size", type=float, metavar="ARCSEC", help="cutout side in arcsec (default 42.5)"
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        metavar="N",
        help="requests in flight per survey host (default from configs/fetch.yaml)",
    )
    parser.add_argument(
        "--config",
        metavar="NAME",
        default=None,
        help="fetch settings: a config name or YAML path (default: fetch)",
    )
    parser.add_argument(
        "--groups",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="share one larger cutout among neighbours (default: groups.enabled of the config)",
    )
    add_no_progress(parser, what="progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the fetch and print the summary; 1 if failures remain, else 0."""
    from mantis.cli._inputs import check_input_file
    from mantis.exceptions import ConfigError
    from mantis.fetch import fetch_catalog

    check_input_file(args.catalog, "CATALOG", expected="a CSV, parquet or FITS table with ra, dec")

    if args.concurrency is not None and args.concurrency < 1:
        raise ConfigError(f"--concurrency must be at least 1, got {args.concurrency}")
    summary = fetch_catalog(
        args.catalog,
        cache_dir=args.out,
        surveys=args.surveys,
        size_arcsec=args.size,
        endpoint=args.endpoint,
        concurrency=args.concurrency,
        progress=not args.no_progress,
        config=args.config,
        groups=args.groups,
    )
    print(summary.format())
    for row in summary.unusable_rows:
        print(f"mantis fetch: {row}", file=sys.stderr)
    if summary.n_failed:
        print(
            f"mantis fetch: {summary.n_failed} product(s) failed; rerun to retry them",
            file=sys.stderr,
        )
    return 0 if summary.ok else 1
