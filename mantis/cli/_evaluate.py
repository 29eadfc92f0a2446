"""``mantis evaluate``: metrics, baselines, figures and a report for a checkpoint (scores only)."""

from __future__ import annotations

import argparse

from mantis.cli._options import add_calibration, add_no_progress, add_split

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``evaluate`` sub-command."""
    parser = subparsers.add_parser(
        "evaluate",
        help="score a trained checkpoint before and after recalibration, against baselines",
        description="Predict densities for the chosen split of DATASET, apply the recalibration "
        "that mantis calibrate wrote (--calibration, or the file beside the checkpoint), then "
        "write metrics.json, report.md, report.html and PNG figures to --out, with "
        "template-fitting, kNN (and, given --truth, oracle) baselines in the same tables. "
        "Nothing is written to the checkpoint. Reruns reuse finished intermediate results kept "
        "under OUT/work.",
    )
    parser.add_argument("--checkpoint", required=True, metavar="CKPT", help="trained checkpoint")
    parser.add_argument("--dataset", required=True, metavar="DATASET.h5", help="mantis dataset")
    add_split(parser, default="test", help="split to score")
    add_calibration(parser)
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument(
        "--truth",
        metavar="TRUTH.parquet",
        help="simulated sky truth table (<stem>.truth.parquet) for the oracle baseline",
    )
    parser.add_argument(
        "--n-boot", type=int, default=100, metavar="N", help="bootstrap resamples (default 100)"
    )
    parser.add_argument("--no-baselines", action="store_true", help="skip the baselines")
    parser.add_argument("--no-plots", action="store_true", help="skip the figures")
    add_no_progress(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Evaluate and print where the report is; 0 on success."""
    from mantis.cli._inputs import check_dataset_file, check_input_file, check_parquet_file
    from mantis.evaluate import evaluate_run

    check_input_file(
        args.checkpoint, "--checkpoint", expected="a checkpoint of mantis train", allow_empty=True
    )
    check_dataset_file(args.dataset, "--dataset")
    if args.truth is not None:
        check_parquet_file(args.truth, "--truth", expected="a sky truth table (.truth.parquet)")

    metrics = evaluate_run(
        args.checkpoint,
        args.dataset,
        args.out,
        split=args.split,
        truth=args.truth,
        calibration=args.calibration,
        n_boot=args.n_boot,
        baselines=not args.no_baselines,
        plots=not args.no_plots,
        progress=not args.no_progress,
    )
    calibrated = metrics["calibrated"]
    print(
        f"{metrics['n_objects']} objects ({args.split}): NMAD {calibrated['nmad']:.4f}, "
        f"outliers >0.15 {calibrated['outlier_rate_015']:.3f}, CRPS {calibrated['crps']:.4f}, "
        f"PIT KS {calibrated['ks']:.3f} after {metrics['calibration']['method']} recalibration"
    )
    print(f"report: {args.out}/report.html")
    return 0
