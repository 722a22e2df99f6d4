"""The `parity` command line."""

from __future__ import annotations

import argparse
from collections.abc import Sequence


def _env(arguments: argparse.Namespace) -> int:
    from pytest_parity.environment import describe

    print(describe())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="parity", description=__doc__)
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    env = verbs.add_parser("env", help="print versions and devices of torch and jax")
    env.set_defaults(run=_env)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = build_parser().parse_args(argv)
    return int(arguments.run(arguments))


if __name__ == "__main__":
    raise SystemExit(main())
