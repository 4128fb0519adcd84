"""Tuner: thin wiring of search, schedulers, execution and storage into one experiment."""

from __future__ import annotations

import dataclasses
import datetime
import logging
import os
import uuid
from collections.abc import Mapping
from typing import Any

import cloudpickle

from dasktune import config
from dasktune._gc import frozen_heap
from dasktune.callback import Callback, CallbackList
from dasktune.dashboard._publish import DashboardCallback, attach_dashboard, expected_trials
from dasktune.execution.capacity import Capacity, usable_request
from dasktune.execution.console import ConsoleReporter
from dasktune.execution.controller import Controller, ControllerSettings
from dasktune.execution.loop import ExperimentLoop, ExperimentSpec
from dasktune.execution.resume import ResumeOptions, resume
from dasktune.logger import ResultsTableCallback, TBXLoggerCallback, tensorboard_installed
from dasktune.result import ResultGrid
from dasktune.schedulers import FIFOScheduler
from dasktune.schedulers.trial_scheduler import TrialScheduler
from dasktune.search import BasicVariantGenerator, ConcurrencyLimiter
from dasktune.search.searcher import Searcher
from dasktune.stopper import as_stopper
from dasktune.storage.experiment import ExperimentStore
from dasktune.storage.files import atomic_write
from dasktune.storage.journal import load_journal
from dasktune.storage.layout import JOURNAL_FILE, TUNER_FILE
from dasktune.trainable.diagnostics import check_trainable
from dasktune.trainable.util import resources_of, trainable_name, unwrap
from dasktune.tune_config import CheckpointConfig, FailureConfig, RunConfig, TuneConfig

__all__ = ["CheckpointConfig", "FailureConfig", "RunConfig", "TuneConfig", "Tuner"]

logger = logging.getLogger(__name__)


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


#: The largest pickle of a trainable that a Tuner keeps to ship in every fit. A larger one
#: carries data (which ``with_parameters`` would send once): it is scattered to the workers as
#: it is at ``fit()``, and not kept in memory twice.
_KEEP_PICKLE_BYTES = 1 << 20


def chdir_to_trial_dir(setting: bool | None) -> bool | None:
    """``TuneConfig(chdir_to_trial_dir)``, else Ray Tune's ``RAY_CHDIR_TO_TRIAL_DIR``
    variable (``0``: trials keep the script's working directory, so relative paths to data
    work), else None (dasktune's default: the trial's directory)."""
    if setting is not None:
        return setting
    value = os.environ.get("RAY_CHDIR_TO_TRIAL_DIR", "").strip()
    if value in ("0", "1"):
        return value == "1"
    return None


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
        self._resume_from: tuple[str, ResumeOptions] | None = None
        self._results: ResultGrid | None = None  # the last fit()'s, for get_results()
        # Pickled once, here, as Ray Tune does when a Tuner is made: a function defined in
        # __main__ goes by value, with the values of the globals it uses at this moment.
        pickled = check_trainable(trainable)
        self._trainable_pickle = pickled if len(pickled) <= _KEEP_PICKLE_BYTES else None

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
            raise ValueError(_missing_metric_or_mode(searcher, "to learn from results"))
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
                f"{type(scheduler).__name__}'s metric={scheduler.metric!r}, "
                f"mode={scheduler.mode!r}. Set them in one place only."
            )
        if scheduler.needs_metric and (not scheduler.metric or not scheduler.mode):
            raise ValueError(_missing_metric_or_mode(scheduler, "to compare trials"))
        return scheduler

    # -- resuming ------------------------------------------------------------
    @classmethod
    def can_restore(cls, path: str | os.PathLike[str]) -> bool:
        """Whether ``path`` is an experiment directory that :meth:`restore` can continue."""
        try:
            load_journal(os.path.abspath(os.path.expanduser(os.fspath(path))))
        except (OSError, ValueError):
            return False
        return True

    @classmethod
    def restore(
        cls,
        path: str | os.PathLike[str],
        trainable: Any,
        *,
        resume_unfinished: bool = True,
        resume_errored: bool = False,
        restart_errored: bool = False,
        param_space: dict[str, Any] | None = None,
        client: Any | None = None,
    ) -> Tuner:
        """Continue an experiment that was interrupted (the driver killed, Ctrl-C, SIGTERM).

        As in Ray Tune: finished trials are not run again, running and paused trials
        continue from their latest checkpoints (``resume_unfinished``), failed ones
        continue (``resume_errored``) or start again (``restart_errored``) if asked, and
        the searcher and scheduler continue from their saved state, so ``num_samples``
        counts the trials already drawn.  Results that trials reported while the driver
        was gone come back from the runs' spools.  Call :meth:`fit` on the result.

        Args:
            path: The experiment directory, ``<storage_path>/<name>``; it may have moved.
            trainable: The same trainable (functions cannot be restored from disk).
            param_space: Only if it could not be saved (it held something unpicklable).
            client: A ``distributed.Client`` to run on (default: as for a new Tuner).
        """
        path = os.path.abspath(os.path.expanduser(os.fspath(path)))
        if not cls.can_restore(path):
            raise ValueError(
                f"Tuner.restore(path={path!r}): no experiment to continue there (no readable "
                f"{JOURNAL_FILE}). Pass the directory of an experiment that dasktune ran, "
                "<storage_path>/<name>, as printed at the start of fit()."
            )
        saved = _load_settings(path)
        if param_space is None:
            param_space = saved.get("param_space")
            if param_space is None and "param_space" not in saved:
                raise ValueError(
                    f"Tuner.restore({path!r}): the experiment's param_space could not be saved "
                    "(it holds something that cannot be pickled); pass it again as "
                    "Tuner.restore(path, trainable, param_space=...)."
                )
        run_config = saved.get("run_config") or RunConfig()
        run_config = dataclasses.replace(
            run_config, storage_path=os.path.dirname(path), name=os.path.basename(path)
        )
        tuner = cls(
            trainable,
            param_space=param_space,
            tune_config=saved.get("tune_config"),
            run_config=run_config,
            client=client,
        )
        tuner._resume_from = (
            path,
            ResumeOptions(resume_unfinished, resume_errored, restart_errored),
        )
        return tuner

    def _resume_target(self, root: str) -> tuple[str, ResumeOptions] | None:
        """The experiment to continue: from :meth:`restore`, or ``resume="auto"``."""
        if self._resume_from is not None:
            return self._resume_from
        rc = self.run_config
        mode = rc.resume if rc.resume is not None else config.get("resume")
        if mode in (None, False, "never", ""):
            return None
        if mode != "auto":
            raise ValueError(
                f"RunConfig(resume={mode!r}): use 'auto' to continue an unfinished experiment "
                "of the same name when the script runs again, or None to start a new one."
            )
        candidates = (
            [os.path.join(root, rc.name)]
            if rc.name
            else _experiments_of(root, trainable_name(unwrap(self.trainable)[0]))
        )
        for path in candidates:
            if self.can_restore(path):
                if load_journal(path).finished:
                    logger.info("%s finished already; resume='auto' starts a new experiment.", path)
                    return None
                return path, ResumeOptions()
        return None

    def _experiment_name(self) -> str:
        return self.run_config.name or "{}_{}".format(
            trainable_name(unwrap(self.trainable)[0]),
            datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S"),
        )

    def fit(self) -> ResultGrid:
        """Run the experiment and return its results.

        If the experiment ends with an error (for example a metric that the
        trainable never reports), the error carries the results gathered so
        far as ``error.result_grid``; every result is also on disk already.
        SIGTERM or SIGUSR1 (a batch system's walltime or preemption) stop it like
        Ctrl-C and raise :class:`~dasktune.execution.loop.ExperimentInterrupted`,
        which exits with status 128 + the signal; :meth:`restore` continues it.
        """
        with frozen_heap():  # no full collection walks the script's modules meanwhile
            self._results = self._fit()
        return self._results

    def get_results(self) -> ResultGrid:
        """The results of this Tuner's last :meth:`fit`; for a Tuner made by :meth:`restore`
        and not fit again, the experiment's results as stored, without running anything
        (Ray Tune's "restore, then analyse")."""
        if self._results is not None:
            return self._results
        if self._resume_from is None:
            raise RuntimeError(
                "Tuner.get_results(): this Tuner has not run: call fit() first, or read a "
                "finished experiment with Tuner.restore(path, trainable).get_results() or "
                "tune.ExperimentAnalysis(path)."
            )
        from dasktune.analysis import ExperimentAnalysis

        tc = self.tune_config
        grid = ExperimentAnalysis(self._resume_from[0]).result_grid
        return ResultGrid(list(grid), grid.experiment_path, tc.metric, tc.mode)

    def _fit(self) -> ResultGrid:
        tc, rc = self.tune_config, self.run_config
        settings_data = _pickled_settings(self.param_space, tc, rc)  # before fit changes them
        searcher = self._searcher()
        scheduler = self._scheduler()
        stopper = as_stopper(rc.stop)
        callbacks = self._callbacks()
        fn, params = unwrap(self.trainable)
        metric = tc.metric or scheduler.metric or searcher.metric
        mode = tc.mode or scheduler.mode or searcher.mode
        if tc.num_samples == -1 and rc.stop is None and tc.time_budget_s is None:
            logger.warning(
                "TuneConfig(num_samples=-1) with no RunConfig(stop=...) and no time_budget_s: "
                "the experiment runs until you stop it (Ctrl-C or SIGTERM). Give it a time "
                "budget or a stopper if that is not what you want."
            )
        root = os.path.abspath(os.path.expanduser(rc.storage_path or config.get("storage-path")))
        target = self._resume_target(root)
        journaled = None
        checkpoint_config = rc.checkpoint_config
        assert checkpoint_config is not None  # RunConfig.__post_init__ fills in the default
        if target is not None:
            store, journaled = ExperimentStore.reopen(target[0], checkpoint_config)
            prefix = journaled.trial_id_prefix
        else:
            prefix = uuid.uuid4().hex[:5]
            store = ExperimentStore.create(
                root,
                self._experiment_name(),
                checkpoint_config,
                {
                    "trainable": trainable_name(fn),
                    "metric": metric,
                    "mode": mode,
                    "trial_id_prefix": prefix,
                },
            )
            store.guard(atomic_write, os.path.join(store.path, TUNER_FILE), settings_data)
        try:
            return self._run(
                store,
                journaled,
                target,
                prefix,
                searcher,
                scheduler,
                stopper,
                callbacks,
                metric,
                mode,
            )
        finally:
            store.close()

    def _run(
        self,
        store: ExperimentStore,
        journaled: Any,
        target: Any,
        prefix: str,
        searcher: Searcher,
        scheduler: TrialScheduler,
        stopper: Any,
        callbacks: list[Callback],
        metric: Any,
        mode: Any,
    ) -> ResultGrid:
        from dasktune.execution._dask import DaskBackend
        from dasktune.execution.cluster import cpu_shape, default_n_workers

        tc, rc = self.tune_config, self.run_config
        failure, ckpt, budget = rc.failure_config, rc.checkpoint_config, tc.time_budget_s
        # What the configs' __post_init__ made of None and of a timedelta:
        assert failure is not None and ckpt is not None and rc.verbose is not None
        assert not isinstance(budget, datetime.timedelta)
        fn, params = unwrap(self.trainable)
        single = isinstance(metric, str) or metric is None
        total = getattr(searcher, "total_samples", None) or (
            tc.num_samples if tc.num_samples > 0 else None
        )
        console = ConsoleReporter(
            rc.verbose,
            metric if single else None,
            mode if single else None,
            interval=config.get("console.interval"),
            num_samples=total,
            reporter=rc.progress_reporter,
        )
        asked = resources_of(self.trainable)
        # An embedded cluster is cut for trials that ask for several CPUs (not for GPU
        # trials: dask-cuda's workers are one per GPU).
        cpus = 0.0 if "GPU" in asked else asked.get("CPU", 0.0)
        backend = DaskBackend.connect(self.client, **({"cpus_per_trial": cpus} if cpus > 1 else {}))
        try:
            workers = backend.workers()
            resources, checked = self._check_workers(backend, workers, asked, console)
        except BaseException:
            backend.close()
            raise
        page = attach_dashboard(backend.client, callbacks, store.path, backend.started_cluster)
        if backend.cluster is not None:
            verb = "started" if backend.started_cluster else "reusing"
            each = ""
            if cpus > 1:
                shape = cpu_shape(cpus, default_n_workers(), config.get("cluster.n-workers"))
                each = f", each running one trial on {shape.threads} threads"
                if shape.threads < cpus:
                    each += f" (trials ask for {cpus:g} CPUs; this machine has {shape.threads})"
            console.note(
                f"dasktune: {verb} a local Dask cluster with "
                f"{len(workers)} worker{'s' if len(workers) != 1 else ''}{each}; "
                f"dashboard: {backend.dashboard_link}"
                f"{page}"
            )
        elif page:
            console.note(f"dasktune: on your Dask cluster{page}")
        console.note(f"dasktune: {'resuming' if journaled else 'results go to'} {store.path}")

        required = []
        if scheduler.needs_metric and scheduler.metric:
            required.append((scheduler.metric, f"{type(scheduler).__name__}(metric=...)"))
        if searcher.learns_from_results and searcher.metric:
            for needed in _as_list(searcher.metric):  # several for multi-objective search
                required.append((needed, f"{type(searcher).__name__}(metric=...)"))
        if isinstance(tc.metric, str) and tc.metric:  # as in Ray: the Tuner's own metric too
            required.append((tc.metric, "TuneConfig(metric=...)"))
        if os.environ.get("TUNE_DISABLE_STRICT_METRIC_CHECKING", "").strip() == "1":
            required = []  # Ray Tune's switch for results without the metric
        settings = ControllerSettings(
            num_samples=tc.num_samples,
            time_budget_s=budget,
            max_failures=failure.max_failures,
            fail_fast=failure.fail_fast,
            required_metrics=tuple(dict.fromkeys(required)),
            searcher_counts_samples=not searcher.ends_search_itself,
            max_concurrent_trials=tc.max_concurrent_trials or 0,
        )
        controller = Controller(searcher, scheduler, stopper, settings, trial_id_prefix=prefix)
        to_run = None
        if journaled is not None:
            resumed = resume(store, journaled, searcher, scheduler, stopper, target[1])
            controller.stopper = resumed.stopper
            controller.adopt(resumed.trials, resumed.search_finished)
            to_run = resumed.to_run
        spec = ExperimentSpec(
            trainable=fn,
            trainable_pickle=self._trainable_pickle,
            params=params,
            trainable_name=trainable_name(fn),
            checkpoint_frequency=ckpt.checkpoint_frequency,
            checkpoint_at_end=bool(ckpt.checkpoint_at_end),
            trial_name_creator=tc.trial_name_creator,
            trial_dirname_creator=tc.trial_dirname_creator,
            chdir_to_trial_dir=chdir_to_trial_dir(tc.chdir_to_trial_dir),
            log_files=rc.log_file_names(),
            trial_resources=dict(asked) or {"CPU": 1.0},  # Ray's default: one CPU a trial
        )
        capacity = Capacity(
            resources,
            checked,
            max_concurrent=tc.max_concurrent_trials or 0,
            worker_timeout=None if backend.is_adaptive() else float(config.get("worker-timeout")),
        )
        loop = ExperimentLoop(
            backend,
            controller,
            spec,
            store,
            capacity,
            CallbackList(callbacks),
            console,
            metric,
            mode,
            resume=to_run,
        )
        grid = loop.run()
        if failure.fail_fast == "raise" and grid.errors:
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
        if config.get("tensorboard") and tensorboard_installed():
            if not any(isinstance(c, TBXLoggerCallback) for c in callbacks):
                callbacks.append(TBXLoggerCallback())
        if not any(isinstance(c, ResultsTableCallback) for c in callbacks):
            callbacks.append(ResultsTableCallback())
        if config.get("dashboard.page"):
            callbacks.append(
                DashboardCallback(
                    self.tune_config.scheduler,
                    expected_trials(self.param_space, self.tune_config),
                    interval=float(config.get("dashboard.interval")),
                )
            )
        return callbacks

    @staticmethod
    def _check_workers(
        backend: Any,
        workers: dict[str, dict[str, Any]],
        resources: dict[str, float],
        console: ConsoleReporter,
    ) -> tuple[dict[str, float], bool]:
        """The request as Dask can express it, and whether it was checked against workers.

        With no worker yet (batch jobs still queued, a cluster that scales itself
        to its load), trials are queued at once, since queued work is what makes
        an autoscaler grow; the request is checked when the first worker arrives,
        and a cluster that does not scale itself must get one within
        ``dasktune.worker-timeout`` seconds.
        """
        if workers:
            request = usable_request(workers, resources)
            cpus = resources.get("CPU", 0.0)
            if cpus > 1 and "CPU" not in request:
                threads = sum(int(w["nthreads"]) for w in workers.values())
                console.note(
                    f"dasktune: trials ask for {cpus:g} CPUs each, but this cluster's workers "
                    "advertise no CPU resource, so nothing is held back for them: each trial "
                    f"runs on one worker thread, and up to {threads} run at once (one per "
                    "thread). Workers that advertise CPUs reserve what trials ask for: "
                    f"LocalCluster(threads_per_worker={cpus:g}, resources={{'CPU': {cpus:g}}}), "
                    f"dask worker --nthreads {cpus:g} --resources 'CPU={cpus:g}'."
                )
            return request, True
        if backend.is_adaptive():
            console.note(
                "dasktune: the cluster has no workers yet; it scales up for the waiting "
                "trials (cluster.adapt)"
            )
        else:
            console.note(
                "dasktune: the cluster has no workers yet; trials wait for them (up to "
                f"dasktune.worker-timeout = {float(config.get('worker-timeout')):g} s)"
            )
        # A worker thread is a CPU: queued with a CPU request that no worker advertises,
        # the first runs would never start.
        return {k: v for k, v in resources.items() if k != "CPU"}, False


def _pickled_settings(
    param_space: dict[str, Any], tune_config: TuneConfig, run_config: RunConfig
) -> bytes:
    """The Tuner's settings for :meth:`Tuner.restore`, leaving out what cannot be pickled."""
    settings: dict[str, Any] = {}
    for key, value in (
        ("param_space", param_space),
        ("tune_config", tune_config),
        ("run_config", run_config),
    ):
        try:
            cloudpickle.dumps(value)
        except Exception:
            if not isinstance(value, RunConfig):
                logger.info(
                    "The experiment's %s cannot be pickled; Tuner.restore will need "
                    "it passed again.",
                    key,
                )
                continue
            # callbacks and a progress reporter (the user's objects) are the usual culprits
            value = dataclasses.replace(value, callbacks=None, progress_reporter=None)
            try:
                cloudpickle.dumps(value)
            except Exception:
                continue
        settings[key] = value
    return cloudpickle.dumps(settings)


def _load_settings(path: str) -> dict[str, Any]:
    try:
        with open(os.path.join(path, TUNER_FILE), "rb") as f:
            return dict(cloudpickle.load(f))
    except (OSError, EOFError, AttributeError, ImportError) as exc:
        logger.warning(
            "Could not read %s (%r); restoring with default settings.",
            os.path.join(path, TUNER_FILE),
            exc,
        )
        return {}


def _experiments_of(root: str, trainable: str) -> list[str]:
    """Experiment directories of ``trainable`` under ``root`` with default names, newest first."""
    try:
        names = [n for n in os.listdir(root) if n.startswith(f"{trainable}_")]
    except OSError:
        return []
    paths = [
        os.path.join(root, n) for n in names if os.path.isfile(os.path.join(root, n, JOURNAL_FILE))
    ]
    return sorted(
        paths, key=lambda p: os.path.getmtime(os.path.join(p, JOURNAL_FILE)), reverse=True
    )


def _missing_metric_or_mode(part: Any, why: str) -> str:
    """What a searcher or scheduler without a metric or a mode lacks, and where to give it."""
    name = type(part).__name__
    metric, mode = part.metric, part.mode
    if metric and not mode:
        has = f"has metric={metric!r} but no mode"
        fix = f"{name}(metric={metric!r}, mode='max')  (or 'min')"
    elif mode and not metric:
        has = f"has mode={mode!r} but no metric"
        fix = f"{name}(metric=<the name your trainable reports>, mode={mode!r})"
    else:
        has = "has neither a metric nor a mode"
        fix = f"{name}(metric=<the name your trainable reports>, mode='max' or 'min')"
    return (
        f"{name} needs a metric and a mode {why}, and it {has}. Pass {fix}, or metric= and "
        "mode= to TuneConfig (tune.run(metric=..., mode=...) with tune.run)."
    )
