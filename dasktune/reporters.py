"""Progress reporters with Ray Tune's names: ``CLIReporter``, ``JupyterNotebookReporter``.

Pass one as ``RunConfig(progress_reporter=...)`` or ``tune.run(progress_reporter=...)``
to choose what dasktune prints while an experiment runs: which metrics and
parameters make the table's columns, how many trials it shows, how often it
prints.  Without one, dasktune prints its status line and, at the end, a table.

A class of your own works too: subclass :class:`ProgressReporter` (or write any
object with the same two methods) and dasktune calls ``should_report`` as the
experiment goes, ``report`` when it says so, and ``report(trials, done=True, ...)``
once at the end, instead of printing its own lines.  The trials it receives are
dasktune's :class:`~dasktune.trial.Trial` objects (``trial_id``, ``config``,
``status``, ``last_result``, ``local_path``).  ``RunConfig(verbose=0)`` silences
every reporter.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from dasktune.execution.console import (
    _in_notebook,
    _reported_metrics,
    searched_parameters,
    show_in_notebook,
    trial_table,
)
from dasktune.trial import Trial, TrialStatus

__all__ = ["CLIReporter", "JupyterNotebookReporter", "ProgressReporter", "TuneReporterBase"]


class ProgressReporter:
    """The interface dasktune calls while an experiment runs; subclass it for your own output.

    Example:
        >>> class Finished(ProgressReporter):
        ...     def should_report(self, trials, done=False):
        ...         return done
        ...     def report(self, trials, done, *sys_info):
        ...         print(f"{len(trials)} trials")
        >>> Finished().should_report([], done=False)
        False
    """

    def setup(
        self,
        start_time: float | None = None,
        total_samples: int | None = None,
        metric: str | None = None,
        mode: str | None = None,
        **kwargs: Any,
    ) -> None:
        """Called once before the experiment starts, with what dasktune knows of it."""

    def should_report(self, trials: Sequence[Trial], done: bool = False) -> bool:
        """Whether to call :meth:`report` now."""
        return True

    def report(self, trials: Sequence[Trial], done: bool, *sys_info: str) -> None:
        """Show progress. ``sys_info`` holds dasktune's status line."""
        raise NotImplementedError


def _columns(value: Any, argument: str) -> dict[str, str]:
    """Ray's column arguments: a list of keys, or a mapping of key to header."""
    if value is None:
        return {}
    if isinstance(value, str):
        return {value: value}
    if isinstance(value, Mapping):
        return {str(k): str(v) for k, v in value.items()}
    try:
        return {str(k): str(k) for k in value}
    except TypeError:
        raise TypeError(
            f"{argument} is {value!r}; it must be a list of keys, such as ['loss', 'accuracy'], "
            "or a dict of key to the column's header, such as {'loss': 'Loss'}."
        ) from None


def _positive(value: Any, argument: str) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ValueError(f"{argument} is {value!r}; it must be a number above 0.")
    return value


class TuneReporterBase(ProgressReporter):
    """A table of the trials every ``max_report_frequency`` seconds (Ray's arguments).

    Args:
        metric_columns: The metrics shown, as a list of result keys or a dict of key to
            header; None: the ``metric`` and the first ``infer_limit`` numbers reported.
        parameter_columns: The config keys shown (``a/b`` for nested ones), a list or a
            dict of key to header; None: every scalar config key, up to six.
        total_samples: How many trials the experiment runs, for the progress bar; None:
            as dasktune knows it.
        max_progress_rows: Trials shown while it runs.
        max_error_rows: Failed trials listed with their error files.
        max_column_length: Longer values are cut to this many characters.
        max_report_frequency: Seconds between reports, at least.
        infer_limit: Metrics shown when ``metric_columns`` is None.
        print_intermediate_tables: Whether a table is printed with each report while the
            experiment runs, not only at its end. None: only with ``verbose=3``.
        metric, mode: The metric to rank by and whether lower or higher is better; None:
            the experiment's.
        sort_by_metric: Show the best trials first.
    """

    def __init__(
        self,
        metric_columns: Sequence[str] | Mapping[str, str] | None = None,
        parameter_columns: Sequence[str] | Mapping[str, str] | None = None,
        total_samples: int | None = None,
        max_progress_rows: int = 20,
        max_error_rows: int = 20,
        max_column_length: int = 20,
        max_report_frequency: float = 5,
        infer_limit: int = 3,
        print_intermediate_tables: bool | None = None,
        metric: str | None = None,
        mode: str | None = None,
        sort_by_metric: bool = False,
    ) -> None:
        if mode not in (None, "min", "max"):
            raise ValueError(f"mode is {mode!r}; it must be 'min', 'max' or None.")
        self._metric_columns = _columns(metric_columns, "metric_columns")
        self._metrics_given = metric_columns is not None
        self._parameter_columns = _columns(parameter_columns, "parameter_columns")
        self._parameters_given = parameter_columns is not None
        self._total_samples = total_samples
        self._max_progress_rows = int(_positive(max_progress_rows, "max_progress_rows"))
        self._max_error_rows = int(max_error_rows)
        self._max_column_length = int(_positive(max_column_length, "max_column_length"))
        self._max_report_frequency = float(_positive(max_report_frequency, "max_report_frequency"))
        self._infer_limit = int(infer_limit)
        self._print_intermediate_tables = print_intermediate_tables
        self._metric = metric
        self._mode = mode
        self._sort_by_metric = bool(sort_by_metric)
        self._verbose = 1
        self._last_report = -float("inf")

    def setup(
        self,
        start_time: float | None = None,
        total_samples: int | None = None,
        metric: str | None = None,
        mode: str | None = None,
        **kwargs: Any,
    ) -> None:
        if self._total_samples is None:
            self._total_samples = total_samples
        if self._metric is None:
            self._metric = metric
        if self._mode is None:
            self._mode = mode
        self._verbose = int(kwargs.get("verbose", self._verbose))

    def add_metric_column(self, metric: str, representation: str | None = None) -> None:
        """Show ``metric`` too, headed ``representation`` (default: its name)."""
        if metric in self._metric_columns:
            raise ValueError(f"Column {metric!r} is shown already.")
        self._metric_columns[metric] = representation or metric
        self._metrics_given = True

    def add_parameter_column(self, parameter: str, representation: str | None = None) -> None:
        """Show config key ``parameter`` too, headed ``representation`` (default: its name)."""
        if parameter in self._parameter_columns:
            raise ValueError(f"Column {parameter!r} is shown already.")
        self._parameter_columns[parameter] = representation or parameter
        self._parameters_given = True

    def should_report(self, trials: Sequence[Trial], done: bool = False) -> bool:
        now = time.monotonic()
        if done or now - self._last_report >= self._max_report_frequency:
            self._last_report = now
            return True
        return False

    def report(self, trials: Sequence[Trial], done: bool, *sys_info: str) -> None:
        self._emit(self._progress_str(trials, done, *sys_info))

    def _emit(self, text: str) -> None:
        print(text, flush=True)

    # -- the text --------------------------------------------------------------
    def _progress_str(self, trials: Sequence[Trial], done: bool, *sys_info: str) -> str:
        lines = [line for line in sys_info if line]
        tables = self._print_intermediate_tables
        if tables is None:
            tables = self._verbose >= 3
        if done or tables:
            lines.append(self.table(trials))
            if done:
                lines += self._errors(trials)
        return "\n".join(lines)

    def table(self, trials: Sequence[Trial]) -> str:
        """The table of ``trials`` with this reporter's columns."""
        metric, mode = self._metric, self._mode
        return trial_table(
            trials,
            metric_columns=self._metric_columns_for(trials),
            parameter_columns=self._parameter_columns_for(trials),
            metric=metric if self._sort_by_metric else None,
            mode=mode if self._sort_by_metric else None,
            max_rows=self._max_progress_rows,
            max_column_length=self._max_column_length,
        )

    def _metric_columns_for(self, trials: Sequence[Trial]) -> dict[str, str]:
        if self._metrics_given:
            return dict(self._metric_columns)
        names = [self._metric] if self._metric else []
        names += [n for n in _reported_metrics(trials, self._infer_limit) if n not in names]
        names = names[: max(self._infer_limit, 1 if self._metric else 0)]  # the metric stays
        return {n: n for n in names}

    def _parameter_columns_for(self, trials: Sequence[Trial]) -> dict[str, str]:
        if self._parameters_given:
            return dict(self._parameter_columns)
        return {k: k for k in searched_parameters(trials)}

    def _errors(self, trials: Sequence[Trial]) -> list[str]:
        failed = [t for t in trials if t.status == TrialStatus.ERROR]
        if not failed or self._max_error_rows <= 0:
            return []
        lines = [f"{len(failed)} trial(s) failed:"]
        lines += [
            f"  {t.trial_name or t.trial_id}: {t.local_path}/error.txt"
            for t in failed[: self._max_error_rows]
        ]
        if len(failed) > self._max_error_rows:
            lines.append(f"  ... and {len(failed) - self._max_error_rows} more")
        return lines


class CLIReporter(TuneReporterBase):
    """Prints the trials' progress to standard output (see :class:`TuneReporterBase`).

    Example:
        >>> reporter = CLIReporter(metric_columns=["loss", "accuracy"], max_report_frequency=10)
        >>> reporter.add_parameter_column("lr", "learning rate")
    """


class JupyterNotebookReporter(TuneReporterBase):
    """Shows the trials' progress in a notebook cell, updated in place with ``overwrite``.

    Outside a notebook it prints, as :class:`CLIReporter` does.

    Args:
        overwrite: Replace the previous report rather than add a new one below it.
        **kwargs: As :class:`TuneReporterBase`.
    """

    def __init__(self, overwrite: bool = True, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._overwrite = bool(overwrite)
        self._display: Any = None

    def _emit(self, text: str) -> None:
        if not _in_notebook():
            super()._emit(text)
            return
        self._display = show_in_notebook(text, self._display if self._overwrite else None)


def check_reporter(reporter: Any, argument: str) -> Any:
    """``reporter`` if it can report (None passes); else a TypeError that says what can."""
    if reporter is None:
        return None
    if callable(getattr(reporter, "report", None)) and callable(
        getattr(reporter, "should_report", None)
    ):
        return reporter
    raise TypeError(
        f"{argument} is {reporter!r}, which is not a progress reporter. Pass "
        "dasktune.CLIReporter(metric_columns=[...]) or JupyterNotebookReporter(...), an "
        "instance of a dasktune.ProgressReporter subclass, or None for dasktune's own "
        "status lines."
    )
