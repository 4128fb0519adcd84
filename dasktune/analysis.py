"""ExperimentAnalysis: Ray Tune's older view of an experiment's results (``tune.run`` returns one).

It reads an experiment directory: ``experiment_state.json`` for the trials,
each trial's ``result.json`` for its results.  :func:`dasktune.run` hands it
the ResultGrid of the run as well, which knows the metrics that each kept
checkpoint was reported with; an analysis loaded from a directory alone knows
the checkpoints only by their order (see :meth:`ExperimentAnalysis.get_best_checkpoint`).
The best-trial logic is :meth:`ResultGrid.get_best_result`'s.
"""

from __future__ import annotations

import json
import logging
import math
import numbers
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from dasktune._util import flatten
from dasktune.result import Result, ResultGrid, TrialError
from dasktune.storage.layout import (
    ERROR_FILE,
    JOURNAL_FILE,
    RESULT_FILE,
    STATE_FILE,
    checkpoint_index,
)
from dasktune.trainable.checkpoint import Checkpoint
from dasktune.trial import Trial, TrialStatus

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["AnalyzedTrial", "ExperimentAnalysis", "not_an_experiment"]

logger = logging.getLogger(__name__)

_TRAINING_ITERATION = "training_iteration"
_SCOPES = ("last", "avg", "last-5-avg", "last-10-avg", "all")


class _ByTrial(dict):
    """Values by trial id that also answer by the trial's directory (Ray 1.x's keys).

    >>> values = _ByTrial({"t_1": 1}, {"/exp/t_1": "t_1"})
    >>> values["t_1"], values["/exp/t_1"], values["/exp/t_1/"], "/exp/t_1" in values
    (1, 1, 1, True)
    """

    def __init__(self, values: dict[str, Any], trial_of_dir: dict[str, str]) -> None:
        super().__init__(values)
        self._trial_of_dir = trial_of_dir

    def _trial_id(self, key: Any) -> Any:
        if isinstance(key, (str, os.PathLike)):
            return self._trial_of_dir.get(os.path.normpath(os.fspath(key)), key)
        return key

    def __missing__(self, key: Any) -> Any:
        trial_id = self._trial_id(key)
        if trial_id is key or not dict.__contains__(self, trial_id):
            raise KeyError(key)
        return dict.__getitem__(self, trial_id)

    def __contains__(self, key: object) -> bool:
        return dict.__contains__(self, key) or dict.__contains__(self, self._trial_id(key))

    def get(self, key: Any, default: Any = None) -> Any:
        return self[key] if key in self else default


class AnalyzedTrial(Trial):
    """A trial as an analysis shows it, read back from the experiment's files (Ray's
    ``path``, ``logdir`` and ``checkpoint`` are :class:`~dasktune.trial.Trial`'s)."""


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _read_json_lines(path: str) -> list[dict[str, Any]]:
    """The file's records; a last line still being written (no newline yet) is left out."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip() and line.endswith("\n")]


def _checkpoints_on_disk(trial_dir: str) -> list[tuple[Checkpoint, dict[str, Any]]]:
    """The checkpoint directories a trial kept, oldest first; their metrics are not on disk."""
    if not os.path.isdir(trial_dir):
        return []
    found = []
    for name in os.listdir(trial_dir):
        path = os.path.join(trial_dir, name)
        if name.startswith("checkpoint_") and os.path.isdir(path):
            try:
                found.append((checkpoint_index(path), path))
            except ValueError:
                continue
    return [(Checkpoint(path), {}) for _, path in sorted(found)]


def _result_from_disk(entry: Mapping[str, Any], trial_dir: str) -> Result:
    """A trial's Result from its files, as :func:`dasktune.result.build_result_grid` makes it."""
    rows = [flatten(row) for row in _read_json_lines(os.path.join(trial_dir, RESULT_FILE))]
    error = None
    if entry.get("status") == str(TrialStatus.ERROR):
        error_path = os.path.join(trial_dir, ERROR_FILE)
        text = "unknown error"
        if os.path.exists(error_path):
            with open(error_path) as f:
                text = f.read()
        error = TrialError(text)
    checkpoints = _checkpoints_on_disk(trial_dir)
    return Result(
        metrics=dict(entry.get("last_result") or {}),
        config=dict(entry["config"]),
        path=trial_dir,
        checkpoint=checkpoints[-1][0] if checkpoints else None,
        best_checkpoints=checkpoints,
        error=error,
        status=entry.get("status", "TERMINATED"),
        _rows=rows,
    )


def not_an_experiment(who: str, path: str) -> str:
    """The error for a path that holds no experiment; it names the experiments below it."""
    found = []
    if os.path.isdir(path):
        found = sorted(
            name
            for name in os.listdir(path)
            if any(os.path.isfile(os.path.join(path, name, f)) for f in (JOURNAL_FILE, STATE_FILE))
        )
    if found:
        shown = ", ".join(found[:5]) + (f" and {len(found) - 5} more" if len(found) > 5 else "")
        hint = (
            f"It is a storage path holding {len(found)} experiment(s): {shown}. Pass one of "
            f"them, e.g. {os.path.join(path, found[-1])}."
        )
    elif not os.path.exists(path):
        hint = "It does not exist."
    else:
        hint = (
            f"It has no {JOURNAL_FILE} or {STATE_FILE}. Pass an experiment's directory, "
            "<storage_path>/<name>, as fit() prints it."
        )
    return f"{who}: {path} is not a dasktune experiment directory. {hint}"


def _state_from_journal(path: str) -> dict[str, Any]:
    """experiment_state.json's content rebuilt from the journal (written before the first state)."""
    from dasktune.storage.journal import load_journal

    journaled = load_journal(path)
    trials = []
    for trial in sorted(journaled.trials.values(), key=lambda t: t.index):
        rows = _read_json_lines(os.path.join(path, trial.dir, RESULT_FILE))
        trials.append(
            {
                "trial_id": trial.trial_id,
                "status": trial.status,
                "dir": trial.dir,
                "config": trial.config,
                "last_result": rows[-1] if rows else {},
                "num_failures": trial.failures,
            }
        )
    return {
        "name": journaled.name,
        "metric": journaled.metric,
        "mode": journaled.mode,
        "trials": trials,
    }


class ExperimentAnalysis:
    """The results of an experiment, the way Ray Tune's ``tune.run`` returns them.

    Args:
        experiment_checkpoint_path: The experiment's directory, or its
            ``experiment_state.json``.
        storage_filesystem: Accepted for Ray's sake; the directory must be on a
            filesystem this process can read.
        trials: Analyse only these trials (``AnalyzedTrial`` from another analysis).
        default_metric, default_mode: What ``best_*`` compare by; the
            experiment's own metric and mode when not given.

    Example:
        It reads an experiment that a run on a cluster wrote, so the doctests skip it:

        >>> analysis = ExperimentAnalysis("~/dasktune_results/my_exp")  # doctest: +SKIP
        >>> analysis.get_best_config(metric="loss", mode="min")  # doctest: +SKIP
    """

    def __init__(
        self,
        experiment_checkpoint_path: str | os.PathLike[str],
        *,
        storage_filesystem: Any = None,
        trials: list[AnalyzedTrial] | None = None,
        default_metric: str | None = None,
        default_mode: str | None = None,
        _result_grid: ResultGrid | None = None,
    ) -> None:
        if storage_filesystem is not None:
            from dasktune.tune_config import note_no_effect

            note_no_effect(
                "ExperimentAnalysis(storage_filesystem)",
                "the experiment is read from the local or mounted filesystem.",
            )
        path = os.path.abspath(os.path.expanduser(os.fspath(experiment_checkpoint_path)))
        state_file = path if path.endswith(".json") else os.path.join(path, STATE_FILE)
        if os.path.isfile(state_file):
            with open(state_file) as f:
                state = json.load(f)
        elif os.path.isfile(os.path.join(os.path.dirname(state_file), JOURNAL_FILE)):
            state = _state_from_journal(os.path.dirname(state_file))  # in its first seconds
        else:
            raise ValueError(
                not_an_experiment(
                    f"ExperimentAnalysis({os.fspath(experiment_checkpoint_path)!r})",
                    os.path.dirname(state_file),
                )
            )
        self._experiment_path = os.path.dirname(state_file)
        if default_mode is not None and default_mode not in ("min", "max"):
            raise ValueError(
                f"ExperimentAnalysis(default_mode={default_mode!r}): it must be 'min', 'max' or "
                "None."
            )
        state_metric, state_mode = state.get("metric"), state.get("mode")
        self.default_metric = default_metric or (
            state_metric if isinstance(state_metric, str) else None
        )
        self.default_mode = default_mode or (state_mode if isinstance(state_mode, str) else None)

        in_memory = {os.path.basename(r.path): r for r in _result_grid or []}
        wanted = {t.trial_id for t in trials} if trials is not None else None
        self.trials: list[AnalyzedTrial] = []
        results: list[Result] = []
        for entry in state.get("trials", []):
            if wanted is not None and entry["trial_id"] not in wanted:
                continue
            trial_dir = os.path.join(self._experiment_path, entry["dir"])
            result = in_memory.get(entry["dir"]) or _result_from_disk(entry, trial_dir)
            self.trials.append(
                AnalyzedTrial(
                    trial_id=entry["trial_id"],
                    config=result.config,
                    trial_name=entry.get("name") or entry["dir"],
                    local_path=trial_dir,
                    status=TrialStatus(entry.get("status", "TERMINATED")),
                    last_result=dict(result.metrics),
                    num_failures=entry.get("num_failures", 0),
                    error_msg=str(result.error) if result.error else None,
                    checkpoint_path=result.checkpoint.path if result.checkpoint else None,
                )
            )
            results.append(result)
        self._grid = ResultGrid(results, self._experiment_path)
        self._result_of = {t.trial_id: r for t, r in zip(self.trials, results, strict=True)}
        self._scored_checkpoints = _result_grid is not None

    # -- the experiment ------------------------------------------------------
    @property
    def experiment_path(self) -> str:
        """The experiment's directory."""
        return self._experiment_path

    @property
    def result_grid(self) -> ResultGrid:
        """The same trials as a :class:`~dasktune.result.ResultGrid` (for ``plot`` and friends)."""
        return self._grid

    def get_all_configs(self, prefix: bool = False) -> dict[str, dict[str, Any]]:
        """Every trial's config by trial id (or its directory, as Ray 1.x keyed it);
        ``prefix=True`` flattens it as ``config/<key>``."""
        return self._by_trial(
            {t.trial_id: flatten({"config": t.config}) if prefix else t.config for t in self.trials}
        )

    def _by_trial(self, values: dict[str, Any]) -> _ByTrial:
        return _ByTrial(values, {os.path.normpath(t.local_path): t.trial_id for t in self.trials})

    @property
    def results(self) -> dict[str, dict[str, Any]]:
        """Every trial's last result, by trial id."""
        return {t.trial_id: t.last_result for t in self.trials}

    @property
    def results_df(self) -> pd.DataFrame:
        """Every trial's last result (flattened), one row per trial, indexed by trial id."""
        import pandas as pd

        rows = [{**flatten(t.last_result), "trial_id": t.trial_id} for t in self.trials]
        return pd.DataFrame.from_records(rows, index="trial_id") if rows else pd.DataFrame()

    @property
    def trial_dataframes(self) -> dict[str, pd.DataFrame]:
        """Every trial's results, one row per report, by trial id (or by its directory, as
        Ray 1.x keyed them: ``trial_dataframes[analysis.get_best_logdir(...)]``)."""
        return self._by_trial(
            {t.trial_id: self._result_of[t.trial_id].metrics_dataframe for t in self.trials}
        )

    def fetch_trial_dataframes(self) -> dict[str, pd.DataFrame]:
        """:attr:`trial_dataframes`, read afresh (Ray 1.x's name)."""
        return self.trial_dataframes

    def dataframe(self, metric: str | None = None, mode: str | None = None) -> pd.DataFrame:
        """One row per trial: its result with the best ``metric`` ever (by ``mode``), or its
        last result without them; with its config as ``config/<key>`` and ``logdir``."""
        if mode is not None and mode not in ("min", "max"):
            raise ValueError(f"dataframe(mode={mode!r}): mode must be 'min', 'max' or None.")
        if mode and not metric:
            raise ValueError(
                f"dataframe(mode={mode!r}) needs a metric too: "
                "dataframe(metric='loss', mode='min')."
            )
        import pandas as pd

        rows = []
        for trial in self.trials:
            frame = self._result_of[trial.trial_id].metrics_dataframe
            if frame.empty:
                continue
            index = -1
            if mode and metric in frame and pd.api.types.is_numeric_dtype(frame[metric]):
                best = frame[metric].idxmax() if mode == "max" else frame[metric].idxmin()
                index = frame.index.get_loc(best) if not pd.isna(best) else -1
            row = frame.iloc[index].to_dict()
            row.update(self.get_all_configs(prefix=True)[trial.trial_id], logdir=trial.path)
            rows.append(row)
        return pd.DataFrame(rows)

    # -- the best trial ------------------------------------------------------
    def _metric_and_mode(self, metric: str | None, mode: str | None) -> tuple[str, str]:
        metric = metric or self.default_metric
        mode = mode or self.default_mode
        if not metric:
            raise ValueError(
                "No metric was passed and the analysis has no default metric. Pass one, e.g. "
                "get_best_trial(metric='loss', mode='min'), or tune.run(..., metric='loss')."
            )
        if mode not in ("min", "max"):
            raise ValueError(
                f"The mode is {mode!r}, but it must be 'min' or 'max'. Pass e.g. "
                "get_best_trial(metric='loss', mode='min'), or tune.run(..., mode='min')."
            )
        return metric, mode

    def get_best_trial(
        self,
        metric: str | None = None,
        mode: str | None = None,
        scope: str = "last",
        filter_nan_and_inf: bool = True,
    ) -> AnalyzedTrial | None:
        """The trial with the best ``metric``; None (with a warning) if no trial reported it.

        Args:
            metric, mode: Default to the analysis's ``default_metric`` and ``default_mode``.
            scope: ``"last"`` (each trial's last result), ``"avg"``, ``"last-5-avg"``,
                ``"last-10-avg"`` (means of its results), or ``"all"`` (its best result).
            filter_nan_and_inf: Never pick a trial whose score is NaN or infinite.
        """
        if len(self.trials) == 1:  # as in Ray: the only trial is the best
            return self.trials[0]
        metric, mode = self._metric_and_mode(metric, mode)
        if scope not in _SCOPES:
            raise ValueError(
                f"get_best_trial(scope={scope!r}): scope must be one of {', '.join(_SCOPES)}."
            )
        try:
            best = self._grid.get_best_result(metric, mode, scope, filter_nan_and_inf)
        except ValueError as exc:  # no trial reported a usable value
            logger.warning("No best trial by %r: %s", metric, exc)
            return None
        return next(t for t in self.trials if self._result_of[t.trial_id] is best)

    def get_best_config(
        self, metric: str | None = None, mode: str | None = None, scope: str = "last"
    ) -> dict[str, Any] | None:
        """The config of :meth:`get_best_trial`, or None."""
        trial = self.get_best_trial(metric, mode, scope)
        return trial.config if trial else None

    def get_best_logdir(
        self, metric: str | None = None, mode: str | None = None, scope: str = "last"
    ) -> str | None:
        """The directory of :meth:`get_best_trial`, or None."""
        trial = self.get_best_trial(metric, mode, scope)
        return trial.path if trial else None

    def _default(self, what: str) -> AnalyzedTrial | None:
        if not self.default_metric or not self.default_mode:
            raise ValueError(
                f"To read `{what}`, pass metric and mode to tune.run(..., metric='loss', "
                "mode='min') (or to ExperimentAnalysis(default_metric=..., default_mode=...)); "
                "or call get_best_trial(metric, mode) and friends with them."
            )
        return self.get_best_trial(self.default_metric, self.default_mode)

    @property
    def best_trial(self) -> AnalyzedTrial | None:
        """The best trial by the default metric and mode, on each trial's last result."""
        return self._default("best_trial")

    @property
    def best_config(self) -> dict[str, Any] | None:
        trial = self._default("best_config")
        return trial.config if trial else None

    @property
    def best_logdir(self) -> str | None:
        trial = self._default("best_logdir")
        return trial.path if trial else None

    @property
    def best_result(self) -> dict[str, Any] | None:
        """The best trial's last result."""
        trial = self._default("best_result")
        return trial.last_result if trial else None

    @property
    def best_result_df(self) -> pd.DataFrame:
        """The best trial's last result as a one-row DataFrame indexed by trial id."""
        import pandas as pd

        trial = self._default("best_result_df")
        if trial is None:
            return pd.DataFrame()
        return pd.DataFrame.from_records(
            [{**flatten(trial.last_result), "trial_id": trial.trial_id}], index="trial_id"
        )

    @property
    def best_dataframe(self) -> pd.DataFrame:
        """Every result of the best trial."""
        import pandas as pd

        trial = self._default("best_dataframe")
        return self.trial_dataframes[trial.trial_id] if trial else pd.DataFrame()

    @property
    def best_checkpoint(self) -> Checkpoint | None:
        """The best trial's best checkpoint, both by the default metric and mode."""
        trial = self._default("best_checkpoint")
        if trial is None:
            return None
        return self.get_best_checkpoint(trial, self.default_metric, self.default_mode)

    # -- checkpoints -----------------------------------------------------------
    def _trial(self, trial: Trial | str) -> AnalyzedTrial:
        if isinstance(trial, Trial):
            key = trial.trial_id
            found = [t for t in self.trials if t.trial_id == key]
        else:
            key = os.path.abspath(os.fspath(trial))
            found = [t for t in self.trials if os.path.abspath(t.path) == key]
        if not found:
            raise ValueError(
                f"{trial!r} is not a trial of this experiment ({self.experiment_path}). Pass one "
                "of analysis.trials, or a trial's directory."
            )
        return found[0]

    def _checkpoints(self, trial: Trial | str, metric: str) -> list[tuple[Checkpoint, Any]]:
        """The trial's kept checkpoints (oldest first) with their value of ``metric``."""
        kept = self._result_of[self._trial(trial).trial_id].best_checkpoints
        if not self._scored_checkpoints:
            if metric != _TRAINING_ITERATION:
                raise ValueError(
                    f"The metrics that checkpoints were reported with are not on disk, so an "
                    f"analysis loaded from {self.experiment_path} cannot rank them by "
                    f"{metric!r}. Use metric='training_iteration' (their order), or the "
                    "analysis that tune.run returned."
                )
            return [(checkpoint, position) for position, (checkpoint, _) in enumerate(kept)]
        return [(checkpoint, flatten(metrics).get(metric)) for checkpoint, metrics in kept]

    def get_trial_checkpoints_paths(
        self, trial: Trial | str, metric: str | None = None
    ) -> list[tuple[str, Any]]:
        """``(path, value of metric)`` for each checkpoint the trial kept, oldest first.

        ``metric`` defaults to ``training_iteration``.
        """
        metric = metric or _TRAINING_ITERATION
        return [(checkpoint.path, value) for checkpoint, value in self._checkpoints(trial, metric)]

    def get_best_checkpoint(
        self, trial: Trial | str, metric: str | None = None, mode: str | None = None
    ) -> Checkpoint | None:
        """The trial's kept checkpoint with the best ``metric``; None if it has none.

        Args:
            trial: One of :attr:`trials`, or a trial's directory.
            metric: Defaults to ``default_metric``, else ``training_iteration``
                (the newest checkpoint).
            mode: Defaults to ``default_mode``.

        Checkpoints whose value is NaN or missing are skipped. An analysis loaded
        from a directory alone ranks checkpoints only by ``training_iteration``.
        """
        metric = metric or self.default_metric or _TRAINING_ITERATION
        mode = mode or self.default_mode or ("max" if metric == _TRAINING_ITERATION else None)
        if mode not in ("min", "max"):
            raise ValueError(
                f"get_best_checkpoint(mode={mode!r}): pass mode='min' or 'max' (or set a "
                "default mode with tune.run(..., mode=...))."
            )
        scored = [
            (c, float(v))
            for c, v in self._checkpoints(trial, metric)
            if _is_number(v) and not math.isnan(v)
        ]
        if not scored:
            logger.warning(
                "Trial %s kept no checkpoint with a number for %r.", self._trial(trial), metric
            )
            return None
        sign = 1.0 if mode == "max" else -1.0
        # The newest of equals, as the checkpoint policy keeps the newest.
        return max(reversed(scored), key=lambda pair: sign * pair[1])[0]

    def get_last_checkpoint(
        self, trial: Trial | str | None = None, metric: str = _TRAINING_ITERATION, mode: str = "max"
    ) -> Checkpoint | None:
        """The newest checkpoint of ``trial``; default: the best trial (``metric``, ``mode``)."""
        chosen = trial if trial is not None else self.get_best_trial(metric, mode)
        if chosen is None:
            return None
        kept = self._result_of[self._trial(chosen).trial_id].best_checkpoints
        return kept[-1][0] if kept else None

    def __repr__(self) -> str:
        return f"ExperimentAnalysis<{len(self.trials)} trials, path={self.experiment_path!r}>"


def Analysis(  # noqa: N802 - Ray 1.x's class name, kept for the scripts that call it
    experiment_dir: str | os.PathLike[str],
    default_metric: str | None = None,
    default_mode: str | None = None,
) -> ExperimentAnalysis:
    """Ray Tune 1.x's ``Analysis(experiment_dir, default_metric, default_mode)``: an
    :class:`ExperimentAnalysis` of the finished experiment in ``experiment_dir``."""
    return ExperimentAnalysis(
        experiment_dir, default_metric=default_metric, default_mode=default_mode
    )
