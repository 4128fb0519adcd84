"""The ``dasktune`` command: ``dasktune port SCRIPT.py`` (more subcommands to come).

Each subcommand is one ``_add_<name>(subparsers)`` function that adds its parser
and sets ``handler``, a function of the parsed arguments that returns the exit
code; :data:`SUBCOMMANDS` lists them, so a new one is a function and a line.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["build_parser", "main"]


def _add_port(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "port", help="rewrite a Ray Tune script to run on dasktune",
        description="Rewrite a Ray Tune script's imports and Ray calls for dasktune, keeping "
                    "the rest of it as it is. Prints a unified diff, then what could not be "
                    "ported and why.",
        epilog="Exit status: 0 when done (with --check: when everything can be ported), 1 "
               "when --check finds something that cannot be ported, 2 for a script that "
               "cannot be read or parsed.")
    parser.add_argument("script", help="the Ray Tune script (a .py file)")
    parser.add_argument("-o", "--output", metavar="OUT.py",
                        help="write the ported script there ('-' for standard output, with "
                             "the report on standard error); without it nothing is written")
    parser.add_argument("--check", action="store_true",
                        help="only report what cannot be ported; write and print no diff")
    parser.set_defaults(handler=_port)


def _port(args: argparse.Namespace) -> int:
    from dasktune.porting import port_source, problems_text

    try:
        with open(args.script, encoding="utf-8") as f:
            source = f.read()
    except OSError as exc:
        print(f"dasktune port: cannot read {args.script}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    try:
        result = port_source(source)
    except SyntaxError as exc:
        print(f"dasktune port: {args.script} is not valid Python (line {exc.lineno}: "
              f"{exc.msg}); fix it, then port it.", file=sys.stderr)
        return 2
    report = list(problems_text(result, args.script))
    if args.check:
        print("\n".join(report) if report else f"{args.script}: nothing to report")
        verdict = (f"{len(result.problems)} construct(s) cannot be ported" if result.problems
                   else "everything can be ported")
        print(f"dasktune port --check: {verdict}.")
        return 1 if result.problems else 0
    to_stdout = args.output == "-"
    out = sys.stderr if to_stdout else sys.stdout
    if to_stdout:
        sys.stdout.write(result.ported)
    elif result.changed:
        out.write(result.diff(args.script, args.output))
    else:
        print(f"{args.script}: no Ray Tune code to port.", file=out)
    if args.output and not to_stdout:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(result.ported)
    for line in report:
        print(line, file=sys.stderr)
    if result.problems:
        print(f"dasktune port: {len(result.problems)} construct(s) could not be ported; they "
              "are left as they were.", file=sys.stderr)
    return 0


#: The subcommands, in the order ``--help`` lists them.
SUBCOMMANDS: tuple[Callable[[Any], None], ...] = (_add_port,)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dasktune", description="dasktune: hyperparameter tuning on Dask, with Ray Tune's API.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in SUBCOMMANDS:
        add(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``dasktune`` command with ``argv`` (default: the process's); return its exit code."""
    args = build_parser().parse_args(argv)
    return int(args.handler(args))
