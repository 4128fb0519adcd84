"""The embedded cluster's forkserver, forked from the driver when that is safe.

Each test runs a script in a fresh Python process, as a user would: the
pytest process itself runs other threads (its shared cluster), so it never
forks.  A module the driver made up at run time (``driver_only_marker``) tells
whether the workers were forked from the driver: a fresh forkserver cannot
import it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

from tests.integration._processes import run_python

#: Whole scripts and clusters of processes: `pytest -m "not slow"` leaves them out.
pytestmark = pytest.mark.slow

SCRIPT = textwrap.dedent(
    """
    import json, os, sys, threading, types
    import numpy as np
    {prelude}
    import dasktune as tune

    sys.modules["driver_only_marker"] = types.ModuleType("driver_only_marker")
    np.random.rand()  # the driver has drawn from numpy's global state, as sample_from does
    print("UNFLUSHED-BEFORE-FIT", end="")  # stdout is a pipe: this sits in the buffer

    def train(config):
        import sys
        import numpy as np
        {train_body}
        sys.stdout.flush()  # a worker's copy of the driver's stdout buffer would print here
        tune.report({{"forked": "driver_only_marker" in sys.modules, "pid": os.getpid(),
                      "draw": float(np.random.rand()), **extra}})

    run_config = tune.RunConfig(storage_path=os.environ["STORAGE"], verbose=0)
    grid = tune.Tuner(train, param_space={{"i": tune.grid_search([0, 1, 2, 3])}},
                      run_config=run_config).fit()
    {epilogue}
    from multiprocessing import forkserver
    from dasktune.execution.cluster import embedded
    versions = embedded.client.get_versions(check=True)
    agree = all(
        v["packages"] == versions["client"]["packages"]
        and v["host"] == versions["client"]["host"]
        for v in [versions["scheduler"], *versions["workers"].values()]
    )
    print()
    print("RESULT", json.dumps({{"server": forkserver._forkserver._forkserver_pid,
                                "trials": [r.metrics for r in grid],
                                "versions_agree": agree}}))
    """
)

LINUX_ONLY = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the driver is forked on Linux only"
)

TORCH_PRELUDE = """
import torch
torch.randn(300, 300) @ torch.randn(300, 300)  # the driver has started torch's thread pool
"""

TORCH_TRAIN = """
        import torch
        x = torch.randn(64, 1, 28, 28)
        conv = torch.nn.Conv2d(1, 16, 3)
        for _ in range(30):
            conv(x).sum().backward()
        from threadpoolctl import threadpool_info
        native = {(i["internal_api"], i["num_threads"]) for i in threadpool_info()}
        extra = {"threads": torch.get_num_threads(), "native": sorted(native)}
"""


def run_script(tmp_path, prelude="", train_body="extra = {}", epilogue="", env=None):
    script = tmp_path / "experiment.py"
    body = "\n    ".join(textwrap.dedent(train_body).strip().splitlines())  # inside train()
    script.write_text(SCRIPT.format(prelude=prelude, train_body=body, epilogue=epilogue))
    # Two workers, whatever the machine's cores.
    out = run_python(
        [str(script)],
        tmp_path,
        env={"DASK_DASKTUNE__CLUSTER__N_WORKERS": "2", **(env or {})},
        timeout=180,
        unset=("PYTHONUNBUFFERED",),  # a user's stdout to a pipe is block-buffered
    )
    result = json.loads(
        next(line for line in out.stdout.splitlines() if line.startswith("RESULT"))[
            len("RESULT ") :
        ]
    )
    return out, result


def assert_exits(pid: int, within_s: float = 10.0) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    pytest.fail(f"the forkserver (pid {pid}) outlived its driver")


@LINUX_ONLY
def test_workers_fork_from_the_driver_after_torch_ran_there(tmp_path):
    """torch's OpenMP pool started in the driver: forked workers still train, on one thread each."""
    pytest.importorskip("torch")
    out, result = run_script(tmp_path, prelude=TORCH_PRELUDE, train_body=TORCH_TRAIN)
    trials = result["trials"]
    assert [t["forked"] for t in trials] == [True] * 4
    assert {t["threads"] for t in trials} == {1}
    # The driver's OpenMP and BLAS pools read its 2 cores; in a worker they run one thread.
    for t in trials:
        assert {api for api, _ in t["native"]} >= {"openmp", "openblas"}
        assert {n for _, n in t["native"]} == {1}, t["native"]
    # Trials ran in both worker processes, not in the driver or the forkserver.
    assert len({t["pid"] for t in trials}) == 2
    assert result["server"] not in {t["pid"] for t in trials}
    # Workers do not repeat the numpy random state they copied from the driver (Dask reseeds).
    assert len({t["draw"] for t in trials}) == 4
    # What the driver had buffered before the fork is printed once, by the driver.
    assert out.stdout.count("UNFLUSHED-BEFORE-FIT") == 1
    assert "DeprecationWarning" not in out.stderr
    # The versions the driver computed before the fork, which every process inherits,
    # are what the scheduler and workers report, and Dask's own check accepts them.
    assert result["versions_agree"] is True
    assert_exits(result["server"])


DRIVER_STATE = """
import logging, signal, subprocess
logging.basicConfig(level=logging.INFO)  # the driver's logs, not the workers'
signal.signal(signal.SIGTERM, lambda *args: None)  # the driver's own SIGTERM handling
# A helper that runs until its stdin ends: no worker may hold the pipe's write end.
helper = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                          stdin=subprocess.PIPE)
"""

HELPER_ENDS = """
helper.stdin.close()
helper.wait(timeout=30)
"""


@LINUX_ONLY
def test_the_driver_s_files_signal_handlers_and_log_handlers_stay_behind(tmp_path):
    train_body = """
    import signal
    extra = {"sigterm_default": signal.getsignal(signal.SIGTERM) == signal.SIG_DFL}
    """
    out, result = run_script(
        tmp_path, prelude=DRIVER_STATE, train_body=train_body, epilogue=HELPER_ENDS
    )
    trials = result["trials"]
    assert [t["forked"] for t in trials] == [True] * 4
    assert [t["sigterm_default"] for t in trials] == [True] * 4  # a worker dies of SIGTERM
    # The driver logs at INFO; Dask's worker logs stay silenced as in a fresh process.
    assert "distributed.worker" not in out.stderr and "Start worker at" not in out.stderr


def test_a_driver_running_other_threads_starts_a_fresh_forkserver(tmp_path):
    prelude = "threading.Thread(target=threading.Event().wait, daemon=True).start()"
    _, result = run_script(tmp_path, prelude=prelude)
    assert [t["forked"] for t in result["trials"]] == [False] * 4
    assert len({t["draw"] for t in result["trials"]}) == 4
    assert_exits(result["server"])


def test_fork_from_driver_can_be_switched_off(tmp_path):
    _, result = run_script(tmp_path, env={"DASK_DASKTUNE__CLUSTER__FORK_FROM_DRIVER": "False"})
    assert [t["forked"] for t in result["trials"]] == [False] * 4


def test_an_experiment_run_while_its_module_is_imported_fails_at_once(tmp_path):
    """Dask's scheduler would wait for the import that waits for the experiment: a hang."""
    script = tmp_path / "experiment.py"
    script.write_text(SCRIPT.format(prelude="", train_body="extra = {}", epilogue=""))
    start = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-c", "import experiment"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=dict(os.environ, STORAGE=str(tmp_path / "results")),
    )
    assert out.returncode != 0
    assert "module `experiment` is still being imported" in out.stderr
    assert "python experiment.py" in out.stderr
    assert time.monotonic() - start < 60
    assert not (tmp_path / "results").exists()  # failed before anything started
