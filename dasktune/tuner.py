"""Tuner: thin wiring of search, schedulers, execution and storage into one experiment."""

from __future__ import annotations

import datetime
import logging
import os
import uuid
from collections.abc import Mapping
from typing import Any

import cloudpickle

from dasktune import config
from dasktune.callback import Callback, CallbackList
from dasktune.execution.capacity import Capacity, usable_request
from dasktune.execution.console import ConsoleReporter
from dasktune.execution.controller import Controller, ControllerSettings
from dasktune.execution.loop import ExperimentLoop, ExperimentSpec
from dasktune.result import ResultGrid
from dasktune.schedulers import FIFOScheduler
from dasktune.schedulers.trial_scheduler import TrialScheduler
from dasktune.search import BasicVariantGenerator, ConcurrencyLimiter
from dasktune.search.searcher import Searcher
from dasktune.stopper import as_stopper
from dasktune.storage.experiment import ExperimentStore
from dasktune.storage.layout import check_writable
from dasktune.trainable.diagnostics import check_trainable, trainable_name
from dasktune.trainable.util import resources_of, unwrap
from dasktune.tune_config import CheckpointConfig, FailureConfig, RunConfig, TuneConfig

__all__ = ["CheckpointConfig", "FailureConfig", "RunConfig", "TuneConfig", "Tuner"]

logger = logging.getLogger(__name__)


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
        check_trainable(trainable)

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
            trainable_name(unwrap(self.trainable)[0]),
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
            for needed in _as_list(searcher.metric):  # several for multi-objective search
                required.append((needed, f"{type(searcher).__name__}(metric=...)"))
        settings = ControllerSettings(
            num_samples=tc.num_samples,
            time_budget_s=tc.time_budget_s,
            max_failures=rc.failure_config.max_failures,
            fail_fast=rc.failure_config.fail_fast,
            required_metrics=tuple(dict.fromkeys(required)),
            searcher_counts_samples=not searcher.ends_search_itself,
        )
        controller = Controller(searcher, scheduler, stopper, settings,
                                trial_id_prefix=uuid.uuid4().hex[:5])
        ckpt = rc.checkpoint_config
        spec = ExperimentSpec(
            trainable=fn, params=params, trainable_name=trainable_name(fn),
            checkpoint_frequency=ckpt.checkpoint_frequency,
            checkpoint_at_end=bool(ckpt.checkpoint_at_end),
        )
        capacity = Capacity(
            resources, checked, max_concurrent=tc.max_concurrent_trials or 0,
            worker_timeout=None if backend.is_adaptive() else float(config.get("worker-timeout")),
        )
        loop = ExperimentLoop(backend, controller, spec, ExperimentStore(path, name, ckpt),
                              capacity, CallbackList(callbacks), console, metric, mode)
        grid = loop.run()
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
