"""What the user sees while an experiment runs: a compact status line and a final table."""

from __future__ import annotations

import math
import numbers
import sys
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any, TextIO

from dasktune._util import AUTO_RESULT_FIELDS as _AUTO_KEYS
from dasktune.trial import Trial, TrialStatus

_ORDER = (TrialStatus.RUNNING, TrialStatus.PENDING, TrialStatus.PAUSED,
          TrialStatus.TERMINATED, TrialStatus.ERROR)
_MAX_ROWS = 20


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        return f"{value:.4g}"
    return str(value)


def _elapsed(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours:d}:{minutes:02d}:{secs:02d}"


class ConsoleReporter:
    """Prints progress every ``interval`` seconds; ``verbose=0`` prints nothing.

    verbose 1: status lines and the final table; 2: also one line per result
    and every trial error.
    """

    def __init__(self, verbose: int, metric: str | None, mode: str | None,
                 interval: float = 5.0, stream: TextIO | None = None) -> None:
        self.verbose = verbose
        self.metric = metric
        self.mode = mode
        self.interval = interval
        self.stream = stream or sys.stdout
        self._start = time.monotonic()
        self._last = self._start

    def _print(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def start(self) -> None:
        self._start = self._last = time.monotonic()

    def note(self, text: str) -> None:
        if self.verbose >= 1:
            self._print(text)

    def status_line(self, trials: Sequence[Trial], controller: Any = None) -> str:
        counts = Counter(t.status for t in trials)
        parts = [f"{counts[s]} {s.value}" for s in _ORDER if counts[s]]
        line = f"[dasktune {_elapsed(time.monotonic() - self._start)}] {len(trials)} trials: " + (
            ", ".join(parts) or "starting")
        best = controller.best_trial(self.metric, self.mode) if controller is not None else None
        if best is not None:
            line += (f" | best {self.metric}={_fmt(best.last_result[self.metric])} "
                     f"({best.trial_name}, iter {best.last_result.get('training_iteration')})")
        return line

    def update(self, controller: Any, active: int, force: bool = False) -> None:
        now = time.monotonic()
        if self.verbose < 1 or (not force and now - self._last < self.interval):
            return
        self._last = now
        self._print(self.status_line(controller.trials, controller))

    def result(self, trial: Trial, result: dict[str, Any]) -> None:
        if self.verbose >= 2:
            shown = ", ".join(f"{k}={_fmt(v)}" for k, v in result.items()
                              if k in (self.metric, "training_iteration"))
            self._print(f"  {trial.trial_name}: {shown}")

    def error(self, trial: Trial, error_type: str) -> None:
        if self.verbose >= 2:
            self._print(f"  {trial.trial_name}: {error_type} (see {trial.local_path}/error.txt)")

    def summary(self, trials: Sequence[Trial]) -> None:
        if self.verbose < 1:
            return
        self._print(self.status_line(trials) + " -- finished")
        self._print(self.table(trials))

    def table(self, trials: Sequence[Trial]) -> str:
        """The final table: status, config and the last metric of each trial, best first."""
        ranked = list(trials)
        if self.metric and self.mode:
            def key(t: Trial) -> float:
                value = t.last_result.get(self.metric)
                if not isinstance(value, numbers.Real) or math.isnan(value):
                    return math.inf
                return -float(value) if self.mode == "max" else float(value)
            ranked.sort(key=key)
        config_keys = sorted({k for t in trials for k, v in t.config.items()
                              if not isinstance(v, (dict, list))})[:6]
        metrics = [self.metric] if self.metric else _reported_metrics(trials)
        headers = ["trial", "status", *config_keys, "iter", *metrics]
        rows = [[t.trial_name, t.status.value, *(_fmt(t.config.get(k, "")) for k in config_keys),
                 _fmt(t.last_result.get("training_iteration", "")),
                 *(_fmt(t.last_result.get(m, "")) for m in metrics)]
                for t in ranked[:_MAX_ROWS]]
        widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
                  for i, h in enumerate(headers)]
        lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)),
                 "  ".join("-" * w for w in widths)]
        lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
        if len(ranked) > _MAX_ROWS:
            lines.append(f"... {len(ranked) - _MAX_ROWS} more trials (ResultGrid.get_dataframe() "
                         "has them all)")
        return "\n".join(lines)


def _reported_metrics(trials: Sequence[Trial], limit: int = 3) -> list[str]:
    """Without a metric to rank by, show the first few numbers the trials reported."""
    names: list[str] = []
    for trial in trials:
        for key, value in trial.last_result.items():
            if (key not in _AUTO_KEYS and key not in names and isinstance(value, numbers.Real)
                    and not isinstance(value, bool)):
                names.append(key)
    return names[:limit]

