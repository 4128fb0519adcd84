"""Which cluster a Tuner runs on: embedded, the default client, or the one it is given."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap

import pytest

import dasktune as tune
from tests.integration._processes import run_python

GUARDLESS_SCRIPT = textwrap.dedent(
    """
    import os
    import dasktune as tune

    def train(config):
        tune.report({"score": config["x"] * 2, "pid": os.getpid()})

    tuner = tune.Tuner(
        train,
        param_space={"x": tune.grid_search([1, 2, 3, 4])},
        tune_config=tune.TuneConfig(metric="score", mode="max"),
        run_config=tune.RunConfig(storage_path=os.environ["STORAGE"], name="guardless"),
    )
    results = tuner.fit()
    best = results.get_best_result()
    print("BEST", best.config["x"], best.metrics["score"])
    pids = {r.metrics["pid"] for r in results}
    print("PIDS", len(pids), os.getpid() in pids)
    """
)


def test_script_without_main_guard_runs_on_the_embedded_cluster(tmp_path):
    script = tmp_path / "tutorial_style.py"
    script.write_text(GUARDLESS_SCRIPT)
    out = run_python([str(script)], tmp_path)
    assert "BEST 4 8" in out.stdout
    # Trials ran in worker processes, not in the driver.
    pids_line = next(line for line in out.stdout.splitlines() if line.startswith("PIDS"))
    assert pids_line.split()[2] == "False"
    assert "started a local Dask cluster with" in out.stdout and "dashboard: http" in out.stdout
    assert "bootstrapping" not in out.stderr


def double(config):
    tune.report({"score": config["x"] * 2, "worker": os.getpid()})


def test_default_client_is_used_when_no_client_is_given(tmp_path):
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=1,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            silence_logs=logging.ERROR,
        ) as cluster,
        Client(cluster) as c,
    ):
        worker_pids = set(c.run(os.getpid).values())
        grid = tune.Tuner(
            double,
            param_space={"x": 3},
            run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0),
        ).fit()
        assert grid[0].metrics["worker"] in worker_pids
        # The user's cluster stays up after fit.
        assert c.submit(sum, [1, 2]).result() == 3


def test_script_from_stdin_like_a_notebook_cell(tmp_path):
    """Interactive __main__ (no __file__), as in Jupyter: functions travel by value."""
    out = run_python(["-"], tmp_path, input=GUARDLESS_SCRIPT)
    assert "BEST 4 8" in out.stdout


def cancellable(config):
    for i in range(200):
        import time

        time.sleep(0.02)
        tune.report({"i": i})


def test_cancelling_a_running_trial_future_stops_it_at_its_next_report(tmp_path):
    """Future.cancel() alone cannot interrupt Python code; the session notices it instead."""
    import time

    from distributed import Client, LocalCluster

    from dasktune.trainable import session

    with (
        LocalCluster(
            n_workers=1,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            silence_logs=logging.ERROR,
        ) as cluster,
        Client(cluster) as c,
    ):

        def task():
            from distributed import get_worker

            worker = get_worker()
            key = worker.get_current_task()
            spec = session.RunSpec(
                run_id="r1",
                context=session.TrialContext("t", "t", str(tmp_path / "t"), "e", str(tmp_path)),
                config={},
                topic="x",
                decision_points=(),
            )
            s = session.Session(
                spec,
                emit=lambda m: None,
                cancelled=lambda: worker.state.tasks[key].state == "cancelled",
            )
            session.set_session(s)
            try:
                cancellable({})
            except session.StopTrial:
                return s.iteration
            return -1

        future = c.submit(task, pure=False)
        time.sleep(1.0)
        future.cancel()
        # The worker slot frees quickly: the next task runs well before the 4 s the trial would
        # take.
        start = time.monotonic()
        assert c.submit(lambda: 1, pure=False).result(timeout=10) == 1
        assert time.monotonic() - start < 2.0


INTERRUPTED_SCRIPT = textwrap.dedent(
    """
    import os, time
    import dasktune as tune

    def slow(config):
        for i in range(10_000):
            time.sleep(0.05)
            tune.report({"i": i})

    try:
        tune.Tuner(slow, param_space={"x": tune.grid_search([1, 2])},
                   run_config=tune.RunConfig(storage_path=os.environ["STORAGE"], name="ctrl_c",
                                             verbose=0)).fit()
    except KeyboardInterrupt as exc:
        grid = exc.result_grid
        print("INTERRUPTED", len(grid), min(len(r.metrics_dataframe) for r in grid))
    """
)


def test_ctrl_c_stops_the_experiment_promptly_and_keeps_the_results(tmp_path):
    import signal
    import time

    storage = tmp_path / "results"
    script = tmp_path / "interrupted.py"
    script.write_text(INTERRUPTED_SCRIPT)
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env=dict(os.environ, STORAGE=str(storage)),
        start_new_session=True,
    )  # its own process group, like a terminal's
    deadline = time.monotonic() + 60
    results = storage / "ctrl_c"
    while time.monotonic() < deadline:  # wait until both trials have reported
        files = list(results.glob("*/result.json")) if results.exists() else []
        if len(files) == 2 and all(f.stat().st_size > 0 for f in files):
            break
        time.sleep(0.1)
    else:
        proc.kill()
        raise AssertionError("the trials never reported")
    start = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the driver and its workers alike
    out, err = proc.communicate(timeout=30)
    assert time.monotonic() - start < 15, "Ctrl-C took too long"
    line = next((row for row in out.splitlines() if row.startswith("INTERRUPTED")), None)
    assert line is not None, err[-3000:]
    _, trials, rows = line.split()
    assert int(trials) == 2 and int(rows) >= 1
    assert "Traceback" not in err, err[-3000:]  # quiet: no worker died of the Ctrl-C
    # What was computed is on disk, one line per result the ResultGrid holds.
    for trial_dir in results.iterdir():
        if trial_dir.is_dir():
            assert (trial_dir / "result.json").read_text().count("\n") >= 1


def crashes_its_worker(config):
    tune.report({"score": config["x"]})
    if config["x"] == 2:
        import time

        time.sleep(0.2)  # dies during its next epoch (results go out in 2 ms batches)
        os._exit(1)  # a segfault or the OOM killer, as far as Dask can tell
    tune.report({"score": config["x"] + 10})


def test_a_trial_that_kills_its_worker_fails_alone(tmp_path):
    import time

    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            silence_logs=logging.CRITICAL,
        ) as cluster,
        Client(cluster) as c,
    ):
        start = time.monotonic()
        grid = tune.Tuner(
            crashes_its_worker,
            param_space={"x": tune.grid_search([1, 2, 3])},
            run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0),
            client=c,
        ).fit()
        assert time.monotonic() - start < 120
    by_x = {r.config["x"]: r for r in grid}
    assert by_x[1].metrics["score"] == 11 and by_x[3].metrics["score"] == 13
    assert by_x[2].status == "ERROR"
    # dasktune, not Dask's allowed-failures, decides: no silent re-run, FailureConfig says 0.
    assert "WorkerLost" in str(by_x[2].error) and "worker process died" in str(by_x[2].error)
    runs = [p for p in os.listdir(by_x[2].path) if p.startswith(".run-")]
    assert len(runs) == 1, f"the trial ran {len(runs)} times: {runs}"
    # Its result before the crash is kept, once.
    assert by_x[2].metrics_dataframe["score"].tolist() == [2]


# -- safe defaults: the embedded cluster listens on this machine only; TLS on request -------

LISTENING_SCRIPT = textwrap.dedent(
    """
    import json, os
    import psutil
    import dasktune as tune
    from dasktune.execution.cluster import embedded

    def train(config):
        tune.report({"score": 1})

    tune.Tuner(train, param_space={"x": 1},
               run_config=tune.RunConfig(storage_path=os.environ["STORAGE"], verbose=0)).fit()
    # The cluster stays up for the keep-alive: look at what its processes listen on.
    me = psutil.Process()
    processes = [me] + me.children(recursive=True)
    listening = [f"{c.laddr.ip}:{c.laddr.port}" for p in processes
                 for c in p.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
    print(json.dumps({
        "listening": listening,
        "scheduler": embedded.cluster.scheduler_address,
        "workers": sorted(embedded.client.scheduler_info()["workers"]),
        "dashboard": embedded.client.dashboard_link,
    }))
    """
)


def run_script_for_json(tmp_path, script, **env):
    """Run ``script`` in a fresh Python; the JSON object its last line printed."""
    import json

    out = run_python(["-c", script], tmp_path, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_embedded_cluster_listens_on_localhost_only(tmp_path):
    seen = run_script_for_json(tmp_path, LISTENING_SCRIPT)
    # Scheduler, dashboard, and each worker and nanny: all bound to 127.0.0.1.
    assert len(seen["listening"]) >= 2 + 2 * len(seen["workers"]), seen
    assert {address.rsplit(":", 1)[0] for address in seen["listening"]} == {"127.0.0.1"}, seen
    assert seen["scheduler"].startswith("tcp://127.0.0.1:")
    assert all(w.startswith("tcp://127.0.0.1:") for w in seen["workers"])
    dashboard_port = seen["dashboard"].split(":")[2].split("/")[0]
    assert seen["dashboard"].startswith("http://127.0.0.1:")
    assert f"127.0.0.1:{dashboard_port}" in seen["listening"]


def test_the_host_setting_opts_in_to_another_interface():
    import dask

    from dasktune.execution.cluster import cluster_options

    assert cluster_options(1)["host"] == "127.0.0.1"
    assert cluster_options(1)["dashboard_address"] == "127.0.0.1:0"
    with dask.config.set({"dasktune.cluster.host": "0.0.0.0"}):
        assert cluster_options(1)["host"] == "0.0.0.0"
        assert cluster_options(1)["dashboard_address"] == "0.0.0.0:0"
    with dask.config.set({"dasktune.cluster.dashboard-address": ":8787"}):
        assert cluster_options(1)["dashboard_address"] == ":8787", "an explicit address wins"


TLS_SCRIPT = textwrap.dedent(
    """
    import gc, os, time
    import dask
    from distributed import Client
    from distributed.security import Security
    import dasktune as tune
    from dasktune.execution.cluster import embedded

    def train(config):
        tune.report({"score": config["x"] * 2})

    dask.config.set({"dasktune.cluster.security": True})
    grid = tune.Tuner(train, param_space={"x": tune.grid_search([1, 2])},
                      run_config=tune.RunConfig(storage_path=os.environ["STORAGE"],
                                                verbose=0)).fit()
    print("SCORES", sorted(r.metrics["score"] for r in grid))
    address = embedded.cluster.scheduler_address
    print("ADDRESS", address)
    attempts = {
        "no certificates": dict(address=address),
        "plain tcp": dict(address=address.replace("tls://", "tcp://")),
        "other certificates": dict(address=address, security=Security.temporary()),
    }
    for name, kwargs in attempts.items():
        start = time.monotonic()
        try:
            # A refused handshake is retried until the timeout, which can pass twice (the
            # connection, then the client's start): 2 s keeps a refusal within 10 s.
            Client(timeout=2, set_as_default=False, **kwargs).close()
            print("CONNECTED", name)
        except Exception as exc:
            print("REFUSED", name, round(time.monotonic() - start, 1), type(exc).__name__)
            del exc
        # The refused client is garbage, and its __del__ closes it: here, not inside the next
        # client's start, where it deadlocks on distributed's loop-runner lock (seen in CI).
        gc.collect()
    """
)


def test_tls_on_request_keeps_out_clients_without_the_certificates(tmp_path):
    pytest.importorskip("cryptography")
    out = run_python(["-c", TLS_SCRIPT], tmp_path)
    lines = out.stdout.splitlines()
    assert "SCORES [2, 4]" in lines, out.stdout  # trials ran over TLS
    assert any(line.startswith("ADDRESS tls://127.0.0.1:") for line in lines), out.stdout
    refused = [line.split() for line in lines if line.startswith("REFUSED")]
    assert not [line for line in lines if line.startswith("CONNECTED")], out.stdout
    assert len(refused) == 3, out.stdout
    assert all(float(words[-2]) < 10 for words in refused), out.stdout


def test_tls_without_cryptography_says_what_to_install(tmp_path):
    import dask

    try:
        import cryptography  # noqa: F401 - only whether it imports

        pytest.skip("cryptography is installed")
    except ImportError:
        pass
    with (
        dask.config.set({"dasktune.cluster.security": True}),
        pytest.raises(
            ImportError,
            match=r"dasktune.cluster.security is true.*"
            r"pip install cryptography",
        ),
    ):
        tune.Tuner(
            double,
            param_space={"x": 1},
            run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0),
        ).fit()


def test_asking_for_a_cuda_cluster_where_it_cannot_start_fails_at_once(tmp_path):
    import time

    import dask

    from dasktune.execution._gpu import probe_gpus

    probe = probe_gpus()
    if probe.count and probe.dask_cuda:
        pytest.skip("this machine can start a CUDA cluster")

    start = time.monotonic()
    with (
        dask.config.set({"dasktune.cluster.kind": "cuda"}),
        pytest.raises(
            (ImportError, RuntimeError),
            match=r"dasktune.cluster.kind is 'cuda'.*(dasktune\[cuda\]|no GPU)",
        ),
    ):
        tune.Tuner(
            double,
            param_space={"x": 1},
            run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0),
        ).fit()
    assert time.monotonic() - start < 10


# -- the embedded cluster's scheduler runs in a process of its own --------------------------

SCHEDULER_SCRIPT = textwrap.dedent(
    """
    import json, os, sys, time, urllib.request
    from urllib.parse import urljoin
    import dask
    import dasktune as tune
    from dasktune.execution.cluster import embedded

    def train(config):
        tune.report({"score": config["x"] * 2})

    def dask_status(link):
        deadline = time.monotonic() + 60
        while True:  # the pages come up once the scheduler has imported bokeh
            try:
                return urllib.request.urlopen(link, timeout=30).status
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def heartbeat_ms(client):
        deadline = time.monotonic() + 60
        # A worker starts with a heartbeat a second; the reply to its first names the pace.
        # Each worker's first reply comes in its own time: wait for all of them.
        def pace(dask_worker):
            return dask_worker.periodic_callbacks["heartbeat"].callback_time
        while True:
            paces = sorted(set(client.run(pace).values()))
            if 1000 not in paces or time.monotonic() > deadline:
                return paces
            time.sleep(0.2)

    grid = tune.Tuner(train, param_space={"x": tune.grid_search([1, 2, 3])},
                      run_config=tune.RunConfig(storage_path=os.environ["STORAGE"],
                                                verbose=0)).fit()
    client = embedded.client
    print(json.dumps({
        "driver": os.getpid(),
        "scheduler": client.run_on_scheduler(os.getpid),
        "scores": sorted(r.metrics["score"] for r in grid),
        "page": dask_status(urljoin(client.dashboard_link, "dasktune")),
        "status_page": dask_status(client.dashboard_link),
        "worker_profiler": sorted(set(client.run(
            lambda: dask.config.get("distributed.worker.profile.enabled")).values())),
        "scheduler_tick": client.run_on_scheduler(
            lambda: dask.config.get("distributed.admin.tick.interval")),
        "scheduler_monitor": client.run_on_scheduler(
            lambda: dask.config.get("distributed.admin.system-monitor.interval")),
        "heartbeat_ms": heartbeat_ms(client),
        "scheduler_checks_ms": client.run_on_scheduler(lambda dask_scheduler: [
            dask_scheduler.periodic_callbacks[name].callback_time
            for name in ("idle-timeout", "no-workers-timeout")]),
        "dashboard_sessions_ms": client.run_on_scheduler(lambda: [
            dask.config.get("distributed.scheduler.dashboard.bokeh-application")[name]
            for name in ("keep_alive_milliseconds", "check_unused_sessions_milliseconds")]),
        "cluster_sync_s": embedded.cluster._sync_interval,
    }), flush=True)
    if sys.argv[1:] == ["wait"]:
        time.sleep(300)  # the test kills this driver
    """
)


def _run_scheduler_script(tmp_path, setting, **env):
    # The script inspects the cluster after fit(); on a loaded machine that can outlast the
    # cluster's 30 s keep-alive (bokeh's first import alone, uncompiled, takes seconds).
    env.setdefault("DASK_DASKTUNE__CLUSTER__KEEP_ALIVE", "600")
    return run_script_for_json(
        tmp_path, SCHEDULER_SCRIPT, DASK_DASKTUNE__CLUSTER__SCHEDULER_PROCESS=setting, **env
    )


def test_the_embedded_scheduler_runs_in_a_process_of_its_own(tmp_path):
    seen = _run_scheduler_script(tmp_path, "true")
    assert seen["scores"] == [2, 4, 6]
    assert seen["scheduler"] != seen["driver"]
    assert seen["page"] == 200, "the /dasktune page is served by the scheduler in its process"
    assert seen["status_page"] == 200, "and so is Dask's own dashboard"
    # dasktune.cluster.dask-config reached the workers and the scheduler's process.
    assert seen["worker_profiler"] == [False]
    assert seen["scheduler_tick"] == "1s"
    assert seen["scheduler_monitor"] == "2s"
    # dasktune.cluster.heartbeat-interval: a heartbeat every 2 s, where Dask asks for 0.5 s.
    assert seen["heartbeat_ms"] == [2000]
    # Checks that time nothing here, the dashboard's session upkeep and the cluster's
    # reminders of its name wake the scheduler less often than Dask's 4, 2 and 1 a second.
    assert seen["scheduler_checks_ms"] == [1000, 1000]
    assert seen["dashboard_sessions_ms"] == [10000, 10000]
    assert seen["cluster_sync_s"] == 10


def test_the_user_s_dask_settings_win_over_the_embedded_cluster_s(tmp_path):
    seen = _run_scheduler_script(
        tmp_path,
        "true",
        DASK_DISTRIBUTED__ADMIN__TICK__INTERVAL="250ms",
        DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED="True",
        DASK_DASKTUNE__CLUSTER__HEARTBEAT_INTERVAL="None",
        DASK_DISTRIBUTED__SCHEDULER__IDLE_TIMEOUT="1h",
    )
    assert seen["scores"] == [2, 4, 6]
    assert seen["scheduler_tick"] == "250ms"
    assert seen["worker_profiler"] == [True]
    assert seen["heartbeat_ms"] == [500]  # Dask's own pace for a small cluster
    assert seen["scheduler_checks_ms"] == [250, 1000], "an idle timeout keeps Dask's pace"


def test_the_scheduler_process_can_be_switched_off(tmp_path):
    seen = _run_scheduler_script(tmp_path, "false")
    assert seen["scores"] == [2, 4, 6]
    assert seen["status_page"] == 200
    assert seen["scheduler"] == seen["driver"]


def test_the_scheduler_process_ends_when_the_driver_is_killed(tmp_path):
    import json
    import signal
    import time

    import psutil

    env = dict(os.environ, STORAGE=str(tmp_path / "results"))
    driver = subprocess.Popen(
        [sys.executable, "-c", SCHEDULER_SCRIPT, "wait"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
        start_new_session=True,
    )
    try:
        assert driver.stdout is not None
        line = driver.stdout.readline()
        assert line, driver.stderr.read() if driver.stderr else ""
        seen = json.loads(line)
        scheduler = psutil.Process(seen["scheduler"])
        assert scheduler.pid != driver.pid
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=30)
        deadline = time.monotonic() + 30
        while scheduler.is_running() and scheduler.status() != psutil.STATUS_ZOMBIE:
            assert time.monotonic() < deadline, "the scheduler outlived its driver"
            time.sleep(0.1)
    finally:
        try:
            os.killpg(driver.pid, signal.SIGKILL)  # whatever is left of the group
        except ProcessLookupError:
            pass
        driver.wait(timeout=30)


def test_a_scheduler_that_cannot_start_fails_at_once_with_its_reason():
    import socket
    import time

    from dasktune.execution.cluster import start_local_cluster

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        start = time.monotonic()
        with pytest.raises(RuntimeError, match=r"scheduler process failed to start.*"):
            start_local_cluster(n_workers=1, scheduler_port=port)
        assert time.monotonic() - start < 30


def test_embedded_dask_settings_leave_out_what_the_user_set_and_refuse_a_non_mapping():
    import dask

    from dasktune.execution.cluster import embedded_dask_settings

    ours = embedded_dask_settings()
    assert ours["distributed.worker.profile.enabled"] is False
    with dask.config.set({"distributed.admin.tick.interval": "50ms"}):
        assert "distributed.admin.tick.interval" not in embedded_dask_settings()
    with dask.config.set({"dasktune.cluster.dask-config": {}}):
        assert embedded_dask_settings() == {}
    with (
        dask.config.set({"dasktune.cluster.dask-config": ["profile off"]}),
        pytest.raises(TypeError, match=r"dasktune.cluster.dask-config is \['profile off'\]"),
    ):
        embedded_dask_settings()


@pytest.mark.parametrize("bad", [0, -1, "0s", "fast", True, [2]])
def test_a_heartbeat_interval_that_is_not_a_positive_number_is_refused(bad):
    from dasktune.execution.cluster import heartbeat_interval

    with pytest.raises(ValueError, match=r"dasktune.cluster.heartbeat-interval is .*null"):
        heartbeat_interval(bad)
    assert heartbeat_interval(None) is None
    assert heartbeat_interval(2) == 2.0 and heartbeat_interval(0.5) == 0.5
    assert heartbeat_interval("2s") == 2.0 and heartbeat_interval("500ms") == 0.5


def test_the_workers_read_at_a_start_serve_the_next_calls_that_allow_it(client):
    """Starting an experiment needs the workers three times within milliseconds; one round
    trip to the scheduler answers them all, and a call that allows no age asks again."""
    from dasktune.execution._dask import DaskBackend

    backend = DaskBackend(client)
    asked = []
    real = client.scheduler_info

    def scheduler_info(*args, **kwargs):
        asked.append(1)
        return real(*args, **kwargs)

    client.scheduler_info = scheduler_info
    try:
        first = backend.workers()
        assert len(first) == 2 and all(w["nthreads"] == 1 for w in first.values())
        first.clear()  # the caller's copy: the remembered answer stays whole
        assert backend.workers(max_age=60) == backend.workers(max_age=60)
        assert len(backend.workers(max_age=60)) == 2
        assert len(asked) == 1
        assert len(backend.workers()) == 2
        assert len(asked) == 2
    finally:
        del client.scheduler_info


CPUS_SCRIPT = textwrap.dedent(
    """
    import functools, os, time
    import dasktune as tune

    def train(config, data_dir=None):
        start = time.time()
        time.sleep(0.3)
        try:
            import torch
            threads = torch.get_num_threads()
        except ImportError:
            threads = int(os.environ["OMP_NUM_THREADS"])
        tune.report({"start": start, "end": time.time(), "threads": threads,
                     "env": int(os.environ["OMP_NUM_THREADS"]), "pid": os.getpid()})

    def show(label, analysis):
        df = analysis.dataframe().sort_values("start")
        overlap = any(b < a for a, b in zip(df["end"][:-1], df["start"][1:]))
        print(label, len(df), sorted(set(df["threads"])), sorted(set(df["env"])),
              df["pid"].nunique(), overlap)

    cores = len(os.sched_getaffinity(0))
    where = dict(storage_path=os.environ["STORAGE"], verbose=1)
    # The PyTorch tutorial's shape: a partial, and resources_per_trial.
    show("ALL", tune.run(functools.partial(train, data_dir="."), num_samples=3,
                         resources_per_trial={"cpu": cores}, **where))
    show("MORE", tune.run(train, num_samples=2, resources_per_trial={"cpu": cores + 2},
                          **where))
    show("ONE", tune.run(train, num_samples=2 * cores, **where))
    """
)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two cores")
def test_trials_asking_for_several_cpus_get_them_on_the_embedded_cluster(tmp_path):
    """As in Ray Tune: a trial that asks for the machine's every core runs alone, its native
    thread pools as big as its request; the next experiment, asking for one CPU a trial,
    gets a cluster of one-thread workers again (the thread count does not leak into it)."""
    cores = len(os.sched_getaffinity(0))
    script = tmp_path / "cpus.py"
    script.write_text(CPUS_SCRIPT)
    out = run_python([str(script)], tmp_path, timeout=240, unset=("OMP_NUM_THREADS",))
    lines = {line.split()[0]: line.split(maxsplit=1)[1] for line in out.stdout.splitlines()}
    # Three trials, each on `cores` threads, one after another in one worker process.
    assert lines["ALL"] == f"3 [{cores}] [{cores}] 1 False", out.stdout
    assert f"1 worker, each running one trial on {cores} threads;" in out.stdout
    # More than the machine has: one at a time, on every core, and said so.
    assert lines["MORE"] == f"2 [{cores}] [{cores}] 1 False", out.stdout
    assert f"(trials ask for {cores + 2} CPUs; this machine has {cores})" in out.stdout
    # One CPU a trial: one-thread workers, one per core, running trials side by side.
    assert lines["ONE"].startswith(f"{2 * cores} [1] [1] "), out.stdout
    assert int(lines["ONE"].split()[3]) > 1, out.stdout
    assert f"started a local Dask cluster with {cores} workers;" in out.stdout
    assert "advertise no CPU resource" not in out.stdout


CHILD_PROCESSES_SCRIPT = textwrap.dedent(
    """
    import multiprocessing, os
    import torch
    from torch.utils.data import DataLoader, TensorDataset
    import dasktune as tune

    print("MAIN RUNS IN", os.getpid(), flush=True)

    def train(config):
        loader = DataLoader(TensorDataset(torch.arange(64.0)), batch_size=8, num_workers=2)
        total = sum(float(batch[0].sum()) for batch in loader)
        with multiprocessing.Pool(2) as pool:
            absolute = sum(pool.map(abs, range(-5, 0)))
        tune.report({"total": total, "absolute": absolute})

    grid = tune.Tuner(train, param_space={"x": tune.grid_search([1, 2])},
                      run_config=tune.RunConfig(storage_path=os.environ["STORAGE"],
                                                verbose=0)).fit()
    for result in grid:
        print("RESULT", result.metrics.get("total"), result.metrics.get("absolute"),
              type(result.error).__name__)
    """
)


def test_trials_may_start_processes_in_a_script_without_main_guard(tmp_path):
    """PyTorch's DataLoader(num_workers=2) and a multiprocessing.Pool inside a trial, as
    under Ray Tune: Dask's daemonic workers refused ("daemonic processes are not allowed
    to have children"), and a forkserver child would have run the script again."""
    pytest.importorskip("torch")
    out = run_python(["-c", CHILD_PROCESSES_SCRIPT], tmp_path, timeout=180)
    assert out.stdout.count("RESULT 2016.0 15 NoneType") == 2, out.stdout + out.stderr[-3000:]
    assert out.stdout.count("MAIN RUNS IN") == 1, "the script ran again in a child"


QUIET_EXIT_SCRIPT = textwrap.dedent(
    """
    import os
    import numpy as np
    import dasktune as tune

    DATA = np.random.rand(200_000)  # module-level data: the trainable is scattered

    def train(config, extra=None, pair=None, names=None):
        tune.report({"m": float(DATA.sum() + extra.sum()) + sum(pair) + len(names)})

    grid = tune.Tuner(tune.with_parameters(train, extra=np.ones(100_000), pair=(1, 2),
                                           names={"a": 1}),
                      param_space={"x": tune.grid_search([1, 2])},
                      run_config=tune.RunConfig(storage_path=os.environ["STORAGE"],
                                                verbose=0)).fit()
    print("ERRORS", sum(r.error is not None for r in grid))
    """
)


def test_a_script_that_scattered_its_trainable_exits_without_error_lines(tmp_path):
    """The cluster closes at exit, still warm: the scattered trainable and parameters are
    released first, not reported by Dask's scheduler as lost data."""
    out = run_python(["-c", QUIET_EXIT_SCRIPT], tmp_path)
    assert "ERRORS 0" in out.stdout
    assert "ERROR" not in out.stderr and "lose scattered data" not in out.stderr, out.stderr
