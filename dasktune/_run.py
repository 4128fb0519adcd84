"""``tune.run``: Ray Tune's older entry point, mapped onto :class:`~dasktune.Tuner`.

Ray Tune 2.x keeps ``tune.run`` for older scripts and recommends
``Tuner(...).fit()`` for new code.  dasktune's :func:`run` takes the same
arguments, builds the Tuner's configuration objects from them, runs
``Tuner.fit()`` and returns an :class:`~dasktune.analysis.ExperimentAnalysis`.
"""

from __future__ import annotations

import copy
import datetime
import inspect
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from dasktune._names import SCHEDULERS, SEARCHERS, create_by_name
from dasktune.analysis import ExperimentAnalysis
from dasktune.callback import Callback
from dasktune.execution.resume import ResumeOptions
from dasktune.trainable.util import PlacementGroupFactory, _Parameterized, with_resources
from dasktune.trial import TrialStatus
from dasktune.tune_config import (
    CheckpointConfig,
    FailureConfig,
    RunConfig,
    TuneConfig,
    note_no_effect,
)

__all__ = ["Experiment", "TuneError", "run", "run_experiments"]

logger = logging.getLogger(__name__)


class TuneError(Exception):
    """Trials failed (``tune.run(raise_on_failed_trial=True)``), as Ray Tune's TuneError says.

    ``failed_trials`` are the trials that ended in ERROR; ``analysis`` is the
    experiment's :class:`ExperimentAnalysis`, for the results of the others.
    """

    def __init__(
        self,
        message: str,
        failed_trials: Sequence[Any] = (),
        analysis: ExperimentAnalysis | None = None,
    ) -> None:
        super().__init__(message)
        self.failed_trials = list(failed_trials)
        self.analysis = analysis


#: ``tune.run``'s arguments that describe one experiment (Ray's ``tune.Experiment``'s);
#: the others (searcher, scheduler, verbosity, callbacks...) are the run's.
_EXPERIMENT_FIELDS = (
    "stop",
    "time_budget_s",
    "config",
    "resources_per_trial",
    "num_samples",
    "storage_path",
    "storage_filesystem",
    "local_dir",
    "sync_config",
    "checkpoint_config",
    "trial_name_creator",
    "trial_dirname_creator",
    "log_to_file",
    "export_formats",
    "max_failures",
    "restore",
    "keep_checkpoints_num",
    "checkpoint_score_attr",
    "checkpoint_freq",
    "checkpoint_at_end",
    "loggers",
    "upload_dir",
    "sync_to_cloud",
    "sync_to_driver",
    "sync_on_checkpoint",
)


class Experiment:
    """One experiment as Ray Tune 1.x describes it, for :func:`run` and
    :func:`run_experiments`: a name, the trainable (``run``), and ``tune.run``'s
    arguments that belong to one experiment (``config``, ``stop``, ``num_samples``,
    ``resources_per_trial``, ``storage_path`` or ``local_dir``, the checkpoint
    settings...), with ``tune.run``'s meaning.

    Example::

        tune.run_experiments(
            [Experiment("mnist", train, config={"lr": tune.loguniform(1e-4, 1e-1)}, num_samples=4)]
        )
    """

    def __init__(self, name: str, run: Any, **spec: Any) -> None:
        if not isinstance(name, str) or not name:
            raise TypeError(
                f"tune.Experiment(name={name!r}): the name must be a non-empty string, the "
                "experiment's directory under storage_path."
            )
        unknown = sorted(set(spec) - set(_EXPERIMENT_FIELDS))
        if unknown:
            raise TypeError(
                f"tune.Experiment({name!r}, {unknown[0]}=...): dasktune's experiments take "
                f"{', '.join(_EXPERIMENT_FIELDS)}; give the others (searcher, scheduler, "
                "callbacks, verbose) to tune.run or tune.run_experiments."
            )
        _check_trainable(run)
        self.name = name
        self.run = run
        self.spec = spec

    @classmethod
    def from_json(cls, name: str, spec: Mapping[str, Any]) -> Experiment:
        """The experiment a ``run_experiments`` dict describes: ``{"run": train, ...}``."""
        if not isinstance(spec, Mapping) or "run" not in spec:
            raise TypeError(
                f"tune.run_experiments({{{name!r}: {spec!r}}}): each experiment must be a dict "
                "with the trainable under 'run', such as {'run': train, 'config': {...}}, "
                "or a tune.Experiment."
            )
        fields = dict(spec)
        return cls(name, fields.pop("run"), **fields)

    def __repr__(self) -> str:
        return f"Experiment({self.name!r}, {getattr(self.run, '__name__', self.run)!r})"


def _by_name(value: Any, table: Mapping[str, tuple[str, str]], argument: str) -> Any:
    """A scheduler or searcher given by Ray's name, made with its defaults."""
    if not isinstance(value, str):
        return value
    return create_by_name(value, table, "tune.run", argument)


def _checkpoint_config(
    config: CheckpointConfig | None,
    keep_checkpoints_num: int | None,
    checkpoint_score_attr: str | None,
    checkpoint_freq: int,
    checkpoint_at_end: bool,
) -> CheckpointConfig:
    """``checkpoint_config`` with Ray's older checkpoint arguments applied over it."""
    config = copy.copy(config) if config is not None else CheckpointConfig()
    if not isinstance(config, CheckpointConfig):
        raise TypeError(
            f"The value of `tune.run(checkpoint_config=...)` is {config!r}, but it must be a "
            "tune.CheckpointConfig(...) or None."
        )
    if keep_checkpoints_num is not None:
        config.num_to_keep = keep_checkpoints_num
    if checkpoint_score_attr is not None:
        # Ray's older spelling: "min-loss" keeps the lowest loss.
        descending = checkpoint_score_attr.startswith("min-")
        config.checkpoint_score_attribute = (
            checkpoint_score_attr[4:] if descending else checkpoint_score_attr
        )
        config.checkpoint_score_order = "min" if descending else "max"
    if checkpoint_freq:
        config.checkpoint_frequency = checkpoint_freq
    if checkpoint_at_end:
        config.checkpoint_at_end = True
    config.__post_init__()  # the same checks as CheckpointConfig(...) itself
    return config


def _check_trainable(run_or_experiment: Any) -> None:
    if isinstance(run_or_experiment, str):
        raise TypeError(
            f"tune.run({run_or_experiment!r}): dasktune has no registry of trainables by name "
            "(tune.register_trainable). Pass the function or Trainable class itself."
        )
    bound = isinstance(run_or_experiment, _Parameterized)  # tune.with_parameters(train, ...)
    if isinstance(run_or_experiment, (list, tuple)) or not (bound or callable(run_or_experiment)):
        raise TypeError(
            f"tune.run(run_or_experiment={run_or_experiment!r}): pass one trainable, a function "
            "that calls tune.report or a tune.Trainable subclass, or a tune.Experiment; run "
            "several experiments with tune.run_experiments."
        )


def _resume_options(resume: Any, resume_config: Any) -> tuple[str, ResumeOptions] | None:
    """Ray's ``resume`` spellings: None (afresh), "AUTO" (if there is something to resume),
    or a resume that must happen (True, "LOCAL"...); "+ERRORED" resumes failed trials,
    "+RESTART_ERRORED" starts them again, "ERRORED_ONLY" runs only those."""
    if resume_config is not None:
        options = ResumeOptions(
            resume_unfinished=getattr(resume_config, "resume_unfinished", True),
            resume_errored=getattr(resume_config, "resume_errored", False),
            restart_errored=getattr(resume_config, "restart_errored", False),
        )
        return ("auto" if resume in (None, "AUTO") else "must"), options
    if resume in (None, False):
        return None
    text = "LOCAL" if resume is True else str(resume).upper()
    head, _, tail = text.partition("+")
    if head not in ("AUTO", "LOCAL", "REMOTE", "PROMPT", "ERRORED_ONLY", "MUST") or tail not in (
        "",
        "ERRORED",
        "RESTART_ERRORED",
        "ERRORED_ONLY",
    ):
        raise ValueError(
            f"The value of `tune.run(resume=...)` is {resume!r}, but it must be None, True, "
            "'AUTO', 'LOCAL', or one of them with '+ERRORED', '+RESTART_ERRORED' or "
            "'+ERRORED_ONLY', as in Ray Tune."
        )
    errored_only = "ERRORED_ONLY" in (head, tail)
    options = ResumeOptions(
        resume_unfinished=not errored_only,
        resume_errored=tail == "ERRORED" or errored_only,
        restart_errored=tail == "RESTART_ERRORED",
    )
    return ("auto" if head in ("AUTO", "PROMPT") else "must"), options


def run(
    run_or_experiment: Callable[..., Any] | type | Experiment,
    *,
    name: str | None = None,
    metric: str | None = None,
    mode: str | None = None,
    stop: Any = None,
    time_budget_s: float | datetime.timedelta | None = None,
    config: dict[str, Any] | None = None,
    resources_per_trial: Mapping[str, float] | None = None,
    num_samples: int = 1,
    storage_path: str | os.PathLike[str] | None = None,
    storage_filesystem: Any = None,
    search_alg: Any = None,
    scheduler: Any = None,
    checkpoint_config: CheckpointConfig | None = None,
    verbose: int | None = None,
    progress_reporter: Any = None,
    log_to_file: bool | str | tuple[str, str] = False,
    trial_name_creator: Callable[[Any], str] | None = None,
    trial_dirname_creator: Callable[[Any], str] | None = None,
    sync_config: Any = None,
    export_formats: Sequence[str] | None = None,
    max_failures: int = 0,
    fail_fast: bool | str = False,
    restore: str | None = None,
    resume: bool | str | None = None,
    resume_config: Any = None,
    reuse_actors: bool | None = None,
    raise_on_failed_trial: bool = True,
    callbacks: Sequence[Callback] | None = None,
    max_concurrent_trials: int | None = None,
    keep_checkpoints_num: int | None = None,
    checkpoint_score_attr: str | None = None,
    checkpoint_freq: int = 0,
    checkpoint_at_end: bool = False,
    chdir_to_trial_dir: bool | None = None,
    local_dir: str | os.PathLike[str] | None = None,
    server_port: int | None = None,
    trial_executor: Any = None,
    client: Any = None,
    # Ray 1.x's, gone from Ray 2: accepted, as Ray 1.x scripts pass them.
    loggers: Any = None,
    queue_trials: bool | None = None,
    ray_auto_init: bool | None = None,
    global_checkpoint_period: Any = None,
    with_server: bool | None = None,
    upload_dir: str | None = None,
    sync_to_cloud: Any = None,
    sync_to_driver: Any = None,
    sync_on_checkpoint: bool | None = None,
    run_errored_only: bool | None = None,
) -> ExperimentAnalysis:
    """Run an experiment the way Ray Tune's ``tune.run`` does; return its analysis.

    Ray Tune 2.x keeps ``tune.run`` for older scripts and recommends
    ``tune.Tuner(trainable, param_space=..., tune_config=..., run_config=...).fit()``
    for new code. dasktune does the same: this function builds a
    :class:`~dasktune.Tuner` from its arguments and prints nothing about it.

    The arguments are Ray Tune's; where they go:

    * ``config`` is the Tuner's ``param_space``; ``resources_per_trial`` (a dict
      such as ``{"cpu": 1, "gpu": 1}``) is :func:`~dasktune.with_resources`.
    * ``metric, mode, num_samples, search_alg, scheduler, time_budget_s,
      max_concurrent_trials, reuse_actors, trial_name_creator,
      trial_dirname_creator, chdir_to_trial_dir`` go to :class:`~dasktune.TuneConfig`.
      ``search_alg`` and ``scheduler`` may also be Ray's names: ``"random"``,
      ``"hyperopt"``, ``"optuna"``; ``"fifo"``, ``"async_hyperband"``,
      ``"hyperband"``, ``"median_stopping_rule"``, ``"pbt"``.
    * ``name, storage_path`` (or Ray's older ``local_dir``), ``stop, verbose,
      callbacks, log_to_file`` and the ignored ``storage_filesystem, sync_config,
      progress_reporter`` go to :class:`~dasktune.RunConfig`.
    * ``checkpoint_config`` with Ray's older ``keep_checkpoints_num``,
      ``checkpoint_score_attr`` (``"min-loss"`` keeps the lowest loss),
      ``checkpoint_freq`` and ``checkpoint_at_end`` applied over it.
    * ``max_failures, fail_fast`` go to :class:`~dasktune.FailureConfig`.
    * ``raise_on_failed_trial`` (True by default, as in Ray): when trials end in
      ERROR, raise :class:`TuneError` naming them, after the others finished.
    * ``resume``, as in Ray Tune: None or False start afresh; ``"AUTO"`` continues
      the experiment of the same ``name`` if there is one (``Tuner.restore``) and
      starts afresh otherwise; True or ``"LOCAL"`` must continue it; ``"+ERRORED"``
      also resumes failed trials, ``"+RESTART_ERRORED"`` starts them again,
      ``"ERRORED_ONLY"`` runs only those. ``restore`` (starting from a checkpoint
      path) is not supported and raises a ValueError.
    * Accepted, with no effect (logged once): ``export_formats``, ``server_port``,
      ``trial_executor``, and Ray 1.x's ``loggers`` (dasktune writes the CSV, JSON and
      TensorBoard files anyway; a logger of your own is a ``LoggerCallback`` in
      ``callbacks``), ``queue_trials``, ``ray_auto_init``, ``global_checkpoint_period``,
      ``with_server``, ``upload_dir``, ``sync_to_cloud``, ``sync_to_driver`` and
      ``sync_on_checkpoint``.  Ray 1.x's ``run_errored_only=True`` is
      ``resume="ERRORED_ONLY"``.
    * ``client``: dasktune's addition, the ``distributed.Client`` to run on (as
      ``Tuner(client=...)``).
    * ``run_or_experiment`` may be a :class:`Experiment`, which brings its name and
      its own settings (``config``, ``stop``...); giving one of those here too is
      an error.
    """
    if isinstance(run_or_experiment, Experiment):
        return _run_experiment(run_or_experiment, dict(locals()))
    _check_trainable(run_or_experiment)
    if config is not None and not isinstance(config, Mapping):
        raise TypeError(
            f"The value of `tune.run(config=...)` is {config!r}, but it must be a dict, the "
            "search space, such as {'lr': tune.loguniform(1e-4, 1e-1)}."
        )
    if restore is not None:
        raise ValueError(
            f"tune.run(restore={restore!r}): dasktune cannot start a trial from a checkpoint "
            "path yet. Load the checkpoint in your trainable instead (a path in config)."
        )
    for argument, value in (
        ("export_formats", export_formats),
        ("server_port", server_port),
        ("trial_executor", trial_executor),
    ):
        if value:
            note_no_effect(
                f"tune.run({argument})", "dasktune has no such facility.", logging.WARNING
            )
    if loggers:
        note_no_effect(
            "tune.run(loggers)",
            "dasktune writes each trial's CSV, JSON and TensorBoard files anyway; a logger of "
            "your own is a dasktune.logger.LoggerCallback in callbacks=.",
            logging.WARNING,
        )
    for argument, value in (
        ("queue_trials", queue_trials),
        ("ray_auto_init", ray_auto_init),
        ("global_checkpoint_period", global_checkpoint_period),
        ("with_server", with_server),
        ("upload_dir", upload_dir),
        ("sync_to_cloud", sync_to_cloud),
        ("sync_to_driver", sync_to_driver),
        ("sync_on_checkpoint", sync_on_checkpoint),
    ):
        if value is not None:
            note_no_effect(
                f"tune.run({argument})",
                "Ray 1.x's setting, gone from Ray 2; results and checkpoints go to storage_path.",
            )
    if run_errored_only:
        resume = resume or "ERRORED_ONLY"
    trainable = run_or_experiment
    if resources_per_trial is not None:
        if not isinstance(resources_per_trial, (Mapping, PlacementGroupFactory)):
            raise TypeError(
                f"The value of `tune.run(resources_per_trial=...)` is {resources_per_trial!r}, "
                "but dasktune takes a dict such as {'cpu': 1, 'gpu': 1}, or a "
                "tune.PlacementGroupFactory."
            )
        trainable = with_resources(trainable, resources_per_trial)

    tune_config = TuneConfig(
        metric=metric,
        mode=mode,
        num_samples=num_samples,
        search_alg=_by_name(search_alg, SEARCHERS, "search_alg"),
        scheduler=_by_name(scheduler, SCHEDULERS, "scheduler"),
        max_concurrent_trials=max_concurrent_trials,
        time_budget_s=time_budget_s,
        reuse_actors=reuse_actors,
        trial_name_creator=trial_name_creator,
        trial_dirname_creator=trial_dirname_creator,
        chdir_to_trial_dir=chdir_to_trial_dir,
    )
    run_config = RunConfig(
        name=name,
        storage_path=storage_path,
        local_dir=local_dir,
        stop=stop,
        checkpoint_config=_checkpoint_config(
            checkpoint_config,
            keep_checkpoints_num,
            checkpoint_score_attr,
            checkpoint_freq,
            checkpoint_at_end,
        ),
        failure_config=FailureConfig(max_failures=max_failures, fail_fast=fail_fast),
        callbacks=list(callbacks) if callbacks is not None else None,
        verbose=verbose,
        log_to_file=log_to_file,
        storage_filesystem=storage_filesystem,
        sync_config=sync_config,
        progress_reporter=progress_reporter,
    )
    tuner = _tuner_for(
        trainable, config, tune_config, run_config, client, _resume_options(resume, resume_config)
    )
    grid = tuner.fit()
    # Without metric and mode here, the analysis takes the experiment's (a scheduler's, say).
    analysis = ExperimentAnalysis(
        grid.experiment_path, default_metric=metric, default_mode=mode, _result_grid=grid
    )
    failed = [t for t in analysis.trials if t.status == TrialStatus.ERROR]
    if failed and raise_on_failed_trial:
        lines = [f"  {t.trial_name} ({t.trial_id}): {_error_line(t.error_msg)}" for t in failed]
        raise TuneError(
            f"Trials did not complete: {len(failed)} of {len(analysis.trials)} failed. Their "
            f"errors are in error.txt in each trial's directory under {analysis.experiment_path}; "
            "pass raise_on_failed_trial=False to get the analysis instead.\n" + "\n".join(lines),
            failed,
            analysis,
        )
    return analysis


def _run_experiment(experiment: Experiment, arguments: dict[str, Any]) -> ExperimentAnalysis:
    """``tune.run(Experiment(...), ...)``: the experiment's own settings, the run's others."""
    parameters = inspect.signature(run).parameters
    kwargs: dict[str, Any] = {}
    for argument, value in arguments.items():
        if argument == "run_or_experiment":
            continue
        if argument in _EXPERIMENT_FIELDS or argument == "name":
            if not _is_default(value, parameters[argument].default):
                raise ValueError(
                    f"tune.run({experiment!r}, {argument}=...): {argument} belongs to the "
                    f"experiment; give it to tune.Experiment({experiment.name!r}, ..., "
                    f"{argument}=...) instead."
                )
            continue
        kwargs[argument] = value
    return run(experiment.run, name=experiment.name, **experiment.spec, **kwargs)


def _is_default(value: Any, default: Any) -> bool:
    if value is default:
        return True
    try:
        return type(value) is type(default) and bool(value == default)
    except (TypeError, ValueError):  # an array compares element by element
        return False


def run_experiments(
    experiments: Experiment | Sequence[Experiment] | Mapping[str, Any],
    scheduler: Any = None,
    server_port: int | None = None,
    verbose: int | None = 2,
    progress_reporter: Any = None,
    resume: bool | str | None = False,
    reuse_actors: bool | None = None,
    trial_executor: Any = None,
    raise_on_failed_trial: bool = True,
    concurrent: bool = True,
    callbacks: Sequence[Callback] | None = None,
    client: Any = None,
) -> list[Any]:
    """Run several experiments, as Ray Tune 1.x's ``tune.run_experiments`` does, and
    return the trials of all of them, in order.

    ``experiments``: a :class:`Experiment`, a list of them, or a dict of experiment
    names to ``{"run": trainable, "config": ..., "stop": ..., ...}`` (or to
    Experiments).  The other arguments are :func:`run`'s, for every experiment.
    dasktune runs the experiments one after another on the same cluster, each
    filling it (Ray interleaves their trials, ``concurrent``); each gets its own
    copy of ``scheduler``, so that one's rungs do not decide for another's trials.
    """
    chosen = _experiments(experiments)
    trials: list[Any] = []
    for experiment in chosen:
        analysis = run(
            experiment,
            scheduler=copy.deepcopy(scheduler) if len(chosen) > 1 else scheduler,
            server_port=server_port,
            verbose=verbose,
            progress_reporter=progress_reporter,
            resume=resume,
            reuse_actors=reuse_actors,
            trial_executor=trial_executor,
            raise_on_failed_trial=raise_on_failed_trial,
            callbacks=callbacks,
            client=client,
        )
        trials.extend(analysis.trials)
    return trials


def _experiments(experiments: Any) -> list[Experiment]:
    if isinstance(experiments, Experiment):
        return [experiments]
    if isinstance(experiments, Mapping):
        return [
            spec if isinstance(spec, Experiment) else Experiment.from_json(name, spec)
            for name, spec in experiments.items()
        ]
    if isinstance(experiments, (list, tuple)) and all(
        isinstance(e, Experiment) for e in experiments
    ):
        return list(experiments)
    raise TypeError(
        f"tune.run_experiments(experiments={experiments!r}): pass a tune.Experiment, a list "
        "of them, or a dict of names to {'run': trainable, 'config': {...}, ...}."
    )


def _tuner_for(
    trainable: Any,
    config: Any,
    tune_config: TuneConfig,
    run_config: RunConfig,
    client: Any,
    resume: tuple[str, ResumeOptions] | None,
) -> Any:
    """A new Tuner, or one that continues the named experiment as ``resume`` asks."""
    from dasktune.tuner import Tuner

    path = _named_path(run_config)
    if resume is not None:
        mode, options = resume
        if path is not None and Tuner.can_restore(path):
            return Tuner.restore(
                path,
                trainable,
                resume_unfinished=options.resume_unfinished,
                resume_errored=options.resume_errored,
                restart_errored=options.restart_errored,
                client=client,
            )
        if mode == "must":
            raise ValueError(
                f"tune.run(resume=...): there is no experiment to resume at {path or '(no name)'}"
                ". Give tune.run the name= and storage_path= of the experiment to continue, or "
                "resume='AUTO' to start afresh when there is none."
            )
    return Tuner(
        trainable,
        param_space=dict(config or {}),
        tune_config=tune_config,
        run_config=run_config,
        client=client,
    )


def _named_path(run_config: RunConfig) -> str | None:
    """The experiment's directory when it is named (where "AUTO" would look to resume)."""
    if not run_config.name:
        return None
    from dasktune import config

    root = run_config.storage_path or config.get("storage-path")
    return os.path.join(os.path.abspath(os.path.expanduser(root)), run_config.name)


def _error_line(text: str | None) -> str:
    """The last non-empty line of a traceback: the exception and its message."""
    lines = [line for line in (text or "").splitlines() if line.strip()]
    return lines[-1].strip() if lines else "unknown error"
