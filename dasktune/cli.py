"""The ``dasktune`` command: ``port``, ``summary``, ``plot`` and ``dashboard``.

Each subcommand is one ``_add_<name>(subparsers)`` function that adds its parser
and sets ``handler``, a function of the parsed arguments that returns the exit
code; :data:`SUBCOMMANDS` lists them, so a new one is a function and a line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from dasktune._util import AUTO_RESULT_FIELDS, flatten

__all__ = ["build_parser", "main"]


def _add_port(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "port",
        help="rewrite a Ray Tune script to run on dasktune",
        description="Rewrite a Ray Tune script's imports and Ray calls for dasktune, keeping "
        "the rest of it as it is. Prints a unified diff, then what could not be "
        "ported and why.",
        epilog="Exit status: 0 when done (with --check: when everything can be ported), 1 "
        "when --check finds something that cannot be ported, 2 for a script that "
        "cannot be read or parsed.",
    )
    parser.add_argument("script", help="the Ray Tune script (a .py file)")
    parser.add_argument(
        "-o",
        "--output",
        metavar="OUT.py",
        help="write the ported script there ('-' for standard output, with "
        "the report on standard error); without it nothing is written",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="only report what cannot be ported; write and print no diff",
    )
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
        print(
            f"dasktune port: {args.script} is not valid Python (line {exc.lineno}: "
            f"{exc.msg}); fix it, then port it.",
            file=sys.stderr,
        )
        return 2
    report = list(problems_text(result, args.script))
    if args.check:
        print("\n".join(report) if report else f"{args.script}: nothing to report")
        verdict = (
            f"{len(result.problems)} construct(s) cannot be ported"
            if result.problems
            else "everything can be ported"
        )
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
        print(
            f"dasktune port: {len(result.problems)} construct(s) could not be ported; each is "
            "left as it was, or, where the script imports it, replaced by a stand-in that "
            "raises the reason above when the script uses it.",
            file=sys.stderr,
        )
    return 0


# -- reading an experiment ---------------------------------------------------------------
_EXPERIMENT_HELP = "the experiment's directory, <storage_path>/<name> (as fit() prints it)"


def _analysis(args: argparse.Namespace) -> Any:
    """The experiment at ``args.path``; a ValueError with a clear message if there is none."""
    from dasktune.analysis import ExperimentAnalysis, not_an_experiment
    from dasktune.dashboard._server import is_experiment_dir

    path = os.path.abspath(os.path.expanduser(args.path))
    if not is_experiment_dir(path):
        raise ValueError(not_an_experiment(f"dasktune {args.command}", path))
    return ExperimentAnalysis(
        path, default_metric=getattr(args, "metric", None), default_mode=getattr(args, "mode", None)
    )


def _metric_of(analysis: Any, command: str) -> str:
    """The metric asked for, else the experiment's own; an error that lists the choices."""
    if analysis.default_metric:
        return str(analysis.default_metric)
    reported = sorted(
        {
            key
            for trial in analysis.trials
            for key, value in trial.last_result.items()
            if isinstance(value, (int, float))
            and not isinstance(value, bool)
            and key not in AUTO_RESULT_FIELDS
        }
    )
    raise ValueError(
        f"dasktune {command}: the experiment has no metric of its own; pass "
        f"--metric, one of: {', '.join(reported) or '(nothing reported yet)'}."
    )


def _experiment_parser(subparsers: Any, name: str, help: str, description: str) -> Any:
    """A subcommand reading an experiment: PATH, --metric and --mode."""
    parser = subparsers.add_parser(
        name,
        help=help,
        description=description,
        epilog="Exit status: 0, or 2 when PATH is not an experiment or the metric is unknown.",
    )
    parser.add_argument("path", metavar="PATH", help=_EXPERIMENT_HELP)
    parser.add_argument("--metric", help="the metric (default: the experiment's own)")
    parser.add_argument(
        "--mode",
        choices=("min", "max"),
        help="whether lower or higher is better (default: the experiment's)",
    )
    return parser


def _add_summary(subparsers: Any) -> None:
    parser = _experiment_parser(
        subparsers,
        "summary",
        "the best trials of an experiment, as a table",
        "Rank the trials of an experiment by a metric (each trial's last value, as "
        "ResultGrid.get_best_result does) and print the best. Works on a running experiment "
        "too.",
    )
    parser.add_argument(
        "--top",
        type=int,
        default=10,
        metavar="N",
        help="how many trials to show (default: 10; 0 for all)",
    )
    parser.add_argument(
        "--format",
        choices=("table", "csv", "json"),
        default="table",
        help="table (default), csv or json (records)",
    )
    parser.set_defaults(handler=_summary)


def _summary(args: argparse.Namespace) -> int:
    import math

    import pandas as pd

    analysis = _analysis(args)
    metric = _metric_of(analysis, "summary")
    mode = analysis.default_mode or "max"
    rows = []
    for trial in analysis.trials:
        frame = analysis.trial_dataframes[trial.trial_id]
        values = frame[metric].dropna() if metric in frame else pd.Series(dtype=float)
        numeric = pd.to_numeric(values, errors="coerce").dropna()
        rows.append(
            {
                "trial": os.path.basename(trial.path),
                "status": str(trial.status),
                "iter": trial.last_result.get("training_iteration"),
                metric: trial.last_result.get(metric),
                f"best {metric}": (numeric.max() if mode == "max" else numeric.min())
                if len(numeric)
                else None,
                **{f"config/{k}": v for k, v in flatten(trial.config).items()},
            }
        )

    def rank(row: dict[str, Any]) -> float:
        value = row[metric]
        if not isinstance(value, (int, float)) or isinstance(value, bool) or math.isnan(value):
            return math.inf
        return -float(value) if mode == "max" else float(value)

    rows.sort(key=rank)
    table = pd.DataFrame(rows[: args.top] if args.top > 0 else rows)
    if args.format == "csv":
        sys.stdout.write(table.to_csv(index=False))
    elif args.format == "json":
        records = json.loads(table.to_json(orient="records"))  # NaN as null, numpy as numbers
        print(json.dumps(records, indent=2))
    else:
        print(f"{analysis.experiment_path}: {len(rows)} trials, best by {metric} ({mode}):")
        # na_rep covers NaN in numeric columns; a column of only None (a metric no trial
        # reported) has the object dtype, which would print "None"
        objects = table.select_dtypes(include="object").columns
        table[objects] = table[objects].where(table[objects].notna(), "-")
        print(table.to_string(index=False, na_rep="-") if rows else "(no trials yet)")
    return 0


def _add_plot(subparsers: Any) -> None:
    parser = _experiment_parser(
        subparsers,
        "plot",
        "save learning curves or parallel coordinates as a PNG",
        "Draw an experiment's trials into a PNG: the learning curves of a metric (the best "
        "trial bold), or with --kind parallel one line per trial across its config values and "
        "the metric.",
    )
    parser.add_argument(
        "-o", "--output", metavar="FILE.png", required=True, help="where to save the picture"
    )
    parser.add_argument(
        "--kind",
        choices=("curves", "parallel"),
        default="curves",
        help="curves (default) or parallel (parallel coordinates)",
    )
    parser.set_defaults(handler=_plot)


def _plot(args: argparse.Namespace) -> int:
    from dasktune.plot import plot_learning_curves, plot_parallel_coordinates

    analysis = _analysis(args)
    metric = _metric_of(analysis, "plot")
    draw = plot_parallel_coordinates if args.kind == "parallel" else plot_learning_curves
    print(draw(analysis.result_grid, metric, path=args.output, mode=analysis.default_mode))
    return 0


def _add_dashboard(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "dashboard",
        help="serve the experiment's page, running or finished, without Dask",
        description="Serve the /dasktune page for an experiment directory on a Bokeh server of "
        "its own: live while another process runs the experiment (it follows the "
        "files as they grow, without locking them), or finished. Stop it with "
        "Ctrl-C.",
        epilog="Exit status: 0 when stopped, 2 when PATH is not an experiment or the port is "
        "taken.",
    )
    parser.add_argument("path", metavar="PATH", help=_EXPERIMENT_HELP)
    parser.add_argument(
        "--port",
        type=int,
        default=8788,
        help="the port to listen on (default: 8788; 0 for any free port)",
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="the interface to listen on (default: 127.0.0.1, this machine "
        "only; 0.0.0.0 for every one)",
    )
    parser.set_defaults(handler=_dashboard)


def _dashboard(args: argparse.Namespace) -> int:
    from dasktune.analysis import not_an_experiment
    from dasktune.dashboard._server import ExperimentServer, is_experiment_dir

    path = os.path.abspath(os.path.expanduser(args.path))
    if not is_experiment_dir(path):
        raise ValueError(not_an_experiment("dasktune dashboard", path))
    try:
        server = ExperimentServer(path, port=args.port, host=args.host)
    except OSError as exc:
        raise ValueError(
            f"dasktune dashboard: cannot listen on {args.host}:{args.port} "
            f"({exc.strerror or exc}); pass another --port, or --port 0 for a "
            "free one."
        ) from None
    server.run(ready=lambda url: print(f"dasktune dashboard: {url} (Ctrl-C to stop)", flush=True))
    return 0


#: The subcommands, in the order ``--help`` lists them.
SUBCOMMANDS: tuple[Callable[[Any], None], ...] = (
    _add_port,
    _add_summary,
    _add_plot,
    _add_dashboard,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dasktune", description="dasktune: hyperparameter tuning on Dask, with Ray Tune's API."
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in SUBCOMMANDS:
        add(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``dasktune`` command with ``argv`` (default: the process's); return its exit code.

    A ValueError from a subcommand is the user's to fix: its message, exit status 2.
    """
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except ValueError as exc:
        print(str(exc), file=sys.stderr)
        return 2
