"""``mantis sky``: write the simulated catalogue, serve the simulated sky, draw a preview."""

from __future__ import annotations

import argparse
import os

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``sky`` verb and its sub-verbs ``catalog``, ``serve`` and ``preview``."""
    parser = subparsers.add_parser(
        "sky", help="the simulated sky: catalogue, imitation survey server, preview"
    )
    sub = parser.add_subparsers(dest="sky_verb", metavar="SUBVERB", required=True)

    catalog = sub.add_parser("catalog", help="write the spectroscopic catalogue of the sky")
    catalog.add_argument("--out", required=True, help="output file (.parquet, .csv or .fits)")
    _add_universe_options(catalog)

    serve = sub.add_parser("serve", help="serve PS1, unWISE and GALEX imitations on loopback")
    serve.add_argument("--port", type=int, required=True, help="TCP port; 0 picks a free one")
    serve.add_argument("--host", default="127.0.0.1", help="loopback address (default 127.0.0.1)")
    _add_universe_options(
        serve,
        config_help="; or 'package.module:factory', which IMPORTS that module and runs its code "
        "to build the universe: give only code you trust",
    )
    serve.add_argument("--latency-ms", type=float, default=0.0, help="delay on every answer")
    serve.add_argument(
        "--fail-rate", type=float, default=0.0, help="probability in [0, 1] that an attempt fails"
    )
    serve.add_argument(
        "--faults",
        default=None,
        help="comma-separated fault kinds (latency, http500, http503, truncated, html, stall, "
        "nan); default all",
    )
    serve.add_argument(
        "--stall-s", type=float, default=30.0, help="how long a stall fault holds a connection"
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=min(4, os.cpu_count() or 1),
        help="rendering processes (default: min(4, CPUs))",
    )
    serve.add_argument(
        "--threads", action="store_true", help="render in threads instead of processes"
    )

    mirror = sub.add_parser(
        "mirror", help="write PS1 skycells and unWISE tiles of a field as a local survey mirror"
    )
    mirror.add_argument("--out", required=True, help="mirror folder (read with local:DIR)")
    mirror.add_argument(
        "--field", required=True, action="append", help="RA,DEC,SIZE in degrees (repeatable)"
    )
    mirror.add_argument("--surveys", default="ps1,unwise", help="ps1,unwise (default both)")
    _add_universe_options(mirror)

    preview = sub.add_parser("preview", help="draw N objects x nine bands as served")
    preview.add_argument(
        "--out", required=True, help="output PNG (and <stem>.structure.png beside it)"
    )
    preview.add_argument("--n", type=int, default=6, help="number of objects (default 6)")
    _add_universe_options(preview)
    parser.set_defaults(func=run)


def _add_universe_options(parser: argparse.ArgumentParser, config_help: str = "") -> None:
    parser.add_argument(
        "--config",
        default="default",
        help="sky configuration: a shipped name (default, smoke, test, rich) or a YAML path"
        + config_help,
    )
    parser.add_argument("--seed", type=int, default=0, help="universe seed (default 0)")
    parser.add_argument(
        "--cache",
        metavar="DIR",
        default=None,
        help="folder of cached populations (default: $MANTIS_SKY_CACHE, else "
        "$MANTIS_CACHE_DIR/sky, else the user cache folder's mantis/sky)",
    )


def run(args: argparse.Namespace) -> int:
    """Dispatch to the sub-verb; returns the exit status."""
    if args.cache is not None:
        os.environ["MANTIS_SKY_CACHE"] = args.cache  # rendering workers inherit it
    if args.sky_verb == "serve":
        from mantis.sky import ServerSettings, parse_fault_kinds, serve

        settings = ServerSettings(
            config=args.config,
            seed=args.seed,
            latency_ms=args.latency_ms,
            fail_rate=args.fail_rate,
            faults=parse_fault_kinds(args.faults),
            stall_s=args.stall_s,
            workers=args.workers,
            executor="thread" if args.threads else "process",
        )
        serve(settings, host=args.host, port=args.port)
        return 0
    if args.sky_verb == "catalog":
        from mantis.sky import Universe, write_catalog

        universe = Universe.from_config(args.config, seed=args.seed)
        write_catalog(universe, args.out)
        print(f"wrote {args.out}")
        return 0
    if args.sky_verb == "mirror":
        from mantis.sky import parse_field, write_mirror

        surveys = [s.strip() for s in args.surveys.split(",") if s.strip()]
        fields = [parse_field(text) for text in args.field]
        written = write_mirror(args.out, fields, config=args.config,
                               seed=args.seed, surveys=surveys)  # fmt: skip
        print(f"wrote {len(written)} files under {args.out}")
        return 0
    if args.sky_verb == "preview":
        from mantis.sky import draw_preview

        draw_preview(args.out, config=args.config, seed=args.seed, n_objects=args.n)
        print(f"wrote {args.out}")
        return 0
    raise AssertionError(f"unreachable sky sub-verb {args.sky_verb!r}")
