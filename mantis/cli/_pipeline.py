"""``mantis pipeline``: (simulate and serve, or read a catalogue,) fetch, build, train, evaluate."""

from __future__ import annotations

import argparse

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``pipeline`` verb."""
    parser = subparsers.add_parser(
        "pipeline",
        help="run the whole chain on the simulated sky (what `make train` runs) or your catalogue",
        description=(
            "Simulate the spec-z catalogue and serve the sky on loopback (a 'sky' section), or "
            "read and split your own spec-z table (a 'catalog' section, fetched from the real "
            "services or the 'endpoints' given); then fetch, build, train the models, calibrate "
            "and evaluate them; resumes where it stopped."
        ),
    )
    parser.add_argument(
        "--config",
        default="default",
        help="pipeline configuration: a YAML path or a shipped name (default, smoke; "
        "default: %(default)s); see README, 'Your own spec-z catalogue'",
    )
    parser.add_argument(
        "--cache",
        metavar="DIR",
        default=None,
        help="cache root for the simulated population and the cutouts (default: "
        "$MANTIS_CACHE_DIR, else the user cache folder's mantis/)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the pipeline; returns 0 on success."""
    import os

    from mantis.pipeline import run_pipeline

    if args.cache is not None:
        os.environ["MANTIS_CACHE_DIR"] = args.cache  # the server process inherits it

    run_pipeline(args.config)
    return 0
