"""``mantis serve``: the prediction service and its page."""

from __future__ import annotations

import argparse

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``serve`` sub-command."""
    parser = subparsers.add_parser(
        "serve",
        help="serve predictions over HTTP: JSON, jobs, VO cone search and a page",
        description=(
            "Run a web service that predicts with the same code as `mantis predict`: "
            "POST /v1/predict (JSON positions), POST /v1/jobs (catalogue upload), "
            "GET /v1/cone (IVOA Simple Cone Search), a page at / and API docs at /docs. "
            "Binds 127.0.0.1 by default: only this machine can connect."
        ),
    )
    parser.add_argument("--checkpoint", required=True, help="trained model checkpoint (.ckpt)")
    parser.add_argument("--calibration", default=None,
                        help="recalibration file (JSON) applied to every density")  # fmt: skip
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
    parser.add_argument("--port", type=int, default=8000, help="TCP port (0: any free port)")
    parser.add_argument("--state", default="data/serve", help="folder for jobs and the cone index")
    parser.add_argument("--cache", default="data/cutouts", help="raw cutout cache folder")
    parser.add_argument("--endpoint", default=None, help="base URL replacing every survey service")
    parser.add_argument("--batch-size", type=int, default=256, help="objects per prediction chunk")
    parser.add_argument("--cone-catalog", default=None,
                        help="prediction file whose objects the cone search serves")  # fmt: skip
    parser.add_argument("--max-positions", type=int, default=1000, help="per /v1/predict request")
    parser.add_argument("--max-upload-mb", type=float, default=64.0, help="per uploaded catalogue")
    parser.add_argument("--max-job-rows", type=int, default=200_000, help="per uploaded catalogue")
    parser.add_argument("--max-radius", type=float, default=1.0, help="largest cone SR, degrees")
    parser.add_argument("--rate", type=float, default=50.0,
                        help="requests/s per client address (0: no limit)")  # fmt: skip
    parser.add_argument("--burst", type=int, default=100, help="requests allowed in a burst")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Load the checkpoint once and serve until interrupted."""
    from pathlib import Path

    from mantis.exceptions import ConfigError

    for name in ("max_positions", "max_job_rows", "burst", "batch_size"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    for name in ("max_upload_mb", "max_radius"):
        if not getattr(args, name) > 0:
            raise ConfigError(f"--{name.replace('_', '-')} must be > 0, got {getattr(args, name)}")
    if args.rate < 0:
        raise ConfigError(f"--rate must be >= 0, got {args.rate}")
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port must be in 0..65535, got {args.port}")
    from mantis.serve import PredictionEngine, ServeSettings, create_app, serve

    engine = PredictionEngine.from_checkpoint(
        args.checkpoint,
        calibration=args.calibration,
        cache_dir=args.cache,
        endpoint=args.endpoint,
        batch_size=args.batch_size,
    )
    settings = ServeSettings(
        state_dir=Path(args.state), max_positions=args.max_positions,
        max_upload_bytes=int(args.max_upload_mb * (1 << 20)), max_job_rows=args.max_job_rows,
        max_radius_deg=args.max_radius, rate_per_s=args.rate, burst=args.burst,
    )  # fmt: skip
    app = create_app(engine, settings, host=args.host, cone_catalog=args.cone_catalog)
    try:
        serve(app, args.host, args.port)
    except OSError as err:
        raise ConfigError(f"cannot listen on {args.host}:{args.port}: {err.strerror}") from None
    return 0
