"""The task that runs one trial on a worker, for function and class trainables."""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import pickle
import shutil
import tempfile
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import cloudpickle

from dasktune._protocol import Decision, Message, RunOutcome, RunStarted, RunStatus
from dasktune.storage.spool import RunAlreadyClaimed, SpoolWriter
from dasktune.trainable import session as _session
from dasktune.trainable.checkpoint import Checkpoint
from dasktune.trainable.trainable import Trainable

_CLASS_STATE_FILE = ".dasktune_trainable_state.pkl"

logger = logging.getLogger(__name__)


def run_trial(
    spec: _session.RunSpec,
    trainable: Any,
    params: dict[str, Any],
    checkpoint_config: tuple[int, bool],
    emit: Callable[[Message], None],
    cancelled: Callable[[], bool] = lambda: False,
    worker: str = "",
    exclusive: bool = True,
) -> RunOutcome:
    """Run ``trainable`` for one trial; never raises for the trial's own errors.

    ``exclusive`` says that this process runs no other trial at the same time, so the
    run may change the working directory (``TuneConfig(chdir_to_trial_dir)``) and
    redirect what it prints (``RunConfig(log_to_file)``).

    The run first claims its spool (see :mod:`dasktune.storage.spool`): if Dask
    runs the same task a second time because its first worker died, the second
    attempt finds the claim and returns at once with ``RunStatus.DUPLICATE``, and
    the driver, not Dask, decides whether the trial is retried.
    """
    try:
        spool = SpoolWriter(spec.context.trial_dir, spec.run_id)
    except RunAlreadyClaimed:
        return RunOutcome(spec.run_id, RunStatus.DUPLICATE, 0, spec.start_iteration)
    try:
        with _trial_surroundings(spec, exclusive):
            outcome = _run(
                spec, trainable, params, checkpoint_config, emit, cancelled, worker, spool
            )
        spool.end(outcome.to_wire())
    finally:
        spool.close()
    return outcome


_warned_shared_process = False


@contextlib.contextmanager
def _trial_surroundings(spec: _session.RunSpec, exclusive: bool) -> Iterator[None]:
    """The run's working directory and output files, as Ray Tune sets them up."""
    global _warned_shared_process
    wanted_chdir = spec.chdir if spec.chdir is not None else exclusive
    wants_files = spec.log_files is not None
    if (spec.chdir or wants_files) and not exclusive:
        if not _warned_shared_process:
            _warned_shared_process = True
            logger.warning(
                "This Dask worker runs several trials at once in one process, so trials cannot "
                "each have their own working directory or output files "
                "(chdir_to_trial_dir, log_to_file); start workers with one thread each "
                "(dask worker --nthreads 1) for that."
            )
        yield
        return
    with contextlib.ExitStack() as stack:
        if wanted_chdir:
            original = os.getcwd()
            os.environ["TUNE_ORIG_WORKING_DIR"] = original  # as Ray Tune sets it
            os.chdir(spec.context.trial_dir)
            stack.callback(os.chdir, original)
        if spec.log_files is not None:
            stdout_name, stderr_name = spec.log_files
            out = stack.enter_context(open(os.path.join(spec.context.trial_dir, stdout_name), "a"))
            err = (
                out
                if stderr_name == stdout_name
                else stack.enter_context(
                    open(os.path.join(spec.context.trial_dir, stderr_name), "a")
                )
            )
            stack.enter_context(contextlib.redirect_stdout(out))
            stack.enter_context(contextlib.redirect_stderr(err))
        yield


def _run(
    spec: _session.RunSpec,
    trainable: Any,
    params: dict[str, Any],
    checkpoint_config: tuple[int, bool],
    emit: Callable[[Message], None],
    cancelled: Callable[[], bool],
    worker: str,
    spool: SpoolWriter,
) -> RunOutcome:
    session = _session.Session(spec, emit, cancelled, spool)
    session.worker = worker
    _session.set_session(session)
    emit(RunStarted(spec.run_id, worker))
    status, error, error_type, exception = RunStatus.FINISHED, None, None, None
    try:
        if spec.checkpoint_path is not None and not os.path.isdir(spec.checkpoint_path):
            raise FileNotFoundError(
                f"Trial {spec.context.trial_name} was to resume from its checkpoint "
                f"{spec.checkpoint_path}, which is gone: it was deleted outside dasktune, or "
                f"the storage path is not shared with this worker ({worker or 'this host'}). "
                "Keep the experiment directory on a filesystem every worker can reach, and "
                "leave its checkpoints in place while the experiment runs."
            )
        if isinstance(trainable, type) and issubclass(trainable, Trainable):
            _run_class(trainable, spec.config, params, checkpoint_config, session)
        else:
            takes = _parameter_names(trainable)
            if "checkpoint_dir" in takes and "checkpoint_dir" not in params:
                # Ray 1.x's function API: the checkpoint to resume from, as a directory.
                params = {**params, "checkpoint_dir": spec.checkpoint_path}
            if "reporter" in takes and "reporter" not in params:
                params = {**params, "reporter": _report_keywords}  # Ray 0.x-1.x: reporter(...)
            value = trainable(spec.config, **params)
            if inspect.isgenerator(value):
                raise TypeError(
                    f"{getattr(trainable, '__name__', trainable)!s} yields its results; a "
                    "dasktune trainable reports them with tune.report(metrics) instead of yield."
                )
            if isinstance(value, dict):  # as in Ray Tune: returned metrics are a last result
                session.report(value)
    except _session.TrialDone:
        pass  # it reported done=True: finished, as if it had returned
    except _session.StopTrial as stop:
        if stop.decision == Decision.PAUSE:
            status = RunStatus.PAUSED
        else:
            status = RunStatus.CANCELLED if session.task_released else RunStatus.STOPPED
    except (Exception, _session.DecisionTimeoutError) as exc:
        # The trial's own failure: record it, keep the others running.
        status, error, error_type = RunStatus.ERROR, traceback.format_exc(), type(exc).__name__
        exception = _pickled(exc)
    finally:
        _session.set_session(None)
        session.close()
    return RunOutcome(
        spec.run_id, status, session.num_reports, session.iteration, error, error_type, exception
    )


def _parameter_names(fn: Any) -> set[str]:
    """The names of ``fn``'s parameters: Ray 1.x's function trainables take
    ``checkpoint_dir`` and ``reporter`` beside the config."""
    try:
        return set(inspect.signature(fn).parameters)
    except (TypeError, ValueError):  # no signature to read (a builtin, a C extension)
        return set()


def _report_keywords(**metrics: Any) -> None:
    """Ray 0.x-1.x's ``reporter(mean_accuracy=0.9)``, given to ``train(config, reporter)``."""
    _session.report(metrics)


def _pickled(exc: BaseException) -> bytes | None:
    """``exc`` pickled for the driver (FailureConfig(fail_fast='raise') raises it), if small."""
    try:
        data = cloudpickle.dumps(exc)
    except Exception:  # an exception that cannot travel: its traceback text still does
        return None
    return data if len(data) < 64 * 1024 else None


def _run_class(
    cls: type[Trainable],
    config: dict[str, Any],
    params: dict[str, Any],
    checkpoint_config: tuple[int, bool],
    session: _session.Session,
) -> None:
    frequency, at_end = checkpoint_config
    instance = cls(config, **params)
    try:
        if session.checkpoint is not None:
            _restore(instance, session.checkpoint)
        instance._iteration = session.iteration
        while True:
            result = instance.step()
            if not isinstance(result, dict):
                raise TypeError(
                    f"{cls.__name__}.step() returned {type(result).__name__}; it must return "
                    "a dict of metrics such as {'mean_accuracy': 0.9}."
                )
            done = bool(result.pop("done", False))
            instance._iteration += 1
            checkpoint = None
            if (frequency and instance._iteration % frequency == 0) or (
                session.take_checkpoint_request()
            ):
                checkpoint = _save(instance)
            try:
                decision = session.report(result, checkpoint)
            finally:
                _discard(checkpoint)
            if done or decision != Decision.CONTINUE:
                # A paused trial needs its state to resume; a finished one gets
                # its final checkpoint when CheckpointConfig asks for it.
                if checkpoint is None and (at_end or decision == Decision.PAUSE):
                    final = _save(instance)
                    try:
                        session.attach_checkpoint(final)
                    finally:
                        _discard(final)
                if decision != Decision.CONTINUE:
                    raise _session.StopTrial(decision)
                return
    finally:
        instance.cleanup()


#: How a path that save_checkpoint returned is kept: relative to the checkpoint.
_SAVED_PATH = "__dasktune_saved_path__"


def _save(instance: Trainable) -> Checkpoint:
    """The instance's checkpoint in a temporary directory (removed again if saving fails)."""
    directory = tempfile.mkdtemp(prefix="dasktune-trainable-")
    try:
        extra = instance.save_checkpoint(directory)
        if isinstance(extra, (str, os.PathLike)):
            # A file in the directory (Ray's contract): kept relative, since the directory
            # moves into the trial and comes back elsewhere on a restore.
            extra = {_SAVED_PATH: os.path.relpath(os.fspath(extra), directory)}
        with open(os.path.join(directory, _CLASS_STATE_FILE), "wb") as f:
            pickle.dump({"iteration": instance._iteration, "extra": extra}, f)
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    return Checkpoint(directory)


def _discard(checkpoint: Checkpoint | None) -> None:
    """Remove a temporary checkpoint once the session has stored its copy."""
    if checkpoint is not None:
        shutil.rmtree(checkpoint.path, ignore_errors=True)


def _restore(instance: Trainable, checkpoint: Checkpoint) -> None:
    state_file = os.path.join(checkpoint.path, _CLASS_STATE_FILE)
    if os.path.exists(state_file):
        with open(state_file, "rb") as f:
            state = pickle.load(f)
        instance._iteration = state["iteration"]
        extra = state.get("extra")
        if isinstance(extra, dict) and set(extra) == {_SAVED_PATH}:
            instance.load_checkpoint(os.path.join(checkpoint.path, extra[_SAVED_PATH]))
            return
        if extra is not None:
            # Ray's contract: a dict returned by save_checkpoint comes back to load_checkpoint.
            instance.load_checkpoint(extra)
            return
    instance.load_checkpoint(checkpoint.path)
