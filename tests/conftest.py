"""Shared fixtures.  Integration tests use one real multi-process Dask cluster."""

from __future__ import annotations

import logging

import pytest


@pytest.fixture(scope="session")
def client():
    """A real LocalCluster: 2 worker processes, 1 thread each, like the embedded default."""
    from distributed import Client, LocalCluster

    from dasktune.execution.cluster import _allow_scripts_without_main_guard

    _allow_scripts_without_main_guard()
    cluster = LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=":0",
        silence_logs=logging.ERROR,
    )
    with Client(cluster, set_as_default=False) as c:
        yield c
    cluster.close()


@pytest.fixture
def storage(tmp_path):
    return str(tmp_path / "results")
