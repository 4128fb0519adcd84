"""Choosing the Dask cluster: the user's client, the default client, or an embedded one."""

from __future__ import annotations

import logging
import multiprocessing.spawn
import os
from typing import Any

logger = logging.getLogger(__name__)

_NANNY_PROCESS_PREFIX = "Dask Worker process"
_patched = False


def _allow_scripts_without_main_guard() -> None:
    """Let worker processes start without re-running the user's ``__main__``.

    Worker processes are started with multiprocessing's spawn method, which
    re-runs the driver's main script in each child.  A tutorial-style script
    with no ``if __name__ == "__main__":`` guard would then start a second
    experiment inside every worker and fail.  Workers never need the user's
    main module (functions defined there travel by value through
    cloudpickle), so for Dask's worker processes only we drop that step.
    Other processes the user starts are unaffected.
    """
    global _patched
    if _patched:
        return
    original = multiprocessing.spawn.get_preparation_data

    def get_preparation_data(name: str) -> dict[str, Any]:
        data = original(name)
        if str(name).startswith(_NANNY_PROCESS_PREFIX):
            data.pop("init_main_from_path", None)
            data.pop("init_main_from_name", None)
        return data

    multiprocessing.spawn.get_preparation_data = get_preparation_data  # type: ignore[assignment]
    _patched = True


def default_n_workers() -> int:
    """One worker per core the process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def start_local_cluster(n_workers: int | None = None, **kwargs: Any) -> Any:
    """Start the embedded cluster: worker processes with one thread each.

    Extra keyword arguments go to :class:`distributed.LocalCluster`.
    """
    from distributed import LocalCluster

    from dasktune import config

    _allow_scripts_without_main_guard()
    options: dict[str, Any] = dict(
        n_workers=n_workers or config.get("cluster.n-workers") or default_n_workers(),
        threads_per_worker=1,
        processes=True,
        dashboard_address=config.get("cluster.dashboard-address"),
        silence_logs=logging.ERROR,
    )
    options.update(kwargs)
    return LocalCluster(**options)
