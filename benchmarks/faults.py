"""Faults injected as a user's cluster fails; one table of what survived.

    python benchmarks/faults.py

Each scenario runs a real experiment on a real multi-process Dask cluster (or a
user's script in its own process group, for the driver's own faults), injects one
fault, lets dasktune recover (FailureConfig retries, or Tuner.restore), then
reads the experiment directory back and counts, over all trials: the rows
expected (every iteration once), the rows on disk, and duplicate iterations.
Recovery: for a lost worker or connection, the seconds from the fault until the
trial runs again; for a lost decision, the whole run (its trial waits for the
decision-resend interval, 2 s); for the driver's faults, the restore's whole run.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dasktune as tune
from dasktune.callback import Callback

ITERS = 20


def counting(config: dict[str, Any]) -> None:
    """Counts to ITERS with a checkpoint at each report; resumes from one; may kill itself."""
    if config.get("starts"):  # when each run began, to time how soon a trial runs again
        with open(config["starts"], "a") as f:
            f.write(f"{time.time()}\n")
    start = 0
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with open(os.path.join(checkpoint.path, "it")) as f:
            start = int(f.read())
    for it in range(start + 1, config["iters"] + 1):
        time.sleep(config.get("sleep", 0.05))
        directory = tempfile.mkdtemp()
        with open(os.path.join(directory, "it"), "w") as f:
            f.write(str(it))
        tune.report({"it": it}, checkpoint=tune.Checkpoint.from_directory(directory))
        marker = config.get("kill_marker")
        if marker and it == config["kill_at"] and not os.path.exists(marker):
            with open(marker, "w") as f:
                f.write(str(time.time()))
            os.kill(os.getpid(), signal.SIGKILL)


@dataclass
class Row:
    fault: str
    trials: int
    expected: int
    on_disk: int
    duplicates: int
    recover_s: float | None


def read_back(experiment: Path) -> tuple[int, int, int, list[float]]:
    """(trials, rows on disk, duplicate iterations, result timestamps) of an experiment."""
    trials = rows = duplicates = 0
    stamps: list[float] = []
    for result_file in sorted(experiment.glob("*/result.json")):
        trials += 1
        its = []
        for line in result_file.read_text().splitlines():
            record = json.loads(line)
            its.append(record["training_iteration"])
            stamps.append(record["timestamp"])
        rows += len(its)
        duplicates += len(its) - len(set(its))
    return trials, rows, duplicates, stamps


def rerun_after(fault_at: float, starts: str) -> float | None:
    """Seconds from the fault until a trial's next run began."""
    with open(starts) as f:
        later = [float(line) for line in f if float(line) > fault_at]
    return min(later) - fault_at if later else None


def cluster() -> Any:
    from distributed import Client, LocalCluster

    local = LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        silence_logs=logging.CRITICAL,
    )
    return local, Client(local, set_as_default=False)


def fit(
    client: Any,
    storage: str,
    name: str,
    space: dict[str, Any],
    max_failures: int = 0,
    callbacks: list[Any] | None = None,
    **run_kwargs: Any,
) -> Path:
    tune.Tuner(
        counting,
        param_space=space,
        run_config=tune.RunConfig(
            name=name,
            storage_path=storage,
            verbose=0,
            callbacks=callbacks,
            failure_config=tune.FailureConfig(max_failures),
            **run_kwargs,
        ),
        client=client,
    ).fit()
    return Path(storage) / name


def scenario_worker_killed(storage: str) -> Row:
    marker, starts = os.path.join(storage, "killed"), os.path.join(storage, "starts")
    local, client = cluster()
    with local, client:
        experiment = fit(
            client,
            storage,
            "worker",
            {
                "iters": ITERS,
                "kill_at": 7,
                "kill_marker": marker,
                "starts": starts,
                "x": tune.grid_search([1, 2]),
            },
            max_failures=1,
        )
    fault_at = float(Path(marker).read_text())
    trials, rows, dups, _ = read_back(experiment)
    return Row(
        "worker SIGKILLed mid-trial", trials, 2 * ITERS, rows, dups, rerun_after(fault_at, starts)
    )


class _OnResult(Callback):
    def __init__(self, at: int, action: Callable[[], None]) -> None:
        self.at, self.action, self.fired = at, action, None

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if self.fired is None and result["training_iteration"] == self.at:
            self.fired = time.time()
            self.action()


def scenario_connection(storage: str) -> Row:
    starts = os.path.join(storage, "starts")
    local, client = cluster()
    with local, client:
        cut = _OnResult(8, lambda: client.loop.add_callback(client.scheduler_comm.comm.abort))
        experiment = fit(
            client,
            storage,
            "connection",
            {"iters": ITERS, "starts": starts, "x": tune.grid_search([1, 2])},
            max_failures=3,
            callbacks=[cut],
        )
    trials, rows, dups, _ = read_back(experiment)
    return Row(
        "driver's connection dropped",
        trials,
        2 * ITERS,
        rows,
        dups,
        rerun_after(cut.fired or 0, starts),
    )


class _DropFirstResult:
    name = "drop-one-result"

    def setup(self, worker: Any) -> None:
        from dasktune._protocol import without_messages

        original, state = worker.log_event, {"done": False}

        def lost(message: Any) -> bool:  # alone or in a batch of messages
            if (
                not state["done"]
                and message.get("kind") == "result"
                and message["result"]["training_iteration"] == 5
            ):
                state["done"] = True
                return True
            return False

        def log_event(topic: Any, msg: Any) -> None:
            msg = without_messages(msg, lost) if isinstance(msg, dict) else msg
            if msg is not None:
                original(topic, msg)

        worker.log_event = log_event


def scenario_lost_result(storage: str) -> Row:
    from distributed.diagnostics.plugin import WorkerPlugin

    local, client = cluster()
    with local, client:
        client.register_plugin(type("Drop", (_DropFirstResult, WorkerPlugin), {})())
        experiment = fit(client, storage, "event", {"iters": ITERS})
    trials, rows, dups, _ = read_back(experiment)
    return Row("one result event lost", trials, ITERS, rows, dups, None)


def _drop_first_decision() -> None:
    from dasktune.trainable import session

    original, state = session.deliver, {"done": False}

    def deliver(run_id: str, decision: Any, seq: int = 0) -> None:
        if not state["done"]:
            state["done"] = True
            return
        original(run_id, decision, seq)

    session.deliver = deliver


def scenario_lost_decision(storage: str) -> Row:
    local, client = cluster()
    with local, client:
        client.run(_drop_first_decision)
        start = time.monotonic()
        experiment = fit(
            client,
            storage,
            "decision",
            {"iters": 5, "sleep": 0.0},
            stop=lambda trial_id, result: False,
        )  # waits at every result
        took = time.monotonic() - start
    trials, rows, dups, _ = read_back(experiment)
    return Row("one decision lost (trial waiting), whole run", trials, 5, rows, dups, took)


SCRIPT = """
import os, sys, tempfile, time
import dask
import dasktune as tune
sys.path.insert(0, os.environ["BENCH_DIR"])
from faults import counting
dask.config.set({"dasktune.cluster.keep-alive": 0, "dasktune.cluster.n-workers": 2})
storage, mode = os.environ["STORAGE"], sys.argv[1]
if mode == "restore":
    tune.Tuner.restore(os.path.join(storage, "driver"), counting).fit()
else:
    tune.Tuner(counting, param_space={"iters": 20, "x": tune.grid_search([1, 2, 3, 4])},
               tune_config=tune.TuneConfig(max_concurrent_trials=2),
               run_config=tune.RunConfig(name="driver", storage_path=storage, verbose=0,
                                         resume="auto" if mode == "auto" else None)).fit()
"""


def _script(storage: str, mode: str) -> subprocess.Popen:
    env = dict(os.environ, STORAGE=storage, BENCH_DIR=os.path.dirname(os.path.abspath(__file__)))
    return subprocess.Popen(
        [sys.executable, "-c", SCRIPT, mode],
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _driver_fault(
    storage: str, sig: int, label: str, then: str = "restore", cut_journal: bool = False
) -> Row:
    experiment = Path(storage) / "driver"
    proc = _script(storage, "auto" if then == "auto" else "run")
    first = experiment / "counting_00000" / "result.json"
    deadline = time.monotonic() + 120
    while not (first.exists() and first.read_text().count("\n") >= 10):
        if time.monotonic() > deadline:
            raise RuntimeError("the experiment never got going")
        time.sleep(0.05)
    os.killpg(proc.pid, sig)
    proc.communicate(timeout=60)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    if cut_journal:
        with open(experiment / "journal.jsonl", "a") as f:
            f.write('{"event": "status", "id": "cut sh')
    start = time.monotonic()
    again = _script(storage, then)
    _, err = again.communicate(timeout=300)
    took = time.monotonic() - start
    if again.returncode != 0:
        raise RuntimeError(f"{label}: {err[-2000:]}")
    trials, rows, dups, _ = read_back(experiment)
    return Row(f"{label} (restore's whole run)", trials, 20 * 4, rows, dups, took)


def scenario_two_drivers(storage: str) -> Row:
    procs = [_script(storage, "run") for _ in range(2)]
    for proc in procs:
        proc.communicate(timeout=300)
    trials = rows = dups = 0
    for name in ("driver", "driver_2"):
        t, r, d, _ = read_back(Path(storage) / name)
        trials, rows, dups = trials + t, rows + r, dups + d
    return Row("two drivers, one storage path", trials, 2 * 20 * 4, rows, dups, None)


SCENARIOS: dict[str, Callable[[str], Row]] = {
    "worker": scenario_worker_killed,
    "connection": scenario_connection,
    "event": scenario_lost_result,
    "decision": scenario_lost_decision,
    "driver-kill": lambda s: _driver_fault(s, signal.SIGKILL, "driver SIGKILLed, restored"),
    "driver-term": lambda s: _driver_fault(s, signal.SIGTERM, "job SIGTERMed, restored"),
    "journal-cut": lambda s: _driver_fault(
        s, signal.SIGKILL, "journal's last line cut, restored", cut_journal=True
    ),
    "auto": lambda s: _driver_fault(s, signal.SIGKILL, "driver killed, resume='auto'", then="auto"),
    "two-drivers": scenario_two_drivers,
}


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--only", nargs="*", choices=sorted(SCENARIOS), help="run only these")
    args = parser.parse_args()
    rows = []
    for key, scenario in SCENARIOS.items():
        if args.only and key not in args.only:
            continue
        with tempfile.TemporaryDirectory() as storage:
            rows.append(scenario(storage))
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    print("| fault | trials | rows expected | rows on disk | duplicates | recovery (s) |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        recover = "-" if row.recover_s is None else f"{row.recover_s:.1f}"
        print(
            f"| {row.fault} | {row.trials} | {row.expected} | {row.on_disk} | "
            f"{row.duplicates} | {recover} |"
        )


if __name__ == "__main__":
    main()
