"""``mantis calibrate``: fit the recalibration of a checkpoint on a split, write its file."""

from __future__ import annotations

import argparse

from mantis.cli._options import add_split

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``calibrate`` sub-command."""
    parser = subparsers.add_parser(
        "calibrate",
        help="fit the recalibration of a trained checkpoint (writes a small calibration file)",
        description="Predict densities for one split of DATASET (validation by default), fit "
        "the global recalibration (temperature scaling or PIT remapping, whichever scores "
        "better on a held-out half) and write it as JSON with the checkpoint's SHA-256, by "
        "default beside the checkpoint (best.ckpt -> best.calibration.json), where mantis "
        "predict and mantis evaluate find it. The checkpoint is never modified.",
    )
    parser.add_argument("--checkpoint", required=True, metavar="CKPT", help="trained checkpoint")
    parser.add_argument("--dataset", required=True, metavar="DATASET.h5", help="mantis dataset")
    add_split(parser, default="val", help="split to fit on")
    parser.add_argument(
        "--out", default=None, metavar="FILE",
        help="calibration file (default: beside the checkpoint)",
    )  # fmt: skip
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Calibrate and print what was fitted; 0 on success."""
    from mantis.evaluate import calibrate_run

    result = calibrate_run(args.checkpoint, args.dataset, args.out, split=args.split)
    print(
        f"{result['calibration']['method']} recalibration fitted on {result['n_objects']} "
        f"{result['split']} objects: {result['path']}"
    )
    return 0
