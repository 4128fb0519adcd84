"""What the dashboard page shows, kept in memory: records in, a versioned view out.

Both sources of the page produce the same small records (plain dicts that
msgpack and JSON carry): the driver's :class:`~dasktune.dashboard.DashboardCallback`
publishes them to the cluster, and :class:`~dasktune.dashboard._follow.ExperimentFollower`
reads them from an experiment directory.  :class:`ExperimentModel` folds them;
every change stamps the trial with a new version, so a page asks "what changed
since version v" and sends only that to the browser.  No I/O, no Bokeh here.

Records (``"kind"`` names each)::

    experiment  name, path, metric, mode, scheduler, total (trials expected, or None), started
    trial       id, name, index, config (flattened, JSON scalars)
    status      id, status
    result      id, iteration, metrics ({name: number}, flattened), time
    mark        id, iteration, what ("stopped" or "paused")
    rungs       time_attr, rungs ([{bracket, milestone, values {trial id: value}, cutoff}])
    end         status, time
"""

from __future__ import annotations

import bisect
import math
import time
from array import array
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ExperimentModel", "TrialView", "STATUSES"]

#: Trial states in the order the page lists them.
STATUSES = ("RUNNING", "PENDING", "PAUSED", "TERMINATED", "ERROR")
_FINISHED = frozenset({"TERMINATED", "ERROR"})


@dataclass
class TrialView:
    """One trial as the page shows it; ``version`` is the model's version at its last change."""

    trial_id: str
    name: str
    index: int
    config: dict[str, Any] = field(default_factory=dict)
    status: str = "PENDING"
    iteration: float = 0.0
    last: dict[str, float] = field(default_factory=dict)
    # metric -> (iterations, values), ordered by iteration
    curves: dict[str, tuple[array, array]] = field(default_factory=dict)
    marks: list[tuple[float, str]] = field(default_factory=list)  # (iteration, "stopped"/"paused")
    version: int = 0

    def curve(self, metric: str) -> tuple[array, array]:
        return self.curves.get(metric) or (array("d"), array("d"))

    def best(self, metric: str, mode: str | None) -> float | None:
        """The best finite value of ``metric`` (the largest unless ``mode`` is "min")."""
        values = [v for v in self.curve(metric)[1] if math.isfinite(v)]
        if not values:
            return None
        return min(values) if mode == "min" else max(values)


class ExperimentModel:
    """One experiment's trials, results, marks and rungs, as records describe them."""

    def __init__(self, name: str = "", path: str = "") -> None:
        self.name = name
        self.path = path
        self.metric: str | None = None
        self.mode: str | None = None
        self.scheduler = ""
        self.total: int | None = None
        self.started: float | None = None  # wall-clock seconds
        self.last_activity: float | None = None
        self.ended: dict[str, Any] | None = None
        self.time_attr = "training_iteration"
        self.rungs: list[dict[str, Any]] = []
        self.trials: dict[str, TrialView] = {}
        self.metrics: list[str] = []  # every metric name seen, in order of appearance
        self.version = 0
        self.meta_version = 0  # experiment, rungs and end records

    # -- folding records ----------------------------------------------------
    def apply_all(self, records: Iterable[Mapping[str, Any]]) -> None:
        for record in records:
            self.apply(record)

    def apply(self, record: Mapping[str, Any]) -> None:
        """Fold one record in; records of unknown kinds or trials are ignored."""
        kind = record.get("kind")
        handler = getattr(self, f"_on_{kind}", None)
        if handler is not None:
            handler(record)

    def _bump(self, trial: TrialView | None = None) -> None:
        self.version += 1
        if trial is None:
            self.meta_version = self.version
        else:
            trial.version = self.version

    def _on_experiment(self, record: Mapping[str, Any]) -> None:
        self.name = record.get("name") or self.name
        self.path = record.get("path") or self.path
        metric, mode = record.get("metric"), record.get("mode")
        self.metric = metric if isinstance(metric, str) else self.metric
        self.mode = mode if mode in ("min", "max") else self.mode
        self.scheduler = record.get("scheduler") or self.scheduler
        total = record.get("total")
        self.total = int(total) if isinstance(total, (int, float)) and total >= 0 else self.total
        started = record.get("started")
        if isinstance(started, (int, float)):
            self.started = float(started) if self.started is None else min(self.started, started)
        self.ended = None  # a resumed experiment runs again
        self._bump()

    def _on_trial(self, record: Mapping[str, Any]) -> None:
        tid = record["id"]
        trial = self.trials.get(tid)
        if trial is None:
            trial = self.trials[tid] = TrialView(
                tid, record.get("name") or tid, int(record.get("index", len(self.trials)))
            )
        trial.config = dict(record.get("config") or {})
        self._bump(trial)

    def _on_status(self, record: Mapping[str, Any]) -> None:
        trial = self.trials.get(record.get("id", ""))
        if trial is None or trial.status == record["status"]:
            return
        trial.status = record["status"]
        self._bump(trial)

    def _on_result(self, record: Mapping[str, Any]) -> None:
        trial = self.trials.get(record.get("id", ""))
        if trial is None:
            return
        x = float(record["iteration"])
        for name, value in (record.get("metrics") or {}).items():
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            if name not in self.metrics:
                self.metrics.append(name)
            xs, ys = trial.curves.setdefault(name, (array("d"), array("d")))
            _insert(xs, ys, x, float(value))
        if x >= trial.iteration:
            trial.iteration = x
            trial.last.update(
                {
                    k: float(v)
                    for k, v in (record.get("metrics") or {}).items()
                    if isinstance(v, (int, float)) and not isinstance(v, bool)
                }
            )
        if trial.status in ("PENDING", "PAUSED"):
            trial.status = "RUNNING"  # it reports, so it runs (a resume is not journaled)
        when = record.get("time")
        if isinstance(when, (int, float)):
            self.last_activity = max(self.last_activity or when, when)
            if self.started is None:
                self.started = float(when)
        self._bump(trial)

    def _on_mark(self, record: Mapping[str, Any]) -> None:
        trial = self.trials.get(record.get("id", ""))
        if trial is None:
            return
        mark = (float(record["iteration"]), str(record["what"]))
        if mark not in trial.marks:
            trial.marks.append(mark)
            self._bump(trial)

    def _on_rungs(self, record: Mapping[str, Any]) -> None:
        self.time_attr = record.get("time_attr") or self.time_attr
        self.rungs = [dict(r) for r in record.get("rungs") or []]
        self._bump()

    def _on_end(self, record: Mapping[str, Any]) -> None:
        self.ended = dict(record)
        when = record.get("time")
        if isinstance(when, (int, float)):
            self.last_activity = max(self.last_activity or when, when)
        self._bump()

    # -- reading ------------------------------------------------------------
    def changed_since(self, version: int) -> list[TrialView]:
        """The trials changed after ``version``, in their order of creation."""
        return sorted(
            (t for t in self.trials.values() if t.version > version), key=lambda t: t.index
        )

    def ordered(self) -> list[TrialView]:
        return sorted(self.trials.values(), key=lambda t: t.index)

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(STATUSES, 0)
        for trial in self.trials.values():
            counts[trial.status] = counts.get(trial.status, 0) + 1
        return counts

    def elapsed(self, now: float | None = None) -> float | None:
        """Seconds since the experiment started: until now while it runs, else its length."""
        if self.started is None:
            return None
        if self.ended is not None or now is None:
            end = self.last_activity or self.started
        else:
            end = now
        return max(0.0, end - self.started)

    def best(
        self, metric: str | None = None, mode: str | None = None
    ) -> tuple[TrialView, float] | None:
        """The trial with the best last value of ``metric`` (Ray's default scope) and the value."""
        metric = metric or self.metric
        mode = mode or self.mode or "max"
        found: tuple[TrialView, float] | None = None
        for trial in self.trials.values():
            value = trial.last.get(metric) if metric else None
            if value is None or not math.isfinite(value):
                continue
            if found is None or (value < found[1] if mode == "min" else value > found[1]):
                found = (trial, value)
        return found

    def running(self) -> int:
        return sum(1 for t in self.trials.values() if t.status == "RUNNING")

    def finished(self) -> bool:
        return self.ended is not None

    def now(self) -> float:
        return time.time()


def _insert(xs: array, ys: array, x: float, y: float) -> None:
    """Add the point (x, y) keeping ``xs`` sorted; a point at an existing x replaces it."""
    if not xs or x > xs[-1]:
        xs.append(x)
        ys.append(y)
        return
    at = bisect.bisect_left(xs, x)
    if at < len(xs) and xs[at] == x:
        ys[at] = y
    else:
        xs.insert(at, x)
        ys.insert(at, y)


def finished_status(status: str) -> bool:
    return status in _FINISHED
