"""Tuner and its configuration objects: thin wiring of search, schedulers, execution, storage."""

from __future__ import annotations

import datetime
import inspect
import logging
import os
import sys
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import cloudpickle

from dasktune import config
from dasktune._validation import is_finite_number, validate_mode
from dasktune.callback import Callback
from dasktune.execution.console import ConsoleReporter
from dasktune.execution.controller import Controller, ControllerSettings
from dasktune.execution.runner import CheckpointPolicy, ExperimentRunner, ExperimentSpec
from dasktune.result import ResultGrid
from dasktune.schedulers import FIFOScheduler
from dasktune.schedulers.trial_scheduler import TrialScheduler
from dasktune.search import BasicVariantGenerator, ConcurrencyLimiter
from dasktune.search.searcher import Searcher
from dasktune.stopper import as_stopper
from dasktune.storage.experiment import check_writable
from dasktune.trainable._runner import accepts_params
from dasktune.trainable.trainable import Trainable
from dasktune.trainable.util import resources_of, unwrap

logger = logging.getLogger(__name__)


@dataclass
class TuneConfig:
    """How to search: the metric, how many trials, which searcher and scheduler."""

    metric: str | None = None
    mode: str | None = None
    num_samples: int = 1
    scheduler: TrialScheduler | None = None
    search_alg: Searcher | None = None
    max_concurrent_trials: int | None = None
    time_budget_s: float | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        validate_mode(self.mode, "TuneConfig(mode=...)")
        if not isinstance(self.num_samples, int) or self.num_samples == 0 or self.num_samples < -1:
            raise ValueError(
                f"TuneConfig(num_samples={self.num_samples!r}): num_samples must be a positive "
                "integer (or -1 for no limit, with time_budget_s or a stopper to end the run)."
            )
        if self.max_concurrent_trials is not None and (
            not isinstance(self.max_concurrent_trials, int) or self.max_concurrent_trials < 0
        ):
            raise ValueError(
                f"TuneConfig(max_concurrent_trials={self.max_concurrent_trials!r}): it must be an "
                "integer >= 1, or None (or 0) to run as many trials at once as the cluster fits."
            )
        if isinstance(self.time_budget_s, datetime.timedelta):
            self.time_budget_s = self.time_budget_s.total_seconds()
        if self.time_budget_s is not None and (not is_finite_number(self.time_budget_s)
                                               or self.time_budget_s <= 0):
            raise ValueError(
                f"TuneConfig(time_budget_s={self.time_budget_s!r}): the budget must be a positive "
                "number of seconds (or a datetime.timedelta), or None for no budget."
            )


@dataclass
class CheckpointConfig:
    """Which checkpoints to keep, and how often class trainables save one."""

    num_to_keep: int | None = None
    checkpoint_score_attribute: str | None = None
    checkpoint_score_order: str = "max"
    checkpoint_frequency: int = 0
    checkpoint_at_end: bool | None = None

    def __post_init__(self) -> None:
        if self.num_to_keep is not None and (not isinstance(self.num_to_keep, int) or self.num_to_keep < 1):
            raise ValueError(
                f"CheckpointConfig(num_to_keep={self.num_to_keep!r}): keep at least 1 checkpoint, "
                "or pass None to keep them all."
            )
        validate_mode(self.checkpoint_score_order, "CheckpointConfig(checkpoint_score_order=...)")
        if not isinstance(self.checkpoint_frequency, int) or self.checkpoint_frequency < 0:
            raise ValueError(
                f"CheckpointConfig(checkpoint_frequency={self.checkpoint_frequency!r}): it must be "
                "an integer >= 0 (0 turns periodic checkpoints off)."
            )


@dataclass
class FailureConfig:
    """What to do when a trial raises: retry it, and/or end the experiment."""

    max_failures: int = 0
    fail_fast: bool | str = False

    def __post_init__(self) -> None:
        if self.fail_fast not in (True, False, "raise"):
            raise ValueError(
                f"FailureConfig(fail_fast={self.fail_fast!r}): use True, False or 'raise'."
            )
        if (not isinstance(self.max_failures, int) or isinstance(self.max_failures, bool)
                or self.max_failures < -1):
            raise ValueError(
                f"FailureConfig(max_failures={self.max_failures!r}): it must be an integer: how "
                "many times a failed trial is retried (0: never, -1: without limit)."
            )


@dataclass
class RunConfig:
    """Where results go, when trials stop, and how much is printed."""

    name: str | None = None
    storage_path: str | None = None
    stop: Mapping[str, Any] | Callable[[str, dict[str, Any]], bool] | Any | None = None
    checkpoint_config: CheckpointConfig = field(default_factory=CheckpointConfig)
    failure_config: FailureConfig = field(default_factory=FailureConfig)
    callbacks: list[Any] | None = None
    verbose: int = 1


def _unused_name(root: str, name: str) -> str:
    """``name``, or ``name_2``, ``name_3``... if an experiment already lies there.

    Trial directories have deterministic names, so two experiments in one
    directory would overwrite each other's files.
    """
    candidate, n = name, 1
    while os.path.isdir(os.path.join(root, candidate)) and os.listdir(os.path.join(root, candidate)):
        n += 1
        candidate = f"{name}_{n}"
    if candidate != name:
        logger.warning("An experiment already lies in %s; this one goes to %s.",
                       os.path.join(root, name), os.path.join(root, candidate))
    return candidate


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _trainable_name(trainable: Any) -> str:
    return getattr(trainable, "__name__", type(trainable).__name__)


def _trial_exception(grid: ResultGrid) -> BaseException:
    """The first failed trial's own exception, as Ray Tune's fail_fast='raise' raises it.

    Its cause is the TrialError with the worker's traceback; where the exception
    cannot be rebuilt here, that TrialError itself. Either carries ``result_grid``.
    """
    failed = next(r for r in grid if r.error is not None)
    error: BaseException = failed.error  # type: ignore[assignment]
    if failed._exception is not None:
        try:
            original = cloudpickle.loads(failed._exception)
        except Exception:  # a class the driver cannot import: the traceback text will do
            original = None
        if isinstance(original, BaseException):
            original.__cause__ = error
            error = original
    error.result_grid = grid  # type: ignore[attr-defined]
    return error


def check_not_being_imported(trainable: Any) -> None:
    """Refuse a trainable whose module is still being imported: Dask would hang on it.

    Dask sends functions and classes from modules by reference.  The embedded
    cluster's scheduler, which runs in this process, unpickles them and so
    waits for the module's import to finish, while the import waits for the
    experiment; a remote worker would import the module and run the
    experiment again.
    """
    module = getattr(trainable, "__module__", None) or ""
    spec = getattr(sys.modules.get(module), "__spec__", None)
    if getattr(spec, "_initializing", False):
        raise RuntimeError(
            f"Tuner({_trainable_name(trainable)}) was created while its module `{module}` is "
            "still being imported, so Dask could not load the trainable and would wait for "
            f"ever. Run the experiment as a script (python {module.replace('.', '/')}.py), "
            "or move it into a function that you call after the import."
        )


def check_picklable(trainable: Any, argument: str = "trainable") -> None:
    """Raise a clear error naming what a trainable captures that cannot be pickled."""
    try:
        cloudpickle.dumps(trainable)
        return
    except Exception as exc:  # cloudpickle raises many types; report the culprit instead
        original = exc
    name = _trainable_name(trainable)
    for var, value in _captured(trainable).items():
        try:
            cloudpickle.dumps(value)
        except Exception as exc:
            raise TypeError(
                f"The {argument} `{name}` cannot be sent to Dask workers: it uses `{var}` "
                f"(a {type(value).__module__}.{type(value).__qualname__}), which cannot be pickled "
                f"({type(exc).__name__}: {exc}). Create `{var}` inside the trainable instead, or "
                "pass what it is built from through tune.with_parameters()."
            ) from None
    raise TypeError(
        f"The {argument} `{name}` cannot be pickled to send it to Dask workers "
        f"({type(original).__name__}: {original})."
    ) from original


def _captured(trainable: Any) -> dict[str, Any]:
    """The objects a function (or a class's methods) refers to from outside."""
    functions = [trainable]
    if isinstance(trainable, type):
        functions = [v for v in vars(trainable).values() if inspect.isfunction(v)]
    found: dict[str, Any] = {}
    for fn in functions:
        if not inspect.isfunction(fn):
            continue
        try:
            closure = inspect.getclosurevars(fn)
        except (TypeError, ValueError):
            continue
        found.update(closure.nonlocals)
        found.update(closure.globals)
    return {k: v for k, v in found.items() if not inspect.ismodule(v)}


class Tuner:
    """Runs a hyperparameter search: ``Tuner(train, param_space=..., tune_config=...).fit()``.

    Args:
        trainable: A function ``train(config)`` that calls ``tune.report``, or a
            :class:`dasktune.Trainable` subclass.
        param_space: The search space: a dict of constants, domains such as
            ``tune.uniform(0, 1)`` and ``tune.grid_search([...])``, nested freely.
        tune_config: Metric, mode, number of samples, searcher and scheduler.
        run_config: Storage, stopping criteria, checkpoints, failures, verbosity.
        client: A ``distributed.Client`` to run on. Without one dasktune uses
            the default client if there is one, else starts a local cluster
            (one single-threaded worker process per core) and closes it at the end.
    """

    def __init__(
        self,
        trainable: Any,
        *,
        param_space: dict[str, Any] | None = None,
        tune_config: TuneConfig | None = None,
        run_config: RunConfig | None = None,
        client: Any | None = None,
    ) -> None:
        if param_space is not None and not isinstance(param_space, Mapping):
            raise TypeError(
                f"Tuner(param_space={param_space!r}): the search space must be a dict such as "
                "{'lr': tune.loguniform(1e-4, 1e-1)}."
            )
        self.trainable = trainable
        self.param_space = dict(param_space or {})
        self.tune_config = tune_config or TuneConfig()
        self.run_config = run_config or RunConfig()
        self.client = client
        self._validate_trainable()

    def _validate_trainable(self) -> None:
        fn, params = unwrap(self.trainable)
        is_class = isinstance(fn, type)
        if is_class and not issubclass(fn, Trainable):
            raise TypeError(
                f"Tuner(trainable={fn.__name__}): a class trainable must subclass "
                "dasktune.Trainable (setup/step/save_checkpoint/load_checkpoint)."
            )
        if not is_class and not callable(fn):
            raise TypeError(
                f"Tuner(trainable={fn!r}): pass a function train(config) that calls "
                "tune.report(...), or a dasktune.Trainable subclass."
            )
        if not is_class and params and not accepts_params(fn, list(params)):
            raise TypeError(
                f"tune.with_parameters({_trainable_name(fn)}, {', '.join(params)}=...): "
                f"{_trainable_name(fn)} must accept them as keyword arguments, e.g. "
                f"def {_trainable_name(fn)}(config, {', '.join(params)}): ..."
            )
        check_not_being_imported(fn)
        check_picklable(fn)

    # -- wiring --------------------------------------------------------------
    def _searcher(self) -> Searcher:
        tc = self.tune_config
        searcher = tc.search_alg or BasicVariantGenerator()
        if not isinstance(searcher, Searcher):
            raise TypeError(
                f"TuneConfig(search_alg={searcher!r}): expected a dasktune Searcher such as "
                "HyperOptSearch(...) or BasicVariantGenerator()."
            )
        if tc.max_concurrent_trials and not isinstance(
            searcher, (BasicVariantGenerator, ConcurrencyLimiter)
        ):
            searcher = ConcurrencyLimiter(searcher, max_concurrent=tc.max_concurrent_trials)
        ok = searcher.set_search_properties(
            tc.metric, tc.mode, self.param_space, num_samples=tc.num_samples, seed=tc.seed
        )
        if not ok:
            raise ValueError(
                f"TuneConfig(metric={tc.metric!r}, mode={tc.mode!r}) conflicts with the "
                f"{type(searcher).__name__}'s own metric={searcher.metric!r}, "
                f"mode={searcher.mode!r}. Set them in one place only."
            )
        if searcher.learns_from_results and (not searcher.metric or not searcher.mode):
            raise ValueError(
                f"{type(searcher).__name__} needs a metric and a mode to learn from results: pass "
                "TuneConfig(metric='mean_accuracy', mode='max') or give them to the searcher."
            )
        return searcher

    def _scheduler(self) -> TrialScheduler:
        tc = self.tune_config
        scheduler = tc.scheduler or FIFOScheduler()
        if not isinstance(scheduler, TrialScheduler):
            raise TypeError(
                f"TuneConfig(scheduler={scheduler!r}): expected a dasktune TrialScheduler such as "
                "ASHAScheduler(...)."
            )
        if not scheduler.set_search_properties(tc.metric, tc.mode):
            raise ValueError(
                f"TuneConfig(metric={tc.metric!r}, mode={tc.mode!r}) conflicts with the "
                f"{type(scheduler).__name__}'s metric={scheduler.metric!r}, mode={scheduler.mode!r}. "
                "Set them in one place only."
            )
        if type(scheduler) is not FIFOScheduler and (not scheduler.metric or not scheduler.mode):
            raise ValueError(
                f"{type(scheduler).__name__} needs a metric and a mode: pass "
                f"{type(scheduler).__name__}(metric='mean_accuracy', mode='max') or "
                "TuneConfig(metric=..., mode=...)."
            )
        return scheduler

    def _experiment_path(self) -> tuple[str, str]:
        rc = self.run_config
        root = os.path.abspath(os.path.expanduser(rc.storage_path or config.get("storage-path")))
        name = rc.name or "{}_{}".format(
            _trainable_name(unwrap(self.trainable)[0]),
            datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S"),
        )
        name = _unused_name(root, name)
        path = os.path.join(root, name)
        check_writable(path, f"RunConfig(storage_path={rc.storage_path!r})" if rc.storage_path
                       else "RunConfig(storage_path=None, meaning ~/dasktune_results)")
        return name, path

    def fit(self) -> ResultGrid:
        """Run the experiment and return its results.

        If the experiment ends with an error (for example a metric that the
        trainable never reports), the error carries the results gathered so
        far as ``error.result_grid``; every result is also on disk already.
        """
        from dasktune.execution._dask import DaskBackend

        tc, rc = self.tune_config, self.run_config
        searcher = self._searcher()
        scheduler = self._scheduler()
        stopper = as_stopper(rc.stop)
        callbacks = self._callbacks()
        name, path = self._experiment_path()
        fn, params = unwrap(self.trainable)
        resources = resources_of(self.trainable)
        metric = tc.metric or scheduler.metric or searcher.metric
        mode = tc.mode or scheduler.mode or searcher.mode
        single = isinstance(metric, str) or metric is None
        console = ConsoleReporter(rc.verbose, metric if single else None, mode if single else None,
                                  interval=config.get("console.interval"))

        backend = DaskBackend.connect(self.client)
        try:
            resources, checked = self._check_workers(backend, resources, console)
        except BaseException:
            backend.close()
            raise
        if backend.cluster is not None:
            verb = "started" if backend.started_cluster else "reusing"
            console.note(f"dasktune: {verb} a local Dask cluster with "
                         f"{len(backend.workers())} workers; dashboard: {backend.dashboard_link}")
        console.note(f"dasktune: results go to {path}")

        required = []
        if type(scheduler) is not FIFOScheduler and scheduler.metric:
            required.append((scheduler.metric, f"{type(scheduler).__name__}(metric=...)"))
        if searcher.learns_from_results and searcher.metric:
            for name in _as_list(searcher.metric):  # several for multi-objective search
                required.append((name, f"{type(searcher).__name__}(metric=...)"))
        settings = ControllerSettings(
            num_samples=tc.num_samples,
            time_budget_s=tc.time_budget_s,
            max_failures=rc.failure_config.max_failures,
            fail_fast=rc.failure_config.fail_fast,
            required_metrics=tuple(dict.fromkeys(required)),
            searcher_counts_samples=not searcher.ends_search_itself,
        )
        ckpt = rc.checkpoint_config
        spec = ExperimentSpec(
            trainable=fn, params=params, resources=resources, resources_checked=checked,
            worker_timeout=None if backend.is_adaptive() else float(config.get("worker-timeout")),
            experiment_name=name,
            experiment_path=path, metric=metric, mode=mode,
            checkpoint=CheckpointPolicy(
                num_to_keep=ckpt.num_to_keep, score_attribute=ckpt.checkpoint_score_attribute,
                score_order=ckpt.checkpoint_score_order, frequency=ckpt.checkpoint_frequency,
                at_end=bool(ckpt.checkpoint_at_end),
            ),
            max_concurrent=tc.max_concurrent_trials or 0,
            callbacks=tuple(callbacks),
        )
        runner: ExperimentRunner | None = None

        def make_trial(trial_id: str, index: int, config: dict[str, Any]) -> Any:
            return runner.make_trial(trial_id, index, config)  # type: ignore[union-attr]

        controller = Controller(searcher, scheduler, stopper, settings, make_trial,
                                trial_id_prefix=uuid.uuid4().hex[:5])
        runner = ExperimentRunner(backend, controller, spec, console)
        grid = runner.run()
        if rc.failure_config.fail_fast == "raise" and grid.errors:
            raise _trial_exception(grid)
        return grid

    def _callbacks(self) -> list[Callback]:
        callbacks = list(self.run_config.callbacks or [])
        for callback in callbacks:
            if not isinstance(callback, Callback):
                raise TypeError(
                    f"RunConfig(callbacks=[..., {callback!r}, ...]): each callback must be a "
                    "dasktune.Callback subclass instance (override on_trial_result and so on)."
                )
        if config.get("tensorboard"):
            from dasktune.logger import TBXLoggerCallback

            if not any(isinstance(c, TBXLoggerCallback) for c in callbacks):
                callbacks.append(TBXLoggerCallback())
        return callbacks

    @staticmethod
    def _check_workers(backend: Any, resources: dict[str, float],
                       console: ConsoleReporter) -> tuple[dict[str, float], bool]:
        """The request as Dask can express it, and whether it was checked against workers.

        With no worker yet (batch jobs still queued, a cluster that scales itself
        to its load), trials are queued at once, since queued work is what makes
        an autoscaler grow; the request is checked when the first worker arrives,
        and a cluster that does not scale itself must get one within
        ``dasktune.worker-timeout`` seconds.
        """
        from dasktune.execution._dask import usable_request

        workers = backend.workers()
        if workers:
            return usable_request(workers, resources), True
        if backend.is_adaptive():
            console.note("dasktune: the cluster has no workers yet; it scales up for the waiting "
                         "trials (cluster.adapt)")
        else:
            console.note("dasktune: the cluster has no workers yet; trials wait for them (up to "
                         f"dasktune.worker-timeout = {float(config.get('worker-timeout')):g} s)")
        # A worker thread is a CPU: queued with a CPU request that no worker advertises,
        # the first runs would never start.
        return {k: v for k, v in resources.items() if k != "CPU"}, False
