"""The driver's side of the page: a Callback that publishes compact records, never waiting.

Hooks run on the driver between results, so they only turn each event into a
small record and append it to a buffer (microseconds).  A coroutine on the
Dask client's own event loop sends the buffer to the scheduler's
``dasktune_dashboard_feed`` handler once a second, in one message; the driver
never waits for it, and a scheduler that cannot be reached costs nothing but
the records.  Statuses that no hook announces (a trial paused, or waiting to
run again) and the scheduler's rungs are read in the hooks, at most once a
second; the rungs also go to ``scheduler_rungs.json`` in the experiment
directory, where ``dasktune dashboard PATH`` reads them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import os
import time
from collections import deque
from typing import Any
from urllib.parse import quote, urljoin

from dasktune.callback import Callback
from dasktune.dashboard._follow import RUNGS_FILE, ExperimentFollower, plain_config, result_record
from dasktune.storage.layout import JOURNAL_FILE
from dasktune.trial import Trial

__all__ = ["DashboardCallback", "attach_dashboard", "expected_trials"]

logger = logging.getLogger(__name__)

_MAX_BUFFERED = 200_000  # records kept while the scheduler cannot be reached
_JOURNAL_TAIL_BYTES = 16 * 1024


def expected_trials(param_space: dict[str, Any], tune_config: Any) -> int | None:
    """How many trials the experiment will run, where that is known in advance."""
    from dasktune.search import BasicVariantGenerator
    from dasktune.search.variant_generator import count_variants

    searcher = tune_config.search_alg
    num_samples = tune_config.num_samples
    if isinstance(searcher, BasicVariantGenerator):
        return searcher.total_samples
    if searcher is None:
        try:
            return count_variants(param_space, num_samples) if num_samples >= 0 else None
        except Exception:  # a space the generator will reject itself, with a clear error
            return None
    return num_samples if num_samples >= 0 else None


class DashboardCallback(Callback):
    """Publishes the experiment to the ``/dasktune`` page of its cluster.

    Added by the Tuner when ``dasktune.dashboard.page`` is on (the default).

    Args:
        scheduler: The experiment's trial scheduler, whose :meth:`rungs` are shown.
        total: How many trials the experiment will run, if known.
        interval: Seconds between two messages to the scheduler.
    """

    def __init__(
        self, scheduler: Any = None, total: int | None = None, interval: float = 1.0
    ) -> None:
        self.scheduler = scheduler
        self.total = total
        self.interval = float(interval)
        self.path: str | None = None
        self._buffer: deque[dict[str, Any]] = deque(maxlen=_MAX_BUFFERED)
        self._client: Any = None
        self._registered: concurrent.futures.Future[bool] | None = None
        self._published = False
        self._statuses: dict[str, str] = {}
        self._iterations: dict[str, float] = {}
        self._paused_marked: set[str] = set()
        self._scanned = 0.0
        self._listed = 0  # how many of the experiment's trials (a list that only grows) were seen
        self._open: dict[str, Trial] = {}  # trials not yet finished, which a scan looks at
        self._rungs_json = ""
        self._ended = False

    # -- attaching to a cluster ------------------------------------------------------
    def attach(self, client: Any, experiment_path: str, new_cluster: bool = False) -> str | None:
        """Add the page to ``client``'s cluster; its address, or None where it has none.

        Never raises or waits: the plugin is registered on the client's event loop,
        at once, or on a cluster this experiment has just started (``new_cluster``)
        once its first trial has started (:meth:`_register_soon`): that scheduler
        has still to import bokeh, which slowed every round trip before the first
        trial.  A scheduler without dasktune or bokeh simply gets no page; a warning
        says so (``dasktune dashboard PATH`` still works).
        """
        self.path = experiment_path
        try:
            link = client.dashboard_link
        except Exception:  # no dashboard on this cluster
            return None
        if not link:
            return None
        self._client = client
        asyncio.run_coroutine_threadsafe(self._pump(), client.loop.asyncio_loop)
        if not new_cluster:
            self._register_soon()
        return f"{urljoin(str(link), 'dasktune')}?experiment={quote(experiment_path, safe='')}"

    def _register_soon(self) -> None:
        """Start registering the plugin, once: at :meth:`attach`, or on a new cluster when
        the first trial has started (or the experiment ended first)."""
        if self._client is None or self._registered is not None:
            return
        from dasktune.dashboard._plugin import PLUGIN_NAME, DashboardPlugin

        try:
            self._registered = asyncio.run_coroutine_threadsafe(
                self._register(DashboardPlugin(), PLUGIN_NAME), self._client.loop.asyncio_loop
            )
        except RuntimeError:  # the client's loop has stopped
            pass

    async def _register(self, plugin: Any, name: str) -> bool:
        """Register the scheduler plugin that serves the page; False where it cannot be."""
        from distributed.protocol.pickle import dumps

        try:
            await self._client.scheduler.register_scheduler_plugin(
                plugin=dumps(plugin), name=name, idempotent=plugin.idempotent
            )
        except Exception as exc:  # dasktune or bokeh missing where the scheduler runs
            log = logger.debug if self._ended else logger.warning
            log(
                "The /dasktune page could not be added to the cluster's dashboard "
                "(%s: %s); `dasktune dashboard %s` shows the experiment instead.",
                type(exc).__name__,
                exc,
                self.path,
            )
            return False
        return True

    async def _pump(self) -> None:
        """Send the buffer every ``interval`` seconds until the experiment has ended."""
        while True:
            await asyncio.sleep(self.interval)
            ended = self._ended
            if not await self._send():
                return
            if ended and not self._buffer:
                return

    async def _send(self) -> bool:
        """Send what is buffered; False once the scheduler cannot be reached."""
        if self._registered is None:
            return True  # no trial has started yet: the records wait
        if not await asyncio.wrap_future(self._registered):
            return False
        if not self._buffer:
            return True
        batch = []
        while self._buffer:
            batch.append(self._buffer.popleft())
        try:
            await self._client.scheduler.dasktune_dashboard_feed(
                experiment=self.path, records=batch
            )
        except Exception as exc:  # the cluster closed, or went away
            logger.debug("dasktune dashboard: could not send %d records: %r", len(batch), exc)
            return False
        return True

    def _emit(self, record: dict[str, Any]) -> None:
        self._buffer.append(record)

    # -- hooks ----------------------------------------------------------------------------
    def setup(self, **info: Any) -> None:
        self.path = info.get("experiment_path") or self.path
        if self.path is None:
            return
        head = _journal_head(self.path)
        self._emit(
            {
                "kind": "experiment",
                "name": os.path.basename(self.path),
                "path": self.path,
                "metric": head.get("metric"),
                "mode": head.get("mode"),
                "scheduler": type(self.scheduler).__name__
                if self.scheduler
                else "FIFOScheduler",  # what the Tuner runs when none is given
                "total": self.total,
                "started": time.time(),
            }
        )
        if self._client is not None and head.get("resumed"):
            # Trials of an earlier run of the experiment: their history is in the files.
            follower = ExperimentFollower(self.path, sink=self._emit)
            follower.poll()

    def on_trial_start(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        self._register_soon()
        self._see(trial)
        tid = trial.trial_id
        if (
            self._statuses.get(tid) == "PAUSED"
            and tid not in self._paused_marked
            and tid in self._iterations
        ):
            self._emit(
                {"kind": "mark", "id": tid, "iteration": self._iterations[tid], "what": "paused"}
            )
        self._paused_marked.discard(tid)
        self._status(trial, "RUNNING")
        self._maybe_scan(trials)

    def on_trial_result(
        self, iteration: int, trials: list[Trial], trial: Trial, result: dict[str, Any], **info: Any
    ) -> None:
        self._see(trial)
        record = result_record(trial.trial_id, result)
        self._emit(record)
        self._iterations[trial.trial_id] = record["iteration"]
        if result.get("done"):  # the loop marks the result that a STOP decision answered
            self._emit(
                {
                    "kind": "mark",
                    "id": trial.trial_id,
                    "iteration": record["iteration"],
                    "what": "stopped",
                }
            )
        self._maybe_scan(trials)

    def on_trial_complete(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        self._see(trial)
        self._status(trial, "TERMINATED")
        self._maybe_scan(trials)

    def on_trial_error(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        self._see(trial)
        self._status(trial, "ERROR")
        self._maybe_scan(trials)

    def on_experiment_end(self, trials: list[Trial], **info: Any) -> None:
        self._scan(trials)
        end = _journal_end(self.path) if self.path else {}
        self._emit(
            {
                "kind": "end",
                "status": end.get("status") or "finished",
                "reason": end.get("reason"),
                "time": time.time(),
            }
        )
        self._register_soon()
        self._ended = True
        client = self._client
        if client is not None and getattr(client, "status", "closed") == "running":
            try:  # at once, not at the next tick: the cluster may close soon
                asyncio.run_coroutine_threadsafe(self._send(), client.loop.asyncio_loop)
            except RuntimeError:  # the client's loop has stopped
                pass

    # -- what the hooks do ---------------------------------------------------------------
    def _see(self, trial: Trial) -> None:
        """Publish a trial the first time it shows up (and a config that changed)."""
        tid = trial.trial_id
        if tid not in self._statuses:
            self._statuses[tid] = ""
            self._emit(
                {
                    "kind": "trial",
                    "id": tid,
                    "name": trial.trial_name or tid,
                    "index": _index_of(tid),
                    "config": plain_config(trial.config),
                }
            )

    def _status(self, trial: Trial, status: str) -> None:
        if self._statuses.get(trial.trial_id) != status:
            self._statuses[trial.trial_id] = status
            self._emit({"kind": "status", "id": trial.trial_id, "status": status})

    def _maybe_scan(self, trials: list[Trial]) -> None:
        now = time.monotonic()
        if now - self._scanned >= self.interval:
            self._scanned = now
            self._scan(trials)

    def _scan(self, trials: list[Trial]) -> None:
        """Statuses no hook announced (paused, pending), and the scheduler's rungs.

        Only the trials added since the last scan and those not finished are looked
        at, so that a scan costs what is in flight, not the whole experiment.
        """
        if len(trials) < self._listed:  # not the list seen before: look at all of it
            self._listed = 0
        for trial in trials[self._listed :]:
            self._open[trial.trial_id] = trial
        self._listed = len(trials)
        for trial in list(self._open.values()):
            self._see(trial)
            status = str(trial.status)
            if trial.status.is_finished:
                del self._open[trial.trial_id]
            if status == self._statuses.get(trial.trial_id):
                continue
            if status == "PAUSED" and trial.trial_id in self._iterations:
                self._emit(
                    {
                        "kind": "mark",
                        "id": trial.trial_id,
                        "iteration": self._iterations[trial.trial_id],
                        "what": "paused",
                    }
                )
                self._paused_marked.add(trial.trial_id)
            self._status(trial, status)
        self._publish_rungs()

    def _publish_rungs(self) -> None:
        rungs = self.scheduler.rungs() if self.scheduler is not None else ()
        if not rungs:
            return
        data = {
            "time_attr": getattr(self.scheduler, "time_attr", "training_iteration"),
            "rungs": [
                {
                    "bracket": r.bracket,
                    "milestone": float(r.milestone),
                    "values": {k: float(v) for k, v in r.values.items()},
                    "cutoff": r.cutoff,
                }
                for r in rungs
            ],
        }
        text = json.dumps(data)
        if text == self._rungs_json:
            return
        self._rungs_json = text
        self._emit({"kind": "rungs", **data})
        if self.path is not None:
            target = os.path.join(self.path, RUNGS_FILE)
            try:
                with open(f"{target}.tmp", "w") as f:
                    f.write(text)
                os.replace(f"{target}.tmp", target)
            except OSError as exc:  # the page is a view: never stop the experiment for it
                logger.debug("Could not write %s: %r", target, exc)


def attach_dashboard(
    client: Any, callbacks: list[Callback], experiment_path: str, new_cluster: bool = False
) -> str:
    """Add the page to the cluster for the experiment's DashboardCallback; "; page: URL" or ""."""
    for callback in callbacks:
        if isinstance(callback, DashboardCallback):
            url = callback.attach(client, experiment_path, new_cluster)
            return f"; experiment page: {url}" if url else ""
    return ""


def _index_of(trial_id: str) -> int:
    tail = trial_id.rsplit("_", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def _journal_head(path: str) -> dict[str, Any]:
    """The journal's experiment record, plus whether the experiment was resumed."""
    try:
        with open(os.path.join(path, JOURNAL_FILE), "rb") as f:
            first = f.readline()
            resumed = b'"event": "trial"' in f.read(_JOURNAL_TAIL_BYTES)
        head = json.loads(first)
    except (OSError, ValueError):
        return {}
    head["resumed"] = resumed
    return head


def _journal_end(path: str) -> dict[str, Any]:
    """The journal's last ``end`` record (the loop writes it before the experiment's end)."""
    try:
        with open(os.path.join(path, JOURNAL_FILE), "rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - _JOURNAL_TAIL_BYTES))
            lines = f.read().split(b"\n")
    except OSError:
        return {}
    for line in reversed(lines):
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("event") == "end":
            return record
    return {}
