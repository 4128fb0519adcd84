"""Processes that tests start in their own process groups (a scheduler, workers, a job)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
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


def run_python(
    args: list[str],
    cwd: Path,
    env: Mapping[str, str] | None = None,
    timeout: float = 120,
    input: str | None = None,
    unset: tuple[str, ...] = (),
) -> subprocess.CompletedProcess:
    """Run ``python ARGS`` in ``cwd`` as a user's script runs (STORAGE is ``cwd/results``,
    ``env`` added, ``unset`` removed) and check that it exited 0."""
    environ = dict(os.environ, STORAGE=str(cwd / "results"), **(env or {}))
    for name in unset:
        environ.pop(name, None)
    out = subprocess.run(
        [sys.executable, *args],
        input=input,
        capture_output=True,
        text=True,
        env=environ,
        timeout=timeout,
        cwd=cwd,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out


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
