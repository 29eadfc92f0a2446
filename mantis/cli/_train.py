"""``mantis train``: everything after the verb goes to LightningCLI.

Example: ``mantis train fit --config train/early --data.path runs/x/dataset.h5
--trainer.default_root_dir runs/x/early``. ``--config`` takes a YAML path or the name of a
shipped training config (``train/early``, ``train/late``, ``train/smoke_early``, ...). The
run folder receives the resolved ``config.yaml``, ``metrics.csv`` and
``checkpoints/{best,last}.ckpt``.
"""

from __future__ import annotations

import argparse

__all__ = ["register", "run", "run_argv"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``train`` sub-parser (shown in ``mantis --help``; arguments pass through)."""
    parser = subparsers.add_parser(
        "train",
        help="train a network with LightningCLI (mantis train fit --config ...)",
        add_help=False,
    )
    parser.add_argument("argv", nargs=argparse.REMAINDER)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run LightningCLI with the arguments collected by `register`."""
    return run_argv(list(args.argv))


def run_argv(argv: list[str]) -> int:
    """Run LightningCLI on ``argv`` (``fit --config ...``) and return the exit status."""
    from mantis.models import MantisCLI

    MantisCLI(args=_resolve_configs(argv))
    return 0


def _resolve_configs(argv: list[str]) -> list[str]:
    """Replace each ``--config`` (``-c``) value that is not a file by the shipped file it names."""
    from mantis.config import config_file

    out, expect_value = [], False
    for arg in argv:
        if expect_value:
            out.append(str(config_file(arg)))
        elif arg.startswith("--config="):
            out.append("--config=" + str(config_file(arg.removeprefix("--config="))))
        else:
            out.append(arg)
        expect_value = arg in ("--config", "-c")
    return out
