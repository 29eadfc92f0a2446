"""The ``mantis`` command: thin wrappers over the library.

Each verb lives in its own module ``mantis/cli/_<verb>.py`` with two functions,
``register(subparsers)`` adding its parser and ``run(args) -> int``. Modules import heavy
libraries (torch, galsim, ...) inside ``run`` only, so ``mantis --help`` and ``mantis fetch``
start fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from mantis import __version__
from mantis.exceptions import MantisError

__all__ = ["main"]

# verb -> module under mantis.cli; 'train' hands its arguments to LightningCLI unparsed.
VERBS: dict[str, str] = {
    "sky": "_sky",
    "fetch": "_fetch",
    "build": "_build",
    "show": "_show",
    "train": "_train",
    "calibrate": "_calibrate",
    "evaluate": "_evaluate",
    "explain": "_explain",
    "predict": "_predict",
    "priors": "_priors",
    "serve": "_serve",
    "pipeline": "_pipeline",
}
PASSTHROUGH_VERBS = {"train"}


def _load(verb: str):
    return importlib.import_module(f"mantis.cli.{VERBS[verb]}")


def build_parser(verbs: list[str] | None = None) -> argparse.ArgumentParser:
    """Return the top-level parser with one sub-parser per available verb."""
    parser = argparse.ArgumentParser(
        prog="mantis",
        description="Photometric redshifts from GALEX, Pan-STARRS1 and unWISE images.",
    )
    parser.add_argument("--version", action="version", version=f"mantis {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    for verb in verbs or list(VERBS):
        try:
            module = _load(verb)
        except ModuleNotFoundError as err:
            if err.name != f"mantis.cli.{VERBS[verb]}":
                raise  # a verb module that exists but lacks a dependency must say so
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``mantis`` console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] in PASSTHROUGH_VERBS:
            return int(_load(argv[0]).run_argv(argv[1:]) or 0)
        verbs = [argv[0]] if argv and argv[0] in VERBS else None
        parser = build_parser(verbs)
        args = parser.parse_args(argv)
        if args.verb is None:
            parser.print_help()
            return 2
        return int(args.func(args) or 0)
    except MantisError as err:
        print(f"mantis: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mantis: interrupted; finished work is kept, rerun to resume", file=sys.stderr)
        return 130
