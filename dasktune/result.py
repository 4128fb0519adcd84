"""What ``Tuner.fit`` returns: one Result per trial, gathered in a ResultGrid."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from dasktune._protocol import SHOULD_CHECKPOINT as SHOULD_CHECKPOINT  # Ray's result key
from dasktune._util import AUTO_RESULT_FIELDS as _AUTO_FIELDS
from dasktune._util import flatten, is_auto_field, last_line
from dasktune._validation import is_finite_number, is_number
from dasktune.trainable.checkpoint import Checkpoint
from dasktune.trial import Trial, TrialStatus

if TYPE_CHECKING:
    import pandas as pd

_SCOPES = ("last", "all", "avg", "last-5-avg", "last-10-avg")


class TrialError(RuntimeError):
    """A trial's trainable raised; the message holds the worker's traceback."""


@dataclass
class Result:
    """The outcome of one trial."""

    metrics: dict[str, Any]
    config: dict[str, Any]
    path: str
    checkpoint: Checkpoint | None = None
    best_checkpoints: list[tuple[Checkpoint, dict[str, Any]]] = field(default_factory=list)
    error: BaseException | None = None
    status: str = "TERMINATED"
    _rows: list[dict[str, Any]] = field(default_factory=list, repr=False)
    _exception: bytes | None = field(default=None, repr=False)  # the trial's own, pickled
    #: Reads the rows from the trial's files on first use, instead of ``_rows``: an
    #: experiment of many trials does not hold every result in memory.
    _load_rows: Callable[[], list[dict[str, Any]]] | None = field(default=None, repr=False)
    #: The last row, known without loading the others (with ``_load_rows``).
    _last_row: dict[str, Any] | None = field(default=None, repr=False)

    def get_best_checkpoint(self, metric: str, mode: str) -> Checkpoint | None:
        """The kept checkpoint whose result was best by ``metric`` (Ray Tune's method);
        None if no kept checkpoint's result has it."""
        if mode not in ("min", "max"):
            raise ValueError(
                f"Result.get_best_checkpoint(mode={mode!r}): mode must be 'min' or 'max'."
            )
        scored = [
            (value, checkpoint)
            for checkpoint, metrics in self.best_checkpoints
            if is_finite_number(value := flatten(metrics).get(metric))
        ]
        if not scored:
            return None
        pick = min if mode == "min" else max
        return pick(scored, key=lambda pair: pair[0])[1]

    @property
    def log_dir(self) -> Path:
        """The trial's directory, as a path: Ray 2.0-2.6's name for :attr:`path`."""
        return Path(self.path)

    @property
    def metrics_dataframe(self) -> pd.DataFrame:
        """One row per report of this trial (nested metrics flattened as ``a/b``)."""
        import pandas as pd  # imported on first use: it costs 0.4 s, in workers too

        return pd.DataFrame(self._all_rows())

    def _all_rows(self) -> list[dict[str, Any]]:
        """Every row of the trial, loaded now if they were left on disk."""
        if self._load_rows is not None:
            self._rows, self._load_rows = self._load_rows(), None
        return self._rows

    def _final_row(self) -> dict[str, Any] | None:
        """The trial's last row, without loading the others where it is known."""
        if self._load_rows is not None and self._last_row is not None:
            return self._last_row
        rows = self._all_rows()
        return rows[-1] if rows else None

    @property
    def trial_id(self) -> str | None:
        return self.metrics.get("trial_id")

    def __repr__(self) -> str:
        shown = {
            k: v
            for k, v in self.metrics.items()
            if k not in _AUTO_FIELDS or k == "training_iteration"
        }
        error = f", error={type(self.error).__name__}" if self.error else ""
        return f"Result(metrics={shown}, path={self.path!r}{error})"


def _score(rows: Sequence[dict[str, Any]], metric: str, scope: str) -> float | None:
    values = [r[metric] for r in rows if metric in r and is_number(r[metric])]
    if not values:
        return None
    if scope == "last":
        return float(values[-1])
    if scope == "avg":
        return float(sum(values) / len(values))
    if scope.startswith("last-"):
        n = int(scope.split("-")[1])
        tail = values[-n:]
        return float(sum(tail) / len(tail))
    return float("nan")  # "all" is handled by the caller (it depends on mode)


class ResultGrid:
    """The results of an experiment: indexable, iterable, and queryable for the best."""

    def __init__(
        self,
        results: list[Result],
        experiment_path: str,
        default_metric: str | None = None,
        default_mode: str | None = None,
    ) -> None:
        self._results = results
        self.experiment_path = experiment_path
        self._metric = default_metric
        self._mode = default_mode

    def __len__(self) -> int:
        return len(self._results)

    def __iter__(self) -> Iterator[Result]:
        return iter(self._results)

    def __getitem__(self, i: int) -> Result:
        return self._results[i]

    def __repr__(self) -> str:
        return (
            f"ResultGrid<{len(self)} trials, {self.num_errors} errors, "
            f"path={self.experiment_path!r}>"
        )

    @property
    def errors(self) -> list[BaseException]:
        return [r.error for r in self._results if r.error is not None]

    @property
    def num_errors(self) -> int:
        return len(self.errors)

    @property
    def num_terminated(self) -> int:
        return sum(1 for r in self._results if r.status == "TERMINATED")

    def get_best_result(
        self,
        metric: str | None = None,
        mode: str | None = None,
        scope: str = "last",
        filter_nan_and_inf: bool = True,
    ) -> Result:
        """The trial with the best ``metric`` (default: the TuneConfig's).

        Args:
            scope: Which of each trial's results count: ``"last"`` (its last
                result), ``"avg"`` (the mean of all), ``"last-5-avg"``,
                ``"last-10-avg"``, or ``"all"`` (its best result at any time).
            filter_nan_and_inf: Skip trials whose score is NaN or infinite.
        """
        metric = metric or self._metric
        mode = mode or self._mode
        if isinstance(metric, (list, tuple)) or isinstance(mode, (list, tuple)):
            raise ValueError(
                f"get_best_result(): the experiment has several objectives {metric!r}, so no "
                "single best. Pass one, get_best_result(metric=..., mode=...), or use "
                "get_pareto_front()."
            )
        if not metric or not mode:
            raise ValueError(
                "get_best_result() needs a metric and a mode: pass get_best_result("
                "metric='mean_accuracy', mode='max'), or set TuneConfig(metric=..., mode=...)."
            )
        if mode not in ("min", "max"):
            raise ValueError(f"get_best_result(mode={mode!r}): mode must be 'min' or 'max'.")
        if scope not in _SCOPES:
            raise ValueError(
                f"get_best_result(scope={scope!r}): scope must be one of {', '.join(_SCOPES)}."
            )
        best, best_score = None, None
        for result in self._results:
            score = self._trial_score(result, metric, mode, scope)
            if score is None or (filter_nan_and_inf and not math.isfinite(score)):
                continue
            if math.isnan(score):
                continue
            if best_score is None or (score > best_score if mode == "max" else score < best_score):
                best, best_score = result, score
        if best is None:
            self._raise_no_best(metric)
        return best  # type: ignore[return-value]

    @staticmethod
    def _trial_score(result: Result, metric: str, mode: str, scope: str) -> float | None:
        if scope == "last":  # the last row that has the metric: mostly the last row
            last = result._final_row()
            if last is not None and metric in last and is_number(last[metric]):
                return float(last[metric])
        rows = result._all_rows() or [flatten(result.metrics)]
        if scope != "all":
            return _score(rows, metric, scope)
        values = [float(r[metric]) for r in rows if metric in r and is_number(r[metric])]
        finite = [v for v in values if math.isfinite(v)] or values
        if not finite:
            return None
        return max(finite) if mode == "max" else min(finite)

    def _raise_no_best(self, metric: str) -> None:
        rows = [row for r in self._results for row in (r._all_rows() or [flatten(r.metrics)])]
        if any(metric in row for row in rows):
            raise ValueError(
                f"get_best_result(metric={metric!r}): every trial's value is NaN or infinite. "
                "Pass filter_nan_and_inf=False to compare them anyway."
            )
        known = sorted(
            {k for row in rows for k in row if not is_auto_field(k) and k != "training_iteration"}
        )
        failed = [r for r in self._results if r.error is not None]
        why = ""
        if failed:
            first = last_line(str(failed[0].error)) or type(failed[0].error).__name__
            why = (
                f" {len(failed)} of {len(self._results)} trials failed (the first: {first}); "
                "their tracebacks are in result.error and each trial's error.txt."
            )
        raise ValueError(
            f"get_best_result(metric={metric!r}): no trial reported {metric!r}. "
            f"The trials reported: {', '.join(known) or 'nothing'}. Pass one of those as "
            f"metric=.{why}"
        )

    def get_pareto_front(
        self, metrics: Sequence[str] | None = None, modes: Sequence[str] | None = None
    ) -> list[Result]:
        """The trials no other trial beats on every objective (by their last results).

        Defaults to the experiment's metrics and modes when it had several
        (``OptunaSearch(metric=[...], mode=[...])``).
        """
        metrics = list(metrics or (self._metric if isinstance(self._metric, (list, tuple)) else []))
        modes = list(modes or (self._mode if isinstance(self._mode, (list, tuple)) else []))
        if not metrics or len(metrics) != len(modes) or any(m not in ("min", "max") for m in modes):
            raise ValueError(
                f"get_pareto_front(metrics={metrics!r}, modes={modes!r}): pass one mode ('min' or "
                "'max') per metric, e.g. get_pareto_front(['loss', 'latency'], ['min', 'min'])."
            )
        points = []
        for result in self._results:
            values = [result.metrics.get(m) for m in metrics]
            finite = [float(v) for v in values if is_finite_number(v)]
            if len(finite) == len(values):
                signs = [1.0 if mode == "min" else -1.0 for mode in modes]
                points.append((result, [s * v for s, v in zip(signs, finite, strict=True)]))

        def dominated(a: list[float]) -> bool:
            return any(
                all(x <= y for x, y in zip(b, a, strict=True))
                and any(x < y for x, y in zip(b, a, strict=True))
                for _, b in points
            )

        return [result for result, score in points if not dominated(score)]

    def plot(
        self, metric: str | None = None, path: str | None = None, title: str | None = None
    ) -> str:
        """Save the learning curves of ``metric`` as a PNG (needs matplotlib); return its path."""
        from dasktune.plot import plot_learning_curves

        metric = metric or (self._metric if isinstance(self._metric, str) else None)
        if not metric:
            raise ValueError("plot() needs a metric: results.plot('mean_accuracy').")
        return plot_learning_curves(self, metric, path=path, title=title)

    def get_dataframe(
        self, filter_metric: str | None = None, filter_mode: str | None = None
    ) -> pd.DataFrame:
        """One row per trial: its last result (or its best under ``filter_metric``) and config."""
        if (filter_metric is None) != (filter_mode is None):
            raise ValueError(
                "get_dataframe() needs both filter_metric and filter_mode, or neither: "
                "get_dataframe(filter_metric='loss', filter_mode='min')."
            )
        rows = []
        for result in self._results:
            row = self._select_row(result, filter_metric, filter_mode)
            if row is None:
                continue
            row = dict(row)
            row.update({f"config/{k}": v for k, v in flatten(result.config).items()})
            row["logdir"] = result.path
            rows.append(row)
        import pandas as pd

        return pd.DataFrame(rows)

    @staticmethod
    def _select_row(result: Result, metric: str | None, mode: str | None) -> dict[str, Any] | None:
        if metric is None:
            last = result._final_row()
            if last is not None:
                return last
        rows = result._all_rows() or ([flatten(result.metrics)] if result.metrics else [])
        if not rows:
            return None
        if metric is None:
            return rows[-1]
        scored = [
            r
            for r in rows
            if metric in r and is_number(r[metric]) and not math.isnan(float(r[metric]))
        ]
        if not scored:
            return None
        pick = max if mode == "max" else min
        return pick(scored, key=lambda r: float(r[metric]))


class _TrialRecord(Protocol):
    """What :func:`build_result_grid` reads of a trial's stored record."""

    @property
    def checkpoints(self) -> Sequence[tuple[str, Mapping[str, Any]]]: ...

    @property
    def exception(self) -> bytes | None: ...

    @property
    def last_row(self) -> dict[str, Any] | None: ...

    def read_rows(self) -> list[dict[str, Any]]: ...


def build_result_grid(
    trials: Iterable[Trial],
    records: Callable[[str], _TrialRecord | None],
    experiment_path: str,
    metric: str | None,
    mode: str | None,
) -> ResultGrid:
    """The ResultGrid of ``trials``; ``records(trial_id)`` gives each one's stored record
    (None for a trial that never got one: the experiment failed as it was created)."""
    results = []
    for trial in trials:
        record = records(trial.trial_id)
        if record is None:
            continue
        failed = trial.status == TrialStatus.ERROR
        results.append(
            Result(
                metrics=dict(trial.last_result),
                config=trial.config,
                path=trial.local_path,
                checkpoint=Checkpoint(record.checkpoints[-1][0]) if record.checkpoints else None,
                best_checkpoints=[(Checkpoint(p), dict(m)) for p, m in record.checkpoints],
                error=TrialError(trial.error_msg) if failed else None,
                _exception=record.exception if failed else None,
                status=str(trial.status),
                _load_rows=record.read_rows,
                _last_row=record.last_row,
            )
        )
    return ResultGrid(results, experiment_path, metric, mode)
