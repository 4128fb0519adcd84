"""Processes that tests start in their own process groups (a scheduler, workers, a job)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path


def start(command: list[str], log: Path, env: Mapping[str, str] | None = None) -> subprocess.Popen:
    """Start ``command`` in a process group of its own, its output going to ``log``."""
    with open(log, "w") as out:
        return subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=None if env is None else dict(env),
            start_new_session=True,
        )


def stop(processes: list[subprocess.Popen]) -> None:
    """SIGTERM each process group, then SIGKILL the groups that do not end."""
    for process in processes:
        os.killpg(process.pid, signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def dask_scheduler(
    dask_cli: list[str], scheduler_file: Path, log: Path, env: Mapping[str, str] | None = None
) -> subprocess.Popen:
    """``dask scheduler`` on 127.0.0.1 (any port), writing ``scheduler_file``."""
    return start(
        [*dask_cli, "scheduler", "--scheduler-file", str(scheduler_file), "--host", "127.0.0.1",
         "--port", "0", "--dashboard-address", "127.0.0.1:0"],
        log,
        env,
    )  # fmt: skip


def dask_worker(
    dask_cli: list[str],
    scheduler_file: Path,
    log: Path,
    env: Mapping[str, str] | None = None,
    extra: tuple[str, ...] = (),
) -> subprocess.Popen:
    """``dask worker`` with one thread on 127.0.0.1, joining the scheduler of ``scheduler_file``."""
    return start(
        [*dask_cli, "worker", "--scheduler-file", str(scheduler_file), "--nthreads", "1",
         "--host", "127.0.0.1", *extra],
        log,
        env,
    )  # fmt: skip


def wait_for_file(path: Path, log: Path, timeout: float) -> None:
    """Wait until ``path`` exists (a scheduler file); fail with ``log`` if it never does."""
    deadline = time.monotonic() + timeout
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert path.exists(), log.read_text()
