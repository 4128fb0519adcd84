"""The embedded cluster's Dask scheduler, in a process of its own.

In a plain ``LocalCluster`` the scheduler runs on the driver's event loop, so
it shares one interpreter lock with dasktune's coordinator: at thousands of
short trials each waits for the other (see BENCHMARKS.md, "Scale").  Here the
scheduler runs in a child process started the way Dask's nannies start
workers (:class:`distributed.process.AsyncProcess`, from the forkserver when
that is the start method), so it starts without a fresh interpreter's imports
and exits by itself if the driver dies.  The driver talks to it over the
same local connections its workers use.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from typing import Any

from distributed.deploy.spec import ProcessInterface

from dasktune._protocol import is_trial_key

__all__ = ["PROCESS_NAME", "SchedulerProcess"]

#: The child's name; the embedded cluster does not re-run the user's ``__main__`` in it.
PROCESS_NAME = "dasktune-scheduler"

logger = logging.getLogger(__name__)

#: How long the scheduler waits for trials to run before it adds Dask's dashboard.
_DASHBOARD_WAIT_S = 2.0


class SchedulerProcess(ProcessInterface):
    """A :class:`distributed.Scheduler` in a child process, for a ``SpecCluster``.

    Args:
        start_timeout: Seconds to wait for the scheduler's address.
        log_level: Level of the ``distributed`` loggers in the child process.
        heartbeat_interval: Seconds between a worker's heartbeats, where Dask asks for
            them more often; None: Dask's own pace (see :func:`_pace_heartbeats`).
        **options: Keyword arguments of :class:`distributed.Scheduler`.
    """

    def __init__(
        self,
        start_timeout: float = 60.0,
        log_level: int = logging.ERROR,
        heartbeat_interval: float | None = None,
        **options: Any,
    ) -> None:
        self.options = options
        self.start_timeout = float(start_timeout)
        self.log_level = int(log_level)
        self.heartbeat_interval = heartbeat_interval
        self.process: Any = None
        super().__init__()

    async def start(self) -> None:
        from distributed.process import AsyncProcess
        from distributed.utils import get_mp_context

        reader, writer = get_mp_context().Pipe(duplex=False)
        self.process = AsyncProcess(
            target=_serve,
            name=PROCESS_NAME,
            kwargs={
                "options": self.options,
                "report": writer,
                "log_level": self.log_level,
                "heartbeat_interval": self.heartbeat_interval,
            },
        )
        try:
            await self.process.start()
            writer.close()  # the child holds its own copy
            loop = asyncio.get_running_loop()
            reply = await loop.run_in_executor(None, _receive, reader, self.start_timeout)
        finally:
            reader.close()
        if not isinstance(reply, str):
            await self._stop()
            raise RuntimeError(
                f"The embedded cluster's scheduler process failed to start: {reply} "
                "(dasktune.cluster.scheduler-process: false starts it in the driver instead)."
            )
        self.address = reply
        await super().start()

    async def close(self) -> None:
        await self._stop()
        await super().close()

    async def _stop(self, timeout: float = 10.0) -> None:
        """Wait for the process to end (the cluster has asked the scheduler to
        terminate before this), then end it."""
        process, self.process = self.process, None
        if process is None:
            return
        try:
            await process.join(timeout)
        except (asyncio.TimeoutError, TimeoutError):
            logger.debug("the scheduler process did not end in %s s; killing it", timeout)
        if process.exitcode is None:
            try:
                await process.kill()
                await process.join(timeout)
            except Exception:  # gone in between
                logger.debug("killing the scheduler process failed", exc_info=True)
        process.close()


def _receive(reader: Any, timeout: float) -> str | Exception:
    """The child's address, or why it has none, within ``timeout`` seconds."""
    try:
        if not reader.poll(timeout):
            return TimeoutError(f"no address after {timeout:g} s")
        return reader.recv()
    except EOFError:
        return RuntimeError("the process exited before it listened")


def _serve(
    options: dict[str, Any], report: Any, log_level: int, heartbeat_interval: float | None = None
) -> None:
    """The child: start the scheduler, send its address, serve until it is closed.

    Ctrl-C and SIGTERM reach the whole process group, and the driver winds the
    experiment down on them, through this scheduler: so it ignores both, and ends
    when the driver closes the cluster or, failing that, when the driver has gone.
    """
    import signal

    from distributed import Scheduler

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    logging.getLogger("distributed").setLevel(log_level)

    # Dask's dashboard imports bokeh (0.4 s, most of the scheduler's start): the scheduler
    # starts without it, sends its address so that the workers start meanwhile, and adds
    # the dashboard once bokeh is imported, on the same HTTP server and address.
    dashboard = options.get("dashboard")
    if dashboard is None:
        dashboard = bool(options.get("dashboard_address"))

    async def serve() -> None:
        try:
            scheduler = await Scheduler(**{**options, "dashboard": False})
        except Exception as exc:
            report.send(RuntimeError(f"{type(exc).__name__}: {exc}"))
            raise
        if heartbeat_interval is not None:
            _pace_heartbeats(scheduler, heartbeat_interval)
        _check_timeouts_at_their_pace(scheduler)
        report.send(scheduler.address)
        report.close()
        if dashboard:
            await _when_trials_run(scheduler, _DASHBOARD_WAIT_S)
            await _add_dashboard(scheduler, options.get("http_prefix") or "/")
        await scheduler.finished()

    asyncio.run(serve())


async def _when_trials_run(scheduler: Any, timeout: float) -> None:
    """Return once a worker runs a trial, or after ``timeout`` seconds.

    Bokeh's import holds the scheduler's interpreter for most of 0.6 s, and each
    round trip in that time waits for it: the workers' registrations, the client's
    connection, the experiment's first questions and submissions.  Once trials run,
    nothing waits on the scheduler (and on a busy machine the import takes a core
    from the trials whenever it happens).
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if any(is_trial_key(ts.key) for ws in scheduler.workers.values() for ts in ws.processing):
            return
        await asyncio.sleep(0.05)


async def _add_dashboard(scheduler: Any, prefix: str) -> None:
    """Dask's own dashboard pages, added to a running scheduler's HTTP server."""
    try:  # in a thread: the scheduler keeps answering its workers meanwhile
        from dasktune.dashboard._imports import import_page_modules

        await asyncio.to_thread(import_page_modules)
        import distributed.dashboard.scheduler as module

        module.connect(scheduler.http_application, scheduler.http_server, scheduler, prefix=prefix)
    except Exception as exc:  # bokeh missing or refused: the cluster works without its pages
        logger.warning("The Dask dashboard could not be started: %r", exc)


#: How often the embedded scheduler checks for idleness and for tasks no worker can run,
#: where no timeout is configured for either (Dask checks four times a second regardless).
UNTIMED_CHECK_MS = 1000


def _check_timeouts_at_their_pace(scheduler: Any) -> None:
    """Slow Dask's idle and no-worker checks to once a second where they time nothing.

    Each check is a wake-up of the scheduler's process (a millisecond of a core here,
    taken from the trials, also while the cluster waits for the next fit).  Without
    ``distributed.scheduler.idle-timeout`` the idle check only keeps the time the
    scheduler became idle, and without ``no-workers-timeout`` the other returns at once;
    where either is set, Dask's own pace is kept.
    """
    untimed = {
        "idle-timeout": not scheduler.idle_timeout,
        "no-workers-timeout": scheduler.no_workers_timeout is None,
    }
    for name, slow in untimed.items():
        callback = scheduler.periodic_callbacks.get(name)
        if slow and callback is not None:
            callback.callback_time = max(callback.callback_time, UNTIMED_CHECK_MS)


def _pace_heartbeats(scheduler: Any, seconds: float) -> None:
    """Have each worker send a heartbeat at most once every ``seconds``.

    A worker sends its next heartbeat after the interval its last one's reply names,
    which Dask sets by the number of workers alone: two a second up to ten workers.
    Each heartbeat gathers and serialises the worker's metrics, some milliseconds of its
    interpreter, which a running trial waits for, and the scheduler's too.  Only the
    reply's interval changes here: how the scheduler finds a lost worker does not (a
    closed connection at once, and ``distributed.scheduler.worker-ttl``, which Dask
    keeps above ten of its own intervals).
    """
    handler = scheduler.handlers["heartbeat_worker"]

    def paced(reply: Any) -> Any:
        if isinstance(reply, dict) and "heartbeat-interval" in reply:
            reply["heartbeat-interval"] = max(reply["heartbeat-interval"], seconds)
        return reply

    @functools.wraps(handler)
    def heartbeat_worker(*args: Any, **kwargs: Any) -> Any:
        reply = handler(*args, **kwargs)
        if inspect.isawaitable(reply):  # a coroutine in other versions of distributed

            async def later() -> Any:
                return paced(await reply)

            return later()
        return paced(reply)

    scheduler.handlers["heartbeat_worker"] = heartbeat_worker
