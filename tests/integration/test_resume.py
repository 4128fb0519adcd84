"""Resuming after the driver died, was signalled or ran out of disk: real processes throughout.

Each experiment runs as a user's script in its own process group (like a batch job)
on the embedded cluster; it is killed the way batch systems and crashes kill, then
continued with ``Tuner.restore`` or ``RunConfig(resume="auto")``.  Every trial must
end with each iteration on record exactly once, finished trials must not run again,
and no process may be left running.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import dasktune as tune

SCRIPT = textwrap.dedent(
    """
    import json, os, signal, sys, tempfile, time
    import dask
    import dasktune as tune

    workers = int(os.environ.get("WORKERS", 2))
    dask.config.set({"dasktune.cluster.keep-alive": 0, "dasktune.cluster.n-workers": workers})
    os.environ["DRIVER_PID"] = str(os.getpid())  # the workers are started later: they inherit it

    def train(config):
        iters = 8 * config["x"]
        start = 0
        checkpoint = tune.get_checkpoint()
        if checkpoint is not None:
            with open(os.path.join(checkpoint.path, "it")) as f:
                start = int(f.read())
        for it in range(start + 1, iters + 1):
            if str(it) == os.environ.get("DIE_AT") and config["x"] == 2 and checkpoint is None:
                # A batch system's SIGTERM reaches the driver, and kills this worker
                os.kill(int(os.environ["DRIVER_PID"]), signal.SIGTERM)
                os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(0.1)
            directory = tempfile.mkdtemp()
            with open(os.path.join(directory, "it"), "w") as f:
                f.write(str(it))
            tune.report({"it": it}, checkpoint=tune.Checkpoint.from_directory(directory))

    class Ended(tune.Callback):
        def on_experiment_end(self, trials, **info):
            with open(os.environ["ENDED"], "w") as f:
                f.write(",".join(str(t.status) for t in trials))

    storage, name, mode = os.environ["STORAGE"], os.environ.get("NAME", "exp"), sys.argv[1]
    if mode == "restore":
        grid = tune.Tuner.restore(os.path.join(storage, name), train).fit()
    else:
        grid = tune.Tuner(
            train, param_space={"x": tune.grid_search([1, 2, 3, 4])},
            tune_config=tune.TuneConfig(max_concurrent_trials=2),
            run_config=tune.RunConfig(
                name=name, storage_path=storage, verbose=0, callbacks=[Ended()],
                checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
                resume="auto" if mode == "auto" else None),
        ).fit()
    print("RESULTS", json.dumps({r.config["x"]: r.metrics_dataframe["it"].tolist() for r in grid}))
    print("STATUSES", json.dumps({r.config["x"]: r.status for r in grid}))
    """
)


def start(tmp_path: Path, mode: str, **env: str) -> subprocess.Popen:
    script = tmp_path / "experiment.py"
    script.write_text(SCRIPT)
    environment = {
        **os.environ,
        "STORAGE": str(tmp_path / "results"),
        "ENDED": str(tmp_path / f"ended-{mode}"),
        **env,
    }
    return subprocess.Popen(
        [sys.executable, str(script), mode],
        cwd=tmp_path,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )  # its own process group, like a batch job


def rows(experiment: Path, x: int) -> int:
    """How many results trial x has on disk (x=1 is trial 0, ...)."""
    path = experiment / f"train_{x - 1:05d}" / "result.json"
    return path.read_text().count("\n") if path.exists() else 0


def wait_until(condition, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("the experiment did not get there in time")
        time.sleep(0.05)


def stop_group(proc: subprocess.Popen, sig: int) -> tuple[str, str]:
    os.killpg(proc.pid, sig)
    out, err = proc.communicate(timeout=60)
    assert_group_gone(proc.pid)
    return out, err


def assert_group_gone(pgid: int) -> None:
    """Nothing of the experiment's process group still runs (workers included)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    raise AssertionError(f"processes of group {pgid} were still running")


def finish(tmp_path: Path, mode: str, **env: str) -> dict:
    proc = start(tmp_path, mode, **env)
    out, err = proc.communicate(timeout=180)
    assert_group_gone(proc.pid)
    assert proc.returncode == 0, err[-4000:]
    line = next(row for row in out.splitlines() if row.startswith("RESULTS"))
    statuses = json.loads(next(row for row in out.splitlines() if row.startswith("STATUSES"))[9:])
    return {
        "rows": {int(k): v for k, v in json.loads(line[8:]).items()},
        "statuses": {int(k): v for k, v in statuses.items()},
    }


def assert_complete(outcome: dict) -> None:
    for x, its in outcome["rows"].items():
        assert its == list(range(1, 8 * x + 1)), f"trial x={x}: {its}"
    assert set(outcome["statuses"].values()) == {"TERMINATED"}, outcome["statuses"]


def runs_of(experiment: Path, x: int) -> int:
    return len(list((experiment / f"train_{x - 1:05d}").glob(".run-*.jsonl")))


def journaled_ended(experiment: Path, x: int) -> bool:
    """Whether the journal says trial x ended (its 8 rows on disk do not: its run ends
    after its last report, and a driver killed in between rightly runs it again)."""
    path = experiment / "journal.jsonl"
    if not path.exists():
        return False
    suffix = f"_{x - 1:05d}"
    for line in path.read_text().splitlines():
        if '"status"' in line and line.endswith("}"):
            entry = json.loads(line)
            if entry.get("status") == "TERMINATED" and str(entry.get("id", "")).endswith(suffix):
                return True
    return False


def cut_short_midway(
    tmp_path: Path, sig: int, mode: str = "run"
) -> tuple[subprocess.Popen, str, str]:
    """Run the experiment until trial x=1 finished and x=2 is midway, then send ``sig``."""
    experiment = tmp_path / "results" / "exp"
    proc = start(tmp_path, mode)
    wait_until(lambda: journaled_ended(experiment, 1) and rows(experiment, 2) >= 4)
    out, err = stop_group(proc, sig)
    return proc, out, err


def test_the_driver_killed_and_restored(tmp_path):
    experiment = tmp_path / "results" / "exp"
    cut_short_midway(tmp_path, signal.SIGKILL)
    assert tune.Tuner.can_restore(experiment)
    assert runs_of(experiment, 1) == 1
    outcome = finish(tmp_path, "restore")
    assert_complete(outcome)
    assert runs_of(experiment, 1) == 1, "a finished trial is not run again"
    assert runs_of(experiment, 2) == 2, "the trial cut short continued in a second run"


def test_sigterm_to_the_whole_job_winds_down_saves_and_restores(tmp_path):
    experiment = tmp_path / "results" / "exp"
    start_time = time.monotonic()
    proc, out, err = cut_short_midway(tmp_path, signal.SIGTERM)
    assert time.monotonic() - start_time < 60
    assert proc.returncode == 128 + signal.SIGTERM, err[-3000:]
    assert "stopped by SIGTERM" in out + err
    # on_experiment_end ran, and the trials cut short are waiting to run on, not TERMINATED.
    statuses = (tmp_path / "ended-run").read_text().split(",")
    assert statuses[0] == "TERMINATED" and "PENDING" in statuses
    journal = (experiment / "journal.jsonl").read_text().splitlines()
    assert json.loads(journal[-1])["status"] == "interrupted"
    outcome = finish(tmp_path, "restore")
    assert_complete(outcome)
    assert runs_of(experiment, 1) == 1


def test_a_trial_whose_worker_died_of_the_job_s_sigterm_runs_on_after_restore(tmp_path):
    # With a third worker free, Dask runs the dead worker's task again at once; that run
    # finds the trial's run claimed and does nothing, and the driver, stopping, must not
    # count that as the trial failing.
    proc = start(tmp_path, "run", DIE_AT="4", WORKERS="3")
    out, err = proc.communicate(timeout=120)
    assert_group_gone(proc.pid)
    assert proc.returncode == 128 + signal.SIGTERM, err[-3000:]
    statuses = (tmp_path / "ended-run").read_text().split(",")
    assert statuses[1] == "PENDING" and set(statuses) <= {"PENDING", "TERMINATED"}, statuses
    outcome = finish(tmp_path, "restore", WORKERS="3")
    assert_complete(outcome)


def test_a_journal_whose_last_line_was_cut_still_restores(tmp_path):
    experiment = tmp_path / "results" / "exp"
    cut_short_midway(tmp_path, signal.SIGKILL)
    with open(experiment / "journal.jsonl", "a") as f:
        f.write('{"event": "status", "id": "half a li')  # the driver died writing this
    outcome = finish(tmp_path, "restore")
    assert_complete(outcome)


def test_resume_auto_continues_when_the_same_script_runs_again(tmp_path):
    experiment = tmp_path / "results" / "exp"
    cut_short_midway(tmp_path, signal.SIGKILL, mode="auto")
    outcome = finish(tmp_path, "auto")
    assert_complete(outcome)
    assert runs_of(experiment, 1) == 1
    assert not (tmp_path / "results" / "exp_2").exists(), "it continued, not started anew"


def test_two_drivers_on_one_storage_path_get_two_directories(tmp_path):
    procs = [
        start(tmp_path, "run", NAME="same", ENDED=str(tmp_path / f"ended-{i}")) for i in range(2)
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err[-3000:]
        assert_group_gone(proc.pid)
    for name in ("same", "same_2"):
        for x in (1, 2, 3, 4):
            lines = tmp_path / "results" / name / f"train_{x - 1:05d}" / "result.json"
            its = [json.loads(row)["it"] for row in lines.read_text().splitlines()]
            assert its == list(range(1, 8 * x + 1)), (name, x, its)


def test_a_storage_path_that_fills_up(client, tmp_path):
    """A real full disk (a small tmpfs): a clear error, results kept, no torn line, no run left."""
    from dasktune.storage.files import StorageError

    full = tmp_path / "full"
    full.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(full)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    try:

        def chatty(config):
            for i in range(10_000):
                tune.report({"i": i, "padding": "x" * 2000})

        with pytest.raises(
            StorageError,
            match=r"Could not write .*No space left.*disk under "
            r"the storage path is full",
        ) as info:
            tune.Tuner(
                chatty,
                param_space={"x": tune.grid_search([1, 2])},
                run_config=tune.RunConfig(name="full", storage_path=str(full), verbose=0),
                client=client,
            ).fit()
        grid = info.value.result_grid
        assert len(grid) == 2 and sum(len(r.metrics_dataframe) for r in grid) > 0
        for result_file in full.glob("full/*/result.json"):
            for line in result_file.read_text().splitlines():
                json.loads(line)  # every line whole
        deadline = time.monotonic() + 20
        while client.processing() and any(client.processing().values()):
            assert time.monotonic() < deadline, client.processing()
            time.sleep(0.1)
    finally:
        subprocess.run(["umount", "-l", str(full)], capture_output=True)


HUNG_SCRIPT = textwrap.dedent(
    """
    import time
    import dask
    import dasktune as tune

    dask.config.set({"dasktune.stop-grace": 2, "dasktune.cluster.n-workers": 2})

    def hangs(config):
        tune.report({"x": 1})
        if config["hang"]:
            time.sleep(10_000)  # a hung data loader: it never reaches tune.report again
        for i in range(50):
            time.sleep(0.05)
            tune.report({"x": i})

    start = time.monotonic()
    grid = tune.Tuner(hangs, param_space={"hang": tune.grid_search([True, False])},
                      tune_config=tune.TuneConfig(time_budget_s=1),
                      run_config=tune.RunConfig(verbose=0)).fit()
    print("FIRST", round(time.monotonic() - start, 1),
          sorted((r.config["hang"], r.status, type(r.error).__name__) for r in grid))
    print("ERROR", [str(r.error).splitlines()[0] for r in grid if r.error][0])
    start = time.monotonic()
    again = tune.Tuner(hangs, param_space={"hang": False},
                       run_config=tune.RunConfig(verbose=0)).fit()
    print("SECOND", round(time.monotonic() - start, 1), again[0].status,
          len(again[0].metrics_dataframe))
    """
)


def test_a_hung_trial_is_ended_and_the_next_fit_gets_a_healthy_cluster(tmp_path):
    """time_budget_s stops the experiment; a trial that never reports again has its worker
    restarted after dasktune.stop-grace, and the warm embedded cluster serves the next fit."""
    script = tmp_path / "hung.py"
    script.write_text(HUNG_SCRIPT)
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        cwd=tmp_path,
        text=True,
        env={**os.environ, "HOME": str(tmp_path)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    out, err = proc.communicate(timeout=120)
    assert_group_gone(proc.pid)
    assert proc.returncode == 0, err[-4000:]
    lines = {line.split(" ", 1)[0]: line for line in out.splitlines()}
    first = lines["FIRST"]
    assert "(False, 'TERMINATED', 'NoneType')" in first
    assert "(True, 'ERROR', 'TrialError')" in first
    assert float(first.split()[1]) < 30, "stop-grace is 2 s, not the old 30 s"
    assert "StopTimeout" in lines["ERROR"] and "restarted" in out + err
    second = lines["SECOND"].split()
    assert second[2] == "TERMINATED" and int(second[3]) == 51
