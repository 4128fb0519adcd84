"""What the user sees while an experiment runs: a progress line and a final table.

Where it prints decides how: in a terminal one line that rewrites itself
(``\r``), in a Jupyter notebook one display that updates in place, and
elsewhere (CI logs, files) a plain line every ``interval`` seconds.  Where
the number of trials is known (``num_samples`` with random or grid search),
the line starts with a progress bar.
"""

from __future__ import annotations

import html
import math
import numbers
import os
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from dasktune._util import AUTO_RESULT_FIELDS as _AUTO_KEYS
from dasktune._util import flatten, last_line
from dasktune.trial import Trial, TrialStatus

_ORDER = (
    TrialStatus.RUNNING,
    TrialStatus.PENDING,
    TrialStatus.PAUSED,
    TrialStatus.TERMINATED,
    TrialStatus.ERROR,
)
_MAX_ROWS = 20
_BAR_WIDTH = 24
#: How often a line that rewrites itself (terminal, notebook) is refreshed, at most.
_LIVE_INTERVAL_S = 1.0


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        return f"{value:.4g}"
    return str(value)


def _elapsed(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours:d}:{minutes:02d}:{secs:02d}"


def progress_bar(done: int, total: int, width: int = _BAR_WIDTH) -> str:
    """``[#######-----------] 7/20`` (more done than expected fills the bar).

    Example:
        >>> progress_bar(5, 20, width=8)
        '[##------] 5/20'
    """
    filled = min(width, int(width * done / total)) if total > 0 else width
    return f"[{'#' * filled}{'-' * (width - filled)}] {done}/{total}"


def _in_notebook() -> bool:
    """Whether this process is a Jupyter kernel (whose stdout shows rich displays)."""
    if "ipykernel" not in sys.modules:
        return False
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def show_in_notebook(text: str, handle: Any = None) -> Any:
    """Show ``text`` in the notebook's output, in the display ``handle`` if given (updated in
    place), else in a new one; the handle to update next time."""
    from IPython.display import HTML, display

    shown = HTML(f"<pre style='margin:0'>{html.escape(text)}</pre>")
    if handle is None:
        return display(shown, display_id=True)
    handle.update(shown)
    return handle


def expected_total(controller: Any) -> int | None:
    """How many trials the experiment will run, if its searcher knows in advance."""
    searcher: Any = getattr(controller, "searcher", None)
    while hasattr(searcher, "searcher"):  # a ConcurrencyLimiter around the real one
        searcher = searcher.searcher
    total = getattr(searcher, "total_samples", None)
    if isinstance(total, int) and total >= 0:
        return total
    settings = getattr(controller, "settings", None)
    if settings is not None and getattr(settings, "searcher_counts_samples", False):
        num_samples = getattr(settings, "num_samples", -1)
        return num_samples if isinstance(num_samples, int) and num_samples >= 0 else None
    return None


class ConsoleReporter:
    """Prints progress every ``interval`` seconds; ``verbose=0`` prints nothing.

    verbose 1: progress and the final table; 2: also one line per result
    and every trial error.

    Args:
        num_samples: How many trials the experiment runs, for the progress bar;
            None: asked of the controller's searcher when it is known, else no bar.
        reporter: A progress reporter (``RunConfig(progress_reporter=...)``, see
            :mod:`dasktune.reporters`): it is asked instead, with the status line as its
            ``sys_info``, and reports the end (``done=True``) instead of the final table.
        stream: Where to print (default: standard output). A terminal gets one
            line that rewrites itself, a notebook's output one updating display,
            anything else a plain line every ``interval`` seconds.
    """

    def __init__(
        self,
        verbose: int,
        metric: str | None,
        mode: str | None,
        interval: float = 5.0,
        stream: TextIO | None = None,
        num_samples: int | None = None,
        reporter: Any = None,
    ) -> None:
        self.verbose = verbose
        self.reporter = reporter
        self.metric = metric
        self.mode = mode
        self.interval = interval
        self.stream = stream or sys.stdout
        self.num_samples = num_samples
        if stream is None and _in_notebook():
            self.kind = "notebook"
        else:
            isatty = getattr(self.stream, "isatty", None)
            self.kind = "terminal" if callable(isatty) and isatty() else "lines"
        self._start = time.monotonic()
        self._last = self._start
        self._line_open = False  # a terminal line that the next print must end first
        self._display: Any = None  # the notebook's display handle
        self._known_total: int | None = None

    def _print(self, text: str) -> None:
        if self._line_open:
            self.stream.write("\n")
            self._line_open = False
        print(text, file=self.stream, flush=True)

    def start(self) -> None:
        self._start = self._last = time.monotonic()
        setup = getattr(self.reporter, "setup", None)
        if callable(setup) and self.verbose >= 1:
            setup(
                start_time=time.time(),
                total_samples=self.num_samples,
                metric=self.metric,
                mode=self.mode,
                verbose=self.verbose,
            )

    def note(self, text: str) -> None:
        if self.verbose >= 1:
            self._print(text)

    def status_line(self, trials: Sequence[Trial], controller: Any = None) -> str:
        counts = Counter(t.status for t in trials)
        parts = [f"{counts[s]} {s.value}" for s in _ORDER if counts[s]]
        total = self.num_samples if self.num_samples is not None else expected_total(controller)
        if total is None:
            total = self._known_total  # the last summary has no controller to ask
        self._known_total = total
        head = f"[dasktune {_elapsed(time.monotonic() - self._start)}] "
        if total is not None:
            done = counts[TrialStatus.TERMINATED] + counts[TrialStatus.ERROR]
            others = [p for p in parts if not p.endswith(("TERMINATED", "ERROR"))]
            errors = f", {counts[TrialStatus.ERROR]} ERROR" if counts[TrialStatus.ERROR] else ""
            line = (
                head
                + f"{progress_bar(done, total)} trials done{errors}"
                + (f" | {', '.join(others)}" if others else "")
            )
        else:
            line = head + f"{len(trials)} trials: " + (", ".join(parts) or "starting")
        best = controller.best_trial(self.metric, self.mode) if controller is not None else None
        if best is not None:
            line += (
                f" | best {self.metric}={_fmt(best.last_result[self.metric])} "
                f"({best.trial_name}, iter {best.last_result.get('training_iteration')})"
            )
        return line

    def update(self, controller: Any, active: int, force: bool = False) -> None:
        if self.reporter is not None:
            trials = controller.trials
            if self.verbose >= 1 and self.reporter.should_report(trials, done=False):
                self._report(trials, False, self.status_line(trials, controller))
            return
        now = time.monotonic()
        interval = self.interval if self.kind == "lines" else min(self.interval, _LIVE_INTERVAL_S)
        if self.verbose < 1 or (not force and now - self._last < interval):
            return
        self._last = now
        self._show(self.status_line(controller.trials, controller))

    def _show(self, line: str) -> None:
        """Show the progress line the way the output allows."""
        if self.kind == "terminal":
            self.stream.write(f"\r{line}\x1b[K")
            self.stream.flush()
            self._line_open = True
        elif self.kind == "notebook":
            self._display = show_in_notebook(line, self._display)
        else:
            self._print(line)

    def _report(self, trials: Sequence[Trial], done: bool, line: str) -> None:
        if self._line_open:  # a status line of ours that the reporter's output must not join
            self.stream.write("\n")
            self._line_open = False
        self.reporter.report(trials, done, line)

    def result(self, trial: Trial, result: dict[str, Any]) -> None:
        if self.verbose >= 2:
            shown = ", ".join(
                f"{k}={_fmt(v)}"
                for k, v in result.items()
                if k in (self.metric, "training_iteration")
            )
            self._print(f"  {trial.trial_name}: {shown}")

    def error(self, trial: Trial, error_type: str, message: str = "") -> None:
        """A trial failed for good (no retry left): one line, whatever the pace of the
        status lines, so that a failure is never only a count in the table."""
        if self.verbose < 1:
            return
        said = last_line(message) or error_type
        self._print(
            f"dasktune: trial {trial.trial_name} failed: {said} "
            f"(traceback: {os.path.join(trial.local_path, 'error.txt')})"
        )

    def summary(self, trials: Sequence[Trial], controller: Any = None) -> None:
        if self.verbose < 1:
            return
        line = self.status_line(trials, controller) + " -- finished"
        if self.reporter is not None:
            self._report(trials, True, line)
            return
        if self.kind == "lines":
            self._print(line)
        else:
            self._show(line)
        self._print(self.table(trials))

    def table(self, trials: Sequence[Trial]) -> str:
        """The final table: status, config and the last metric of each trial, best first."""
        metrics = [self.metric] if self.metric else _reported_metrics(trials)
        return trial_table(
            trials,
            metric_columns={m: m for m in metrics},
            parameter_columns={k: k for k in searched_parameters(trials)},
            metric=self.metric,
            mode=self.mode,
        )


def trial_table(
    trials: Sequence[Trial],
    metric_columns: Mapping[str, str],
    parameter_columns: Mapping[str, str],
    metric: str | None = None,
    mode: str | None = None,
    max_rows: int = _MAX_ROWS,
    max_column_length: int | None = None,
) -> str:
    """A table of ``trials``: name, status, the parameters, the iteration and the metrics.

    ``metric_columns`` and ``parameter_columns`` map a result key (a config key, with
    ``/`` for nested ones) to its column's header.  With ``metric`` and ``mode`` the best
    trial comes first; ``max_rows`` trials are shown, and a line says how many are not.

    Example:
        >>> t = Trial("a", {"lr": 0.1}, trial_name="t_0", last_result={"loss": 0.25})
        >>> print(trial_table([t], {"loss": "loss"}, {"lr": "lr"}))
        trial  status   lr   iter  loss
        -----  -------  ---  ----  ----
        t_0    PENDING  0.1        0.25
    """
    ranked = list(trials)
    if metric and mode:

        def key(t: Trial) -> float:
            value = t.last_result.get(metric)
            if not isinstance(value, numbers.Real) or math.isnan(value):
                return math.inf
            return -float(value) if mode == "max" else float(value)

        ranked.sort(key=key)

    def cell(value: Any) -> str:
        text = _fmt(value)
        if max_column_length is not None and len(text) > max_column_length:
            text = text[: max(1, max_column_length - 3)] + "..."
        return text

    # the iteration has a column of its own, unless the metric columns show it already
    iteration = [] if "training_iteration" in metric_columns else ["training_iteration"]
    headers = [
        "trial",
        "status",
        *parameter_columns.values(),
        *("iter" for _ in iteration),
        *metric_columns.values(),
    ]
    rows = []
    for t in ranked[:max_rows]:
        config = flatten(t.config)
        rows.append(
            [
                t.trial_name or t.trial_id,
                t.status.value,
                *(cell(config.get(k, "")) for k in parameter_columns),
                *(cell(t.last_result.get(k, "")) for k in iteration),
                *(cell(t.last_result.get(m, "")) for m in metric_columns),
            ]
        )
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    lines = [
        "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip(),
        "  ".join("-" * w for w in widths),
    ]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    if len(ranked) > max_rows:
        lines.append(
            f"... {len(ranked) - max_rows} more trials (ResultGrid.get_dataframe() has them all)"
        )
    return "\n".join(lines)


def searched_parameters(trials: Sequence[Trial], limit: int = 6) -> list[str]:
    """The config keys (nested ones as ``a/b``) worth a column: those whose values differ
    between the trials, as Ray Tune shows the searched ones, not the constants beside
    them (``epochs``, a data path); all of them for a single trial or a single config.

    >>> from dasktune.trial import Trial
    >>> trials = [Trial("a", {"lr": 0.1, "epochs": 5}), Trial("b", {"lr": 0.2, "epochs": 5})]
    >>> searched_parameters(trials)
    ['lr']
    """
    values: dict[str, set[str]] = {}
    for trial in trials:
        for key, value in flatten(trial.config).items():
            if not isinstance(value, (dict, list)):
                values.setdefault(key, set()).add(repr(value))
    varying = [key for key, seen in values.items() if len(seen) > 1]
    return sorted(varying or values)[:limit]


def _reported_metrics(trials: Sequence[Trial], limit: int = 3) -> list[str]:
    """Without a metric to rank by, show the first few numbers the trials reported."""
    names: list[str] = []
    for trial in trials:
        for key, value in trial.last_result.items():
            if (
                key not in _AUTO_KEYS
                and key not in names
                and isinstance(value, numbers.Real)
                and not isinstance(value, bool)
            ):
                names.append(key)
    return names[:limit]
