"""``mantis explain``: occlusion, attributions and representation similarity of a checkpoint."""

from __future__ import annotations

import argparse

__all__ = ["register", "run"]


def _named_path(text: str) -> tuple[str, str]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=DATASET.h5, got {text!r}")
    return name, path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``explain`` sub-command."""
    parser = subparsers.add_parser(
        "explain",
        help="how a network uses each band and survey; CKA across layers and shifts",
        description="Withhold each band and survey (ΔNMAD, Δη, ΔCRPS in z and magnitude "
        "slices), attribute E[z] and the true-bin probability to the input bands with "
        "integrated gradients, and compare layers with linear CKA; writes explain.md, "
        "explain.html, explain.json and PNG figures to --out. Also fits the checkpoint's "
        "shift-score reference (<ckpt stem>.shift.npz) if it is missing or stale.",
    )
    parser.add_argument("checkpoint", metavar="CKPT", help="trained checkpoint")
    parser.add_argument("--dataset", required=True, metavar="DATASET.h5", help="its dataset")
    parser.add_argument("--out", metavar="DIR", help="output folder")
    parser.add_argument(
        "--split", default="test", choices=("train", "val", "test"), help="objects to explain"
    )
    parser.add_argument("--compare", metavar="CKPT", help="the other fusion's checkpoint (CKA)")
    parser.add_argument(
        "--shifted",
        action="append",
        type=_named_path,
        default=[],
        metavar="NAME=DATASET.h5",
        help="a dataset of shifted objects for the CKA layer profiles (repeatable)",
    )
    parser.add_argument("--max-objects", type=int, default=1000, help="objects (default 1000)")
    parser.add_argument(
        "--attribution-objects", type=int, default=96, help="objects attributed (default 96)"
    )
    parser.add_argument("--steps", type=int, default=32, help="integrated-gradient steps")
    parser.add_argument(
        "--reference-only",
        action="store_true",
        help="only (re)fit the shift-score reference beside the checkpoint",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Write the report (or only the shift reference) and say where it is."""
    from pathlib import Path

    from mantis.exceptions import ConfigError

    for label, path in (("checkpoint", args.checkpoint), ("dataset", args.dataset)):
        if not Path(path).is_file():
            raise ConfigError(f"{label} {path!r} does not exist")
    from mantis.explain import ensure_shift_reference, explain_run

    reference = ensure_shift_reference(args.checkpoint, args.dataset)
    print(f"shift reference: {reference}")
    if args.reference_only:
        return 0
    if not args.out:
        raise ConfigError("--out DIR is required unless --reference-only is given")
    result = explain_run(
        args.checkpoint,
        args.dataset,
        args.out,
        split=args.split,
        compare=args.compare,
        shifted=dict(args.shifted),
        max_objects=args.max_objects,
        attribution_objects=args.attribution_objects,
        n_steps=args.steps,
    )
    used = [s for s, u in result["surveys_used"].items() if u]
    print(
        f"{result['n_objects']} objects in {result['seconds']:.0f} s; surveys used: "
        f"{', '.join(used) or 'none'}"
    )
    print(f"report: {Path(args.out) / 'explain.html'}")
    return 0
