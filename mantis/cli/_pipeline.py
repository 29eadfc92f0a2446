"""``mantis pipeline``: simulate, serve, fetch, build, train and evaluate in one go."""

from __future__ import annotations

import argparse

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``pipeline`` verb."""
    parser = subparsers.add_parser(
        "pipeline",
        help="run the whole chain on the simulated sky (what `make train` runs)",
        description=(
            "Simulate the spec-z catalogue, serve the sky on loopback, fetch, build, train the "
            "early- and late-fusion models and evaluate them; resumes where it stopped."
        ),
    )
    parser.add_argument(
        "--config",
        default="configs/default.yaml",
        help="pipeline configuration (default: %(default)s)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the pipeline; returns 0 on success."""
    from mantis.pipeline import run_pipeline

    run_pipeline(args.config)
    return 0
