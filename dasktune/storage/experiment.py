"""The experiment directory: one folder per trial with params, results and checkpoints.

Layout::

    storage_path/name/
        experiment_state.json
        <trainable>_<index>/        (one per trial, a short deterministic name)
            params.json
            result.json             (JSON lines, one per report)
            progress.csv            (one row per report; late metrics add columns)
            checkpoint_000000/ ...
            error.txt               (on failure)
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from dasktune._util import flatten
from dasktune._validation import is_finite_number as _is_finite_number

__all__ = ["flatten", "TrialRecorder", "check_writable", "trial_dir_name"]


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return repr(value)


def to_json(value: Any) -> str:
    return json.dumps(value, default=_json_default, allow_nan=True)


def trial_dir_name(trainable_name: str, index: int) -> str:
    """A short, deterministic, filesystem-safe directory name for a trial."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", trainable_name)[:40] or "trial"
    return f"{safe}_{index:05d}"


def check_writable(path: str, argument: str = "RunConfig(storage_path=...)") -> None:
    """Raise a clear error unless ``path`` can be created and written."""
    probe = os.path.join(path, ".dasktune_write_test")
    try:
        os.makedirs(path, exist_ok=True)
        with open(probe, "w") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as exc:
        raise ValueError(
            f"{argument}: cannot write to {path!r} ({type(exc).__name__}: {exc.strerror or exc}). "
            "Pass storage_path= a directory you can write; on a multi-machine cluster it must "
            "be a filesystem that every worker can reach."
        ) from None


class TrialRecorder:
    """Writes one trial's files; keeps rows in memory for its metrics dataframe."""

    def __init__(self, trial_dir: str) -> None:
        self.trial_dir = trial_dir
        self.rows: list[dict[str, Any]] = []
        self._columns: list[str] = []
        self._json: io.TextIOWrapper | None = None
        self._csv: io.TextIOWrapper | None = None
        self._writer: Any = None
        self._last_offset = 0
        self._last_result: dict[str, Any] | None = None

    def write_params(self, config: Mapping[str, Any]) -> None:
        os.makedirs(self.trial_dir, exist_ok=True)
        with open(os.path.join(self.trial_dir, "params.json"), "w") as f:
            f.write(to_json(dict(config)))

    def append(self, result: Mapping[str, Any]) -> None:
        """Record one result in result.json and progress.csv, at once."""
        if self._json is None:
            os.makedirs(self.trial_dir, exist_ok=True)
            # A trial's first write starts the file afresh; after a pause it appends.
            mode = "a" if self.rows else "w"
            self._json = open(os.path.join(self.trial_dir, "result.json"), mode)
        self._last_offset = self._json.tell()
        self._last_result = dict(result)
        self._json.write(to_json(self._last_result) + "\n")
        self._json.flush()
        row = flatten(result)
        self.rows.append(row)
        new = [k for k in row if k not in self._columns]
        if new or self._writer is None:
            self._columns.extend(new)
            self._rewrite_csv()
        else:
            self._writer.writerow(row)
            self._csv.flush()  # type: ignore[union-attr]

    def _rewrite_csv(self) -> None:
        """A metric appeared for the first time: rewrite the CSV with the wider header."""
        if self._csv is not None:
            self._csv.close()
        self._csv = open(os.path.join(self.trial_dir, "progress.csv"), "w", newline="")
        self._writer = csv.DictWriter(self._csv, fieldnames=self._columns, restval="")
        self._writer.writeheader()
        self._writer.writerows(self.rows)
        self._csv.flush()

    def write_error(self, text: str) -> str:
        os.makedirs(self.trial_dir, exist_ok=True)
        path = os.path.join(self.trial_dir, "error.txt")
        with open(path, "a") as f:
            f.write(text)
        return path

    def finish(self) -> None:
        """The trial ended normally: mark its last result ``done`` on disk too, then close."""
        last = self._last_result
        if last is not None and not last.get("done"):
            last["done"] = True
            self.rows[-1]["done"] = True
            if self._json is None:
                self._json = open(os.path.join(self.trial_dir, "result.json"), "a")
            self._json.truncate(self._last_offset)
            self._json.seek(self._last_offset)  # (in append mode writes go to the end anyway)
            self._json.write(to_json(last) + "\n")
            self._rewrite_csv()
        self.close()

    def close(self) -> None:
        for handle in (self._json, self._csv):
            if handle is not None:
                handle.close()
        self._json = self._csv = self._writer = None


def delete_checkpoint(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)


def copy_checkpoint(source: str, target: str) -> None:
    """Copy a checkpoint directory (another trial's, for PBT's exploit) to ``target``."""
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target)


def write_jsonl(path: str, records: Iterable[Mapping[str, Any]]) -> None:
    """Replace ``path`` with one JSON line per record, atomically."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.writelines(to_json(dict(r)) + "\n" for r in records)
    os.replace(tmp, path)


def append_jsonl(path: str, record: Mapping[str, Any]) -> None:
    with open(path, "a") as f:
        f.write(to_json(dict(record)) + "\n")


def write_experiment_state(experiment_path: str, state: Mapping[str, Any]) -> None:
    """Atomically replace experiment_state.json."""
    target = os.path.join(experiment_path, "experiment_state.json")
    tmp = target + ".tmp"
    with open(tmp, "w") as f:
        f.write(to_json(dict(state)))
    os.replace(tmp, target)


def is_finite_number(value: Any) -> bool:
    """A finite real number that is not a bool."""
    return _is_finite_number(value)
