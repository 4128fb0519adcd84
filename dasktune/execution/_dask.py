"""The one module that talks to Dask: submit trials, carry results and decisions.

Data path of a trial run:

1. :meth:`DaskBackend.submit` sends :func:`_trial_task` to a worker as one future.
2. On the worker, ``tune.report`` publishes each result with ``Worker.log_event``
   (non-blocking, batched to the scheduler) on the experiment's topic.
3. The driver's subscription handler puts each message into the loop's inbox;
   a done-callback on the future does the same when the run ends.
4. Decisions go back with :meth:`DaskBackend.deliver`, which runs
   :func:`dasktune.trainable.session.deliver` in the trial's worker process
   without blocking the driver.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import threading
import time
import uuid
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import cloudpickle

from dasktune._protocol import (
    PARKED_PREFIX,
    TASK_PREFIX,
    WARM_UP_PREFIX,
    AwaitingDecision,
    Decision,
    Message,
    ResultReported,
    RunEnded,
    RunOutcome,
    batch_message,
    is_plain,
    plain_message,
)
from dasktune.trainable import session as _session
from dasktune.trainable._trial_run import run_trial

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunDone:
    """The future of run ``run_id`` completed (its 'end' message may still be on its way)."""

    run_id: str


#: Objects smaller than this travel with every task instead of being scattered once.
_SHIP_BY_VALUE_BYTES = 64 * 1024
#: How old the workers read while an experiment starts may be for its warm-up and first
#: capacity (see :meth:`DaskBackend.workers`).
FRESH_WORKERS_S = 1.0


class _Pickled:
    """An object pickled once on the driver, carried by every task as those bytes and
    unpickled by the task itself (:meth:`load`).

    Dask pickles each task's arguments afresh, and its scheduler unpickles and pickles
    them again on their way to a worker; for a trainable defined in ``__main__`` each
    of those is cloudpickle walking the function, its globals and closures, for every
    trial (a tenth of the driver's time at 10,000 trials, scheduler and coordinator
    alike).  The bytes are compressed: Dask pickles anything whose pickle mentions
    ``__main__`` a second time, with cloudpickle.  Each run still gets its own copy
    of the trainable, as before.
    """

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    @classmethod
    def of(cls, value: Any, pickled: bytes | None = None) -> _Pickled:
        """``value``'s pickle, or ``pickled`` if it was pickled already."""
        return cls(zlib.compress(cloudpickle.dumps(value) if pickled is None else pickled, 1))

    def load(self) -> Any:
        return cloudpickle.loads(zlib.decompress(self.data))

    def load_on(self, worker: Any) -> Any:
        """:meth:`load`, the first time in the worker's event loop thread, where Dask itself
        unpickles arguments: unpickling imports the modules the trainable uses, and some
        modules may only be imported in the main thread (they install signal handlers).
        Later loads of the same bytes import nothing more and run in the calling thread."""
        if self.data in _LOADED or threading.get_ident() == worker.thread_id:
            value = self.load()
        else:
            future: concurrent.futures.Future[Any] = concurrent.futures.Future()

            def load() -> None:
                try:
                    future.set_result(self.load())
                except BaseException as exc:  # raised again in the task, as Dask would
                    future.set_exception(exc)

            worker.loop.add_callback(load)
            value = future.result()
        if len(_LOADED) >= 256:  # a long-lived worker that served many experiments
            _LOADED.clear()
        _LOADED.add(self.data)
        return value

    def __reduce__(self) -> tuple[Any, tuple[bytes]]:
        return _Pickled, (self.data,)


#: The pickled trainables this worker process has loaded once (see _Pickled.load_on).
_LOADED: set[bytes] = set()


def _trial_task(
    spec: _session.RunSpec,
    trainable: Any,
    params: dict[str, Any],
    checkpoint_config: tuple[int, bool],
) -> RunOutcome:
    """Runs on a worker: one run of one trial."""
    from distributed import get_worker

    from dasktune.execution._gpu import release_gpu_memory
    from dasktune.execution._worker_setup import limit_native_threads

    limit_native_threads()
    worker = get_worker()
    if isinstance(trainable, _Pickled):
        trainable = trainable.load_on(worker)
    key = worker.get_current_task()
    emit = _Outbox.of(worker, spec.topic).put

    def cancelled() -> bool:
        task = worker.state.tasks.get(key)
        return task is None or task.state in ("cancelled", "released", "forgotten")

    try:
        outcome = run_trial(
            spec,
            trainable,
            params,
            checkpoint_config,
            emit,
            cancelled,
            worker=worker.address,
            exclusive=worker.state.nthreads == 1,
        )
        emit(RunEnded(spec.run_id, worker.address, outcome))
        return outcome
    finally:
        release_gpu_memory()  # before the next trial on this GPU starts


class _Outbox:
    """What the trials of this worker process tell the driver, sent in batches.

    Each Dask event costs the worker, the scheduler and the driver a message to
    handle, whatever it carries; a trivial trial sent five (start, three results,
    end).  So messages wait here until one must go at once (a result the trial
    waits on a decision for, a request to send that decision again, the run's
    end) or for :data:`BATCH_WAIT_S` at most, and go together as one event, in
    order.  Nothing is lost by waiting: every result is in its run's spool before
    it is put here.
    """

    #: How long a message that no one waits for may wait for others to join it.
    BATCH_WAIT_S = 0.005
    _boxes: dict[tuple[int, str], _Outbox] = {}
    _lock = threading.Lock()
    _wake = threading.Event()
    _flusher: threading.Thread | None = None

    #: A box unused this long (its experiment ended) is dropped.
    FORGET_AFTER_S = 60.0

    def __init__(self, worker: Any, topic: str) -> None:
        self._worker = worker
        self._topic = topic
        self._pending: list[dict[str, Any]] = []
        self._used = time.monotonic()

    @classmethod
    def of(cls, worker: Any, topic: str) -> _Outbox:
        key = (id(worker), topic)
        with cls._lock:
            box = cls._boxes.get(key)
            if box is None or box._worker is not worker:
                box = cls._boxes[key] = cls(worker, topic)
            if cls._flusher is None or not cls._flusher.is_alive():
                cls._flusher = threading.Thread(
                    target=cls._flush_late, daemon=True, name="dasktune-outbox"
                )
                cls._flusher.start()
        return box

    def put(self, message: Message) -> None:
        wire = message.to_wire()
        if not is_plain(wire):  # numpy or torch values, tuples...: events take plain data only
            wire = plain_message(message)
        urgent = isinstance(message, (RunEnded, AwaitingDecision)) or (
            isinstance(message, ResultReported) and message.wait
        )
        with self._lock:
            self._pending.append(wire)
            self._used = time.monotonic()
            if urgent:
                self._send()
            else:
                self._boxes.setdefault((id(self._worker), self._topic), self)  # if it was dropped
                self._wake.set()

    def _send(self) -> None:
        """Send what is pending as one event (with the lock held: batches keep their order)."""
        pending, self._pending = self._pending, []
        if len(pending) == 1:
            self._worker.log_event(self._topic, pending[0])
        elif pending:
            self._worker.log_event(self._topic, batch_message(pending))

    @classmethod
    def _flush_late(cls) -> None:
        while True:
            cls._wake.wait()
            time.sleep(cls.BATCH_WAIT_S)
            with cls._lock:
                cls._wake.clear()
                now = time.monotonic()
                for key, box in list(cls._boxes.items()):
                    try:
                        box._send()
                    except Exception:  # a worker closing: its runs end (and are recovered) anyway
                        logger.debug("Sending a batch of trial messages failed", exc_info=True)
                    if not box._pending and now - box._used > cls.FORGET_AFTER_S:
                        del cls._boxes[key]


async def _reconnect_again(client: Any) -> None:
    """What distributed's reconnection loop does, retrying on that assertion too, then the
    loop that reads the scheduler's messages, which ended with it."""
    deadline = time.monotonic() + float(getattr(client, "_timeout", None) or 30)
    while client.status == "connecting" and time.monotonic() < deadline:
        try:
            await client._ensure_connected(timeout=max(1.0, deadline - time.monotonic()))
        except (OSError, AssertionError):
            await asyncio.sleep(0.1)
    if client.status == "running":
        client._handle_report_task = asyncio.create_task(client._handle_report())


def _warm(trainable: Any, params: dict[str, Any]) -> None:
    """Runs on a worker: loading the trainable imports what it needs (receiving the
    arguments has done so for the others)."""
    if isinstance(trainable, _Pickled):
        from distributed import get_worker

        trainable.load_on(get_worker())


#: A worker resource no worker offers: a task that asks for it is never placed (until
#: ``distributed.scheduler.no-workers-timeout``, if a cluster sets one, fails it).
_PARKED = "dasktune-parked"


def _parked(*shared: Any) -> None:
    """Never runs: a dependent that keeps scattered values on every worker (see
    :meth:`DaskBackend.warm_up`)."""


class DaskBackend:
    """Runs trial runs as Dask futures on one client."""

    def __init__(self, client: Any, cluster: Any | None = None, started: bool = False) -> None:
        self.client = client
        self.cluster = cluster  # only set for the embedded cluster, which dasktune closes
        self.started_cluster = started  # False when a warm embedded cluster was reused
        self.topic = f"dasktune-{uuid.uuid4().hex[:12]}"
        # Events from trials (wire data: see dasktune._protocol.read_messages), and the
        # run ids of futures that completed.
        self.inbox: queue.SimpleQueue[dict[str, Any] | RunDone] = queue.SimpleQueue()
        self._futures: dict[str, Any] = {}
        self._to_release: list[Any] = []  # futures of ended runs, released once per turn
        self._scattered: list[Any] = []  # the trainable and parameters, released at close
        self._subscribed = False
        self._pickled: tuple[Any, Any] | None = None  # (trainable, what tasks carry for it)
        self._workers: tuple[float, dict[str, dict[str, Any]]] | None = None  # (when, workers)

    # -- setting up ------------------------------------------------------
    @classmethod
    def connect(cls, client: Any | None = None, **cluster_kwargs: Any) -> DaskBackend:
        """Use ``client``, else the default Dask client, else an embedded cluster."""
        from distributed import default_client

        if client is not None:
            return cls(client)
        try:
            return cls(default_client())
        except ValueError:
            pass
        from dasktune.execution.cluster import embedded

        cluster, client, started = embedded.acquire(**cluster_kwargs)
        return cls(client, cluster, started)

    @property
    def dashboard_link(self) -> str | None:
        try:
            return str(self.client.dashboard_link)
        except Exception:  # no dashboard (bokeh missing or disabled)
            return None

    def start(self) -> None:
        """Subscribe to the experiment's events."""
        self.client.subscribe_topic(self.topic, self._on_event)
        self._subscribed = True

    def _on_event(self, event: tuple[float, dict[str, Any]]) -> None:
        # Decoded by the loop (read_messages), not here: this runs in the client's event
        # loop, which on the embedded cluster is the scheduler's too.
        self.inbox.put(event[1])

    def workers(self, max_age: float = 0.0) -> dict[str, dict[str, Any]]:
        """Address -> {"nthreads", "resources"} of the current workers.

        ``max_age``: seconds for which the answer of an earlier call will do.  Starting an
        experiment asked the scheduler three times within milliseconds (the tuner's
        check, the loop's first capacity, the warm-up), each a round trip on the way to
        the first trial.
        """
        now = time.monotonic()
        if self._workers is not None and now - self._workers[0] <= max_age:
            return dict(self._workers[1])
        info = self.client.scheduler_info(n_workers=-1)["workers"]
        workers = {
            addr: {"nthreads": w.get("nthreads", 1), "resources": dict(w.get("resources") or {})}
            for addr, w in info.items()
        }
        self._workers = (now, workers)
        return dict(workers)

    def is_adaptive(self) -> bool:
        """Whether the client's cluster scales itself with its load (``cluster.adapt(...)``)."""
        adaptive = getattr(getattr(self.client, "cluster", None), "_adaptive", None)
        return adaptive is not None and getattr(adaptive, "periodic_callback", None) is not None

    def scatter(self, value: Any) -> Any:
        """Put ``value`` on the cluster once; trials receive the worker-resident object."""
        # As one object: Dask scatters a list, tuple or dict element by element (a future
        # for each of 10,000 indices), and hands back a container of futures.
        [future] = self.client.scatter([value], hash=False)
        self._scattered.append(future)
        return future

    def ship(self, value: Any, pickled: bytes | None = None) -> Any:
        """What to pass to each trial for ``value``: itself if small, else a scattered reference.
        ``pickled``: ``value`` pickled already (the Tuner pickles its trainable when it is made).

        A scatter costs a round trip before the first trial (about 0.25 s on a
        loaded 2-core machine); a small trainable is cheaper sent with each task.
        A small one is pickled once (:class:`_Pickled`; by the Tuner when it was made, or
        here), and its warm-up tasks and trials carry those bytes: cloudpickle walks every
        imported module for a function defined in ``__main__`` (15 ms with torch imported),
        and it did so five times per experiment.
        """
        try:
            carried = _Pickled.of(value, pickled)
        except Exception:  # let Dask report what cannot be pickled
            return value
        if len(carried.data) >= _SHIP_BY_VALUE_BYTES:
            return self.scatter(value)
        self._pickled = (value, carried)
        return value

    # -- running ---------------------------------------------------------
    def submit(
        self,
        spec: _session.RunSpec,
        trainable: Any,
        params: Mapping[str, Any],
        checkpoint_config: tuple[int, bool],
        resources: Mapping[str, float],
    ) -> None:
        self.submit_many([spec], trainable, params, checkpoint_config, resources)

    def submit_many(
        self,
        specs: list[_session.RunSpec],
        trainable: Any,
        params: Mapping[str, Any],
        checkpoint_config: tuple[int, bool],
        resources: Mapping[str, float],
        priority: int = 0,
    ) -> None:
        """Submit several runs as one graph: the scheduler handles one message for them.
        Runs of a higher ``priority`` start before queued runs of a lower one."""
        if not specs:
            return
        futures = self.client.map(
            _trial_task,
            specs,
            trainable=self._carried(trainable),
            params=dict(params),
            checkpoint_config=checkpoint_config,
            key=[f"{TASK_PREFIX}{spec.run_id}" for spec in specs],
            pure=False,
            retries=0,
            resources=dict(resources) or None,
            priority=priority,
        )
        for spec, future in zip(specs, futures, strict=True):
            run_id = spec.run_id
            self._futures[run_id] = future
            future.add_done_callback(lambda f, run_id=run_id: self.inbox.put(RunDone(run_id)))

    def _carried(self, trainable: Any) -> Any:
        """What a task carries for ``trainable``: a scattered future as it is, anything
        else pickled once (see :class:`_Pickled`)."""
        if self._pickled is not None and self._pickled[0] is trainable:
            return self._pickled[1]
        from distributed import Future

        carried = trainable
        if not isinstance(trainable, Future):
            try:
                carried = _Pickled.of(trainable)
            except Exception:  # let Dask report what cannot be pickled, as before
                carried = trainable
        self._pickled = (trainable, carried)
        return carried

    def future_status(self, run_id: str) -> str:
        future = self._futures.get(run_id)
        return future.status if future is not None else "released"

    def fetch_outcome(self, run_id: str) -> RunOutcome | BaseException:
        """The run's outcome from its future (used only if its 'end' event went missing)."""
        future = self._futures[run_id]
        try:
            return future.result(timeout=30)
        except BaseException as exc:  # a lost worker or a cancelled future
            return exc

    def release(self, run_id: str) -> None:
        """Forget the run's future; it is released with the turn's others (:meth:`flush`)."""
        future = self._futures.pop(run_id, None)
        if future is not None:
            self._to_release.append(future)

    def flush(self) -> None:
        """Release the futures of the runs that ended this turn, in one call to the client's
        event loop (a call each woke that loop once per run, from the driver's thread)."""
        futures, self._to_release = self._to_release, []
        if futures:
            try:
                self.client.loop.add_callback(_release_all, futures)
            except Exception as exc:  # the client is closing: nothing left to release
                logger.debug("releasing %d futures failed: %r", len(futures), exc)

    def cancel(self, run_id: str) -> None:
        """Cancel a run that has not started (a running one is stopped through ``deliver``)."""
        future = self._futures.get(run_id)
        if future is not None:
            _quietly(future.cancel)

    def warm_up(self, trainable: Any, params: Mapping[str, Any]) -> None:
        """Load the trainable on every worker now, in parallel, ahead of its first trial.

        Unpickling the trainable imports what it uses (torch, say: seconds); doing it
        on all workers at once keeps that off the critical path of later trials.
        Each warm-up is a high-priority task pinned to its worker, so it runs in the
        worker's thread pool, not its event loop.

        Every worker keeps its copy of the scattered values until the experiment ends.
        Dask's Active Memory Manager (on by default) keeps a key on only as many
        workers as it has waiting dependents, a dependent not yet placed counting for one
        worker (``ReduceReplicas``; dask/distributed#6056): between two trials on a
        worker its copy looks superfluous and is dropped, and the next trial there fetches
        and unpickles it again.  One parked dependent per worker, never placed (it asks for
        a resource no worker has), keeps every copy wanted; ``close`` releases them.
        """
        workers = self.workers(max_age=FRESH_WORKERS_S)
        for address in workers:
            key = f"{WARM_UP_PREFIX}{uuid.uuid4().hex[:8]}"
            self._futures[key] = self.client.submit(
                _warm,
                self._carried(trainable),
                dict(params),
                key=key,
                workers=[address],
                allow_other_workers=False,
                pure=False,
                priority=100,
            )
        shared = [v for v in (trainable, *params.values()) if _is_future(v)]
        if shared:
            for _ in workers:
                key = f"{PARKED_PREFIX}{uuid.uuid4().hex[:8]}"
                self._futures[key] = self.client.submit(
                    _parked, *shared, key=key, pure=False, resources={_PARKED: 1}
                )

    def deliver(self, worker: str, run_id: str, decision: Decision, seq: int = 0) -> None:
        """Send ``decision`` (about the run's result ``seq``) to the run's worker, without
        waiting for it to arrive: a trial that waits for it asks again if it is lost."""
        if self.client.status == "closed":
            return  # the connection is gone for good; the experiment is stopping
        coro = self.client.run(
            _session.deliver,
            run_id,
            decision,
            seq,
            workers=[worker],
            on_error="ignore",
            asynchronous=True,
        )
        loop = self.client.loop.asyncio_loop
        asyncio.run_coroutine_threadsafe(coro, loop).add_done_callback(_log_failure)

    def connected(self) -> bool:
        """Whether the client's connection to the scheduler is up."""
        if getattr(self.client, "status", "running") != "running":
            return False
        comm = getattr(self.client, "scheduler_comm", None)
        return comm is not None and not comm.closed()

    def restart_stalled_reconnection(self) -> bool:
        """Start the client's reconnection again if it gave up without closing.

        distributed's client reconnects in a loop that retries on network errors only.
        When the scheduler's first reply on the new connection comes batched with other
        messages (under load, with events streaming to the client), an assertion in that
        loop fails and ends it, and the client stays "connecting" for ever.  Returns
        whether a new attempt was started.
        """
        client = self.client
        if (
            getattr(client, "status", None) != "connecting"
            or getattr(client, "scheduler_comm", True) is not None  # a reconnection under way
            or getattr(client, "_connecting_to_scheduler", True)
            or not hasattr(client, "_ensure_connected")
            or not hasattr(client, "_handle_report")
        ):
            return False
        client.loop.add_callback(_reconnect_again, client)
        return True

    def resubscribe(self) -> None:
        """Subscribe again after the client reconnected to the scheduler (which may have
        dropped the subscription with the old connection); a second subscription of the
        same topic just replaces the first."""
        if self._subscribed:
            self.client.subscribe_topic(self.topic, self._on_event)

    def restart_workers(self, workers: list[str]) -> bool:
        """Restart worker processes (their nannies start new ones): the way to end a trial
        that ignores its STOP, since Dask cannot interrupt a running task.  Returns whether
        it worked; workers without a nanny cannot be restarted."""
        try:
            self.client.restart_workers(workers, timeout=30, raise_for_error=True)
            return True
        except Exception as exc:
            logger.warning("Could not restart the Dask workers %s: %r", workers, exc)
            return False

    def _wait_until_forgotten(self, keys: list[Any], timeout: float = 2.0) -> None:
        """Wait (a few milliseconds) until the scheduler holds none of ``keys``; a release
        travels in the client's batched stream, which no call waits for."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                held = self.client.sync(self.client.scheduler.who_has, keys=keys)
            except Exception:  # the client lost its scheduler: nothing is held any more
                return
            if not any(held.get(key) for key in keys):
                return
            time.sleep(0.01)
        logger.debug("the scheduler still holds %d scattered keys at close", len(keys))

    def close(self) -> None:
        """Release all futures and, if dasktune started the cluster, shut it down."""
        for run_id in list(self._futures):
            self.cancel(run_id)
            self.release(run_id)
        for future in self._to_release:
            _quietly(future.release)
        self._to_release = []
        # Scattered data too, and until the scheduler has forgotten it: a warm cluster
        # closing at exit with it still held, or with its release still on its way, made
        # the scheduler log an ERROR that it "lost scattered data".
        scattered, self._scattered = self._scattered, []
        for future in scattered:
            _quietly(future.release)
        if scattered:
            self._wait_until_forgotten([future.key for future in scattered])
        if self._subscribed:
            try:
                self.client.unsubscribe_topic(self.topic)
            except Exception:  # the client may already be closing
                logger.debug("unsubscribe failed", exc_info=True)
        if self.cluster is not None:
            from dasktune.execution.cluster import embedded

            embedded.release(self.cluster, self.client)


def _is_future(value: Any) -> bool:
    from distributed import Future

    return isinstance(value, Future)


def _release_all(futures: list[Any]) -> None:
    """In the client's event loop: release each future."""
    for future in futures:
        _quietly(future.release)


def _quietly(call: Any) -> None:
    """Release or cancel a future; a client that lost its scheduler for good cannot, and
    then there is nothing left to release."""
    try:
        call()
    except Exception as exc:
        logger.debug("%s failed: %r", getattr(call, "__name__", call), exc)


def _log_failure(future: Any) -> None:
    if not future.cancelled() and future.exception() is not None:
        logger.debug("Delivering a decision failed: %r", future.exception())
