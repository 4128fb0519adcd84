"""End-to-end experiments on a real multi-process Dask cluster."""

from __future__ import annotations

import collections
import os
import threading
import time
import traceback

import pandas as pd
import pytest

import dasktune as tune
from dasktune.schedulers import ASHAScheduler
from dasktune.stopper import MaximumIterationStopper


def run(
    trainable,
    client,
    storage,
    *,
    param_space=None,
    verbose=0,
    stop=None,
    checkpoint_config=None,
    failure_config=None,
    name="exp",
    **tune_kwargs,
):
    run_config = tune.RunConfig(
        name=name,
        storage_path=storage,
        verbose=verbose,
        stop=stop,
        checkpoint_config=checkpoint_config or tune.CheckpointConfig(),
        failure_config=failure_config or tune.FailureConfig(),
    )
    tuner = tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(**tune_kwargs),
        run_config=run_config,
        client=client,
    )
    return tuner.fit()


def linear(config):
    for i in range(config.get("iters", 5)):
        tune.report({"score": config["x"] * (i + 1), "step": i})


def test_basic_run_records_every_result(client, storage):
    grid = run(
        linear,
        client,
        storage,
        param_space={"x": tune.grid_search([1, 2, 3])},
        metric="score",
        mode="max",
    )
    assert len(grid) == 3
    assert grid.num_errors == 0 and grid.num_terminated == 3
    best = grid.get_best_result()
    assert best.config == {"x": 3}
    assert best.metrics["score"] == 15 and best.metrics["training_iteration"] == 5
    assert best.metrics["done"] is True
    df = best.metrics_dataframe
    assert list(df["training_iteration"]) == [1, 2, 3, 4, 5]
    assert {"time_this_iter_s", "time_total_s", "timestamp", "trial_id", "done"} <= set(df.columns)
    assert (df["time_total_s"].diff().dropna() >= 0).all()
    # Files: params.json, result.json (JSON lines) and progress.csv per trial.
    path = best.path
    assert len(os.path.basename(path)) < 100
    assert os.path.exists(os.path.join(path, "params.json"))
    with open(os.path.join(path, "result.json")) as f:
        assert len(f.read().splitlines()) == 5
    csv = pd.read_csv(os.path.join(path, "progress.csv"))
    assert list(csv["score"]) == [3, 6, 9, 12, 15]
    assert grid.experiment_path == os.path.join(storage, "exp")
    frame = grid.get_dataframe()
    assert sorted(frame["config/x"]) == [1, 2, 3]


def late_metric(config):
    tune.report({"loss": 1.0})
    tune.report({"loss": 0.5, "val_acc": 0.7})


def test_metric_that_appears_late_is_kept(client, storage):
    grid = run(late_metric, client, storage)
    path = grid[0].path
    csv = pd.read_csv(os.path.join(path, "progress.csv"))
    assert list(csv.columns[:2]) == ["loss", "training_iteration"]
    assert "val_acc" in csv.columns
    assert pd.isna(csv["val_acc"][0]) and csv["val_acc"][1] == 0.7
    assert grid[0].metrics_dataframe["val_acc"].tolist()[1] == 0.7


def marking(config):
    """Writes a marker before each iteration it starts, so tests can see extra work."""
    trial_dir = tune.get_context().get_trial_dir()
    for i in range(config["iters"]):
        with open(os.path.join(trial_dir, "started.txt"), "a") as f:
            f.write(f"{i + 1}\n")
        tune.report({"acc": config["curve"][i]})


def test_asha_stopped_trial_trains_no_further_iteration(client, storage):
    # Run one at a time: trial 0 sets the bar at each rung, worse trials stop there.
    curves = [
        [0.5, 0.6, 0.7, 0.8, 0.9, 0.9, 0.9, 0.9],
        [0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1],
        [0.6, 0.7, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1],
    ]
    grid = run(
        marking,
        client,
        storage,
        param_space={"iters": 8, "curve": tune.grid_search(curves)},
        scheduler=ASHAScheduler(
            metric="acc", mode="max", max_t=8, grace_period=1, reduction_factor=2
        ),
        max_concurrent_trials=1,
    )
    iterations = {}
    for result in grid:
        with open(os.path.join(result.path, "started.txt")) as f:
            started = len(f.read().split())
        iterations[result.config["curve"][0]] = result.metrics["training_iteration"]
        # The trial began no iteration after the result that stopped it.
        assert started == result.metrics["training_iteration"]
        assert result.metrics["done"] is True
    # Trial 0 is first at every rung and reaches max_t; trial 1 is below the
    # median at rung 1; trial 2 passes rungs 1 and 2 and falls below at rung 4.
    assert iterations == {0.5: 8, 0.1: 1, 0.6: 4}


def test_stop_criteria_dict_callable_and_stopper(client, storage):
    grid = run(
        linear,
        client,
        storage,
        param_space={"x": 1, "iters": 20},
        stop={"training_iteration": 3},
        name="dict",
    )
    assert grid[0].metrics["training_iteration"] == 3
    grid = run(
        linear,
        client,
        storage,
        param_space={"x": 1, "iters": 20},
        stop=lambda trial_id, result: result["score"] >= 4,
        name="callable",
    )
    assert grid[0].metrics["training_iteration"] == 4
    grid = run(
        linear,
        client,
        storage,
        param_space={"x": 1, "iters": 20},
        stop=MaximumIterationStopper(2),
        name="stopper",
    )
    assert grid[0].metrics["training_iteration"] == 2


def checkpointing(config):
    start = 0
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d, open(os.path.join(d, "step.txt")) as f:
            start = int(f.read())
    for step in range(start, config["iters"]):
        if config.get("fail_at") == step and checkpoint is None:
            raise RuntimeError(f"boom at step {step}")
        import tempfile

        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "step.txt"), "w") as f:
                f.write(str(step + 1))
            tune.report(
                {"score": step, "start": start}, checkpoint=tune.Checkpoint.from_directory(d)
            )


def test_checkpoints_are_copied_into_storage_and_pruned(client, storage):
    grid = run(
        checkpointing,
        client,
        storage,
        param_space={"iters": 5},
        checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
    )
    result = grid[0]
    kept = sorted(d for d in os.listdir(result.path) if d.startswith("checkpoint_"))
    assert kept == ["checkpoint_000003", "checkpoint_000004"]
    assert result.checkpoint.path == os.path.join(result.path, "checkpoint_000004")
    with result.checkpoint.as_directory() as d, open(os.path.join(d, "step.txt")) as f:
        assert f.read() == "5"
    assert [m["score"] for _, m in result.best_checkpoints] == [3, 4]
    copy = result.checkpoint.to_directory()
    assert os.listdir(copy) == ["step.txt"]


def scored(config):
    """Checkpoints scored by a nested numpy value: best at the second of four."""
    import tempfile

    import numpy as np

    for step, value in enumerate([0.1, 0.9, 0.2, 0.3]):
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "step.txt"), "w") as f:
                f.write(str(step))
            tune.report(
                {"eval": {"acc": np.float32(value)}}, checkpoint=tune.Checkpoint.from_directory(d)
            )


def test_checkpoints_kept_by_a_nested_numpy_score(client, storage):
    grid = run(
        scored,
        client,
        storage,
        checkpoint_config=tune.CheckpointConfig(
            num_to_keep=1, checkpoint_score_attribute="eval/acc", checkpoint_score_order="max"
        ),
    )
    result = grid[0]
    kept = sorted(d for d in os.listdir(result.path) if d.startswith("checkpoint_"))
    # The best (0.9, the second) and the latest, to resume from.
    assert kept == ["checkpoint_000001", "checkpoint_000003"]


def numpy_values(config):
    import numpy as np

    for i in range(3):
        tune.report(
            {
                "f32": np.float32(0.5),
                "i64": np.int64(i),
                "flag": np.bool_(True),
                "vector": np.arange(3),
                "tags": {"a"},
            }
        )


def test_numpy_values_in_results_are_recorded_as_plain_numbers(client, storage):
    grid = run(numpy_values, client, storage)
    result = grid[0]
    assert result.status == "TERMINATED" and result.error is None
    df = result.metrics_dataframe
    assert df["i64"].tolist() == [0, 1, 2] and df["f32"].tolist() == [0.5] * 3
    assert list(result.metrics["vector"]) == [0, 1, 2] and list(result.metrics["tags"]) == ["a"]
    assert result.metrics["flag"] is True


def stubborn(config):
    for i in range(8):
        try:
            tune.report({"score": i})
        except BaseException:  # a trainable that swallows the stop and reports on
            pass


def test_a_trial_that_catches_its_stop_records_nothing_after_it(client, storage):
    grid = run(stubborn, client, storage, stop={"training_iteration": 3})
    df = grid[0].metrics_dataframe
    assert df["training_iteration"].tolist() == [1, 2, 3]
    assert grid[0].metrics["training_iteration"] == 3 and grid[0].metrics["done"]


@pytest.mark.parametrize("value", [None, "2", 1.5, -2, True])
def test_max_failures_is_checked_where_it_is_given(value):
    with pytest.raises(ValueError, match=r"FailureConfig\(max_failures="):
        tune.FailureConfig(max_failures=value)


def returns_metrics(config):
    tune.report({"score": 1})
    return {"score": 3}


def yields_metrics(config):
    yield {"score": 1}


def test_returned_metrics_are_the_last_result_and_yielding_is_an_error(client, storage):
    grid = run(returns_metrics, client, storage, name="returns")
    assert grid[0].metrics_dataframe["score"].tolist() == [1, 3]
    grid = run(yields_metrics, client, storage, name="yields")
    assert grid[0].status == "ERROR"
    assert "tune.report(metrics) instead of yield" in str(grid[0].error).replace("\n", " ")


def reports_from_a_thread(config):
    done = threading.Event()

    def work():
        for i in range(3):
            tune.report({"score": i})
        done.set()

    threading.Thread(target=work).start()
    done.wait(30)


class Introspective(tune.Trainable):
    def setup(self, config):
        self.seen = {
            "id": self.trial_id,
            "name": self.trial_name,
            "dir": self.logdir,
            "config": self.get_config(),
        }

    def step(self):
        return {
            "score": 1,
            "done": True,
            "name": self.seen["name"],
            "dir": self.seen["dir"],
            "lr": self.seen["config"]["lr"],
            "has_id": bool(self.seen["id"]),
        }


def test_ray_s_trial_accessors_and_reports_from_a_helper_thread(client, storage):
    grid = run(reports_from_a_thread, client, storage, name="thread")
    assert grid[0].metrics_dataframe["score"].tolist() == [0, 1, 2]
    grid = run(Introspective, client, storage, name="class", param_space={"lr": 0.1})
    metrics = grid[0].metrics
    assert metrics["name"] == os.path.basename(grid[0].path) and metrics["dir"] == grid[0].path
    assert metrics["lr"] == 0.1 and metrics["has_id"]


def nested(config):
    for i in range(6):
        tune.report({"eval": {"acc": 0.1 * i}, "score": i})


def test_nested_metrics_read_both_ways(client, storage):
    """Ray-style code indexes nested results; metric names may say "eval/acc"."""
    grid = run(
        nested,
        client,
        storage,
        stop=lambda trial_id, r: r["eval"]["acc"] >= 0.2,
        metric="eval/acc",
        mode="max",
    )
    result = grid.get_best_result()
    assert result.metrics["eval"]["acc"] == result.metrics["eval/acc"] == 0.2
    assert result.metrics_dataframe["eval/acc"].tolist() == [0.0, 0.1, 0.2]


class BadConfig(ValueError):
    """A user's own exception class, defined in the test module."""


def rejects(config):
    tune.report({"score": 1})
    raise BadConfig(f"lr {config['lr']} is too large")


def test_fail_fast_raise_raises_the_trial_s_own_exception(client, storage):
    with pytest.raises(BadConfig, match="lr 2 is too large") as info:
        run(
            rejects,
            client,
            storage,
            param_space={"lr": 2},
            failure_config=tune.FailureConfig(fail_fast="raise"),
        )
    # The worker's traceback is the cause; the results so far come with it.
    assert "Traceback" in str(info.value.__cause__)
    assert info.value.result_grid[0].metrics["score"] == 1


def test_failed_trial_retries_from_its_checkpoint(client, storage):
    grid = run(
        checkpointing,
        client,
        storage,
        param_space={"iters": 5, "fail_at": 3},
        failure_config=tune.FailureConfig(max_failures=1),
    )
    result = grid[0]
    assert result.error is None
    df = result.metrics_dataframe
    # Steps 0-2 ran, then the retry resumed after step 2's checkpoint.
    assert df["score"].tolist() == [0, 1, 2, 3, 4]
    assert df["start"].tolist() == [0, 0, 0, 3, 3]
    assert df["training_iteration"].tolist() == [1, 2, 3, 4, 5]
    assert "boom at step 3" in open(os.path.join(result.path, "error.txt")).read()


def flaky(config):
    tune.report({"score": config["x"]})
    if config["x"] == 2:
        raise ValueError("bad x")
    tune.report({"score": config["x"] + 10})


def test_error_marks_only_its_own_trial(client, storage):
    grid = run(
        flaky,
        client,
        storage,
        param_space={"x": tune.grid_search([1, 2, 3])},
        metric="score",
        mode="max",
    )
    assert grid.num_errors == 1 and grid.num_terminated == 2
    bad = next(r for r in grid if r.config["x"] == 2)
    assert "ValueError: bad x" in str(bad.error)
    assert bad.status == "ERROR"
    assert "bad x" in open(os.path.join(bad.path, "error.txt")).read()
    assert len(bad.metrics_dataframe) == 1  # its result before the error is kept
    assert grid.get_best_result().config["x"] == 3


class Counter(tune.Trainable):
    def setup(self, config):
        self.value = 0
        self.inc = config["inc"]

    def step(self):
        self.value += self.inc
        return {"value": self.value, "done": self.value >= 5 * self.inc}

    def save_checkpoint(self, checkpoint_dir):
        with open(os.path.join(checkpoint_dir, "value"), "w") as f:
            f.write(str(self.value))

    def load_checkpoint(self, checkpoint_dir):
        with open(os.path.join(checkpoint_dir, "value")) as f:
            self.value = int(f.read())


def test_class_trainable_with_checkpoint_frequency_and_at_end(client, storage):
    grid = run(
        Counter,
        client,
        storage,
        param_space={"inc": 2},
        checkpoint_config=tune.CheckpointConfig(checkpoint_frequency=2, checkpoint_at_end=True),
    )
    result = grid[0]
    assert result.metrics_dataframe["value"].tolist() == [2, 4, 6, 8, 10]
    kept = sorted(d for d in os.listdir(result.path) if d.startswith("checkpoint_"))
    assert kept == ["checkpoint_000000", "checkpoint_000001", "checkpoint_000002"]
    with open(os.path.join(result.checkpoint.path, "value")) as f:
        assert f.read() == "10"


class CountsUnpickling:
    """Writes a line to a file each time a copy of it is unpickled: which process, which
    thread, and the call chain that unpickled it."""

    def __init__(self, log):
        self.log = log
        self.payload = b"x" * 1_000_000

    def __setstate__(self, state):
        self.__dict__.update(state)
        chain = " < ".join(
            f"{os.path.basename(f.filename)}:{f.name}"
            for f in reversed(traceback.extract_stack(limit=9)[:-1])
        )
        with open(self.log, "a") as f:
            f.write(f"{os.getpid()} {threading.current_thread().name} {chain}\n")


def uses_data(config, data):
    tune.report({"size": len(data.payload)})


def _stories_of_counted_copies(since, dask_worker=None):
    """What happened on this worker to the keys holding a CountsUnpickling since ``since``."""
    return [
        f"{ev[0].split('-')[0]} {ev[1]} ({str(ev[-2]).rsplit('-', 1)[0]})"
        for ev in dask_worker.state.log
        if str(ev[0]).startswith("CountsUnpickling-")
        and ev[-1] >= since
        and ev[1] in ("receive-from-scatter", "put-in-memory", "remove-replica")
    ]


def _parked_tasks(dask_scheduler):
    return [str(key) for key in dask_scheduler.tasks if str(key).startswith("dasktune-parked-")]


def test_with_parameters_ships_data_once_per_worker_not_per_trial(client, storage, tmp_path):
    log = str(tmp_path / "unpickled.log")
    since = time.time()
    # Every 2 s, Dask's Active Memory Manager drops the replicas it finds superfluous, and
    # a worker's copy between two of its trials looked so (issue 11). Running it every
    # 20 ms during the experiment shows a lost copy on every run, not one run in ten.
    stop = threading.Event()

    def memory_manager():
        while not stop.wait(0.02):
            client.amm.run_once()

    thread = threading.Thread(target=memory_manager, daemon=True)
    thread.start()
    try:
        grid = run(
            tune.with_parameters(uses_data, data=CountsUnpickling(log)),
            client,
            storage,
            num_samples=12,
        )
    finally:
        stop.set()
        thread.join()
    assert [r.metrics["size"] for r in grid] == [1_000_000] * 12
    deadline = time.monotonic() + 10  # the experiment released its parked tasks
    while (parked := client.run_on_scheduler(_parked_tasks)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not parked
    workers = {pid: address for address, pid in client.run(os.getpid).items()}
    with open(log) as f:
        copies = [line.split(" ", 2) for line in f.read().splitlines()]
    per_process = collections.defaultdict(list)
    for pid, thread_name, chain in copies:
        per_process[int(pid)].append(f"{thread_name}: {chain}")
    once_each = all(len(where) == 1 for where in per_process.values())
    if not (once_each and set(per_process) <= set(workers)):
        stories = client.run(_stories_of_counted_copies, since)
        pytest.fail(
            "Each worker process should unpickle the data once, but:\n"
            + "\n".join(
                f"  pid {pid} ({workers.get(pid, 'no current worker')}) unpickled it "
                f"{len(where)} times, in " + " | ".join(sorted(set(where)))
                for pid, where in per_process.items()
            )
            + "\nDask's record of the copies on each worker:\n"
            + "\n".join(
                f"  {address}: {'; '.join(story) or '-'}" for address, story in stories.items()
            )
        )
    assert 1 <= len(copies) <= len(workers)  # at most once per worker; 12 trials


def test_trainable_that_cannot_be_pickled_names_the_object(client, storage):
    lock = threading.Lock()

    def holds_lock(config):
        with lock:
            tune.report({"x": 1})

    with pytest.raises(TypeError, match=r"uses `lock` \(a _thread.lock\)"):
        tune.Tuner(holds_lock, client=client)


def test_metric_never_reported_names_the_reported_keys(client, storage):
    with pytest.raises(ValueError, match=r"\['score', 'step'\].*'accuracy'") as info:
        run(
            linear,
            client,
            storage,
            param_space={"x": 1},
            scheduler=ASHAScheduler(metric="accuracy", mode="max"),
        )
    # What was computed before the error is kept.
    grid = info.value.result_grid
    assert len(grid) == 1 and len(grid[0].metrics_dataframe) == 1


def test_impossible_resources_fail_fast(client, storage):
    start = time.monotonic()
    with pytest.raises(ValueError, match=r"\{'GPU': 1.0\}.*no worker"):
        run(
            tune.with_resources(linear, {"cpu": 1, "gpu": 1}), client, storage, param_space={"x": 1}
        )
    assert time.monotonic() - start < 10


def timed(config):
    start = time.time()
    time.sleep(0.3)
    tune.report(
        {
            "start": start,
            "end": time.time(),
            "resources": str(sorted(tune.get_context().get_trial_resources().items())),
        }
    )


def test_gpu_and_custom_resources_become_dask_resources(storage):
    import logging

    from distributed import Client, LocalCluster

    # One worker with 2 threads but one GPU: GPU trials must run one at a time.
    with (
        LocalCluster(
            n_workers=1,
            threads_per_worker=2,
            processes=True,
            dashboard_address=":0",
            resources={"GPU": 1, "MEM": 4},
            silence_logs=logging.ERROR,
        ) as cluster,
        Client(cluster) as c,
    ):
        grid = run(
            tune.with_resources(timed, {"gpu": 1, "MEM": 2}),
            c,
            storage,
            param_space={"x": tune.grid_search([1, 2])},
        )
    assert grid.num_terminated == 2
    first, second = sorted((r.metrics for r in grid), key=lambda m: m["start"])
    assert second["start"] >= first["end"]
    assert first["resources"] == "[('GPU', 1.0), ('MEM', 2.0)]"


def context_reporter(config):
    ctx = tune.get_context()
    tune.report(
        {
            "id": ctx.get_trial_id(),
            "name": ctx.get_trial_name(),
            "dir": ctx.get_trial_dir(),
            "exp": ctx.get_experiment_path(),
        }
    )


def test_get_context(client, storage):
    grid = run(context_reporter, client, storage, num_samples=2)
    for result in grid:
        m = result.metrics
        assert m["id"] == m["trial_id"]
        assert m["dir"] == result.path and os.path.basename(m["dir"]) == m["name"]
        assert m["exp"] == os.path.join(storage, "exp")


def test_seed_makes_configs_reproducible(client, storage):
    space = {"x": tune.uniform(0, 1), "n": tune.randint(0, 100)}
    first = run(linear, client, storage, param_space=space, num_samples=5, seed=7, name="a")
    second = run(linear, client, storage, param_space=space, num_samples=5, seed=7, name="b")
    assert [r.config for r in first] == [r.config for r in second]


def test_time_budget_stops_the_experiment(client, storage):
    def slow(config):
        for i in range(1000):
            time.sleep(0.05)
            tune.report({"i": i})

    start = time.monotonic()
    grid = run(slow, client, storage, num_samples=4, time_budget_s=1.5)
    assert time.monotonic() - start < 10
    assert all(r.status == "TERMINATED" for r in grid)
    assert max(r.metrics.get("i", 0) for r in grid) < 100


def test_verbose_zero_prints_nothing(client, storage, capsys):
    run(linear, client, storage, param_space={"x": 1}, verbose=0)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_default_console_shows_status_and_table(client, storage, capsys):
    run(
        linear,
        client,
        storage,
        param_space={"x": tune.grid_search([1, 2])},
        verbose=1,
        metric="score",
        mode="max",
    )
    lines = capsys.readouterr().out.splitlines()
    # Not a terminal here: plain lines, with the progress of the two trials the grid makes.
    assert any("2/2 trials done" in line and "finished" in line for line in lines), lines
    header = next(i for i, line in enumerate(lines) if line.startswith("trial "))
    assert lines[header].split() == ["trial", "status", "x", "iter", "score"]
    assert lines[header + 2].split() == ["linear_00001", "TERMINATED", "2", "5", "10"]
    assert lines[header + 3].split() == ["linear_00000", "TERMINATED", "1", "5", "5"]


def test_unwritable_storage_path_is_a_clear_error(client, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ValueError, match="storage_path.*cannot write"):
        run(linear, client, str(blocker / "sub"), param_space={"x": 1})


def test_report_outside_a_trial_is_a_clear_error():
    with pytest.raises(RuntimeError, match="outside a dasktune trial"):
        tune.report({"x": 1})


def test_sample_from_sees_resolved_config(client, storage):
    grid = run(
        linear,
        client,
        storage,
        param_space={
            "x": tune.grid_search([1, 2]),
            "iters": tune.sample_from(lambda spec: spec.config.x + 1),
        },
    )
    assert sorted((r.config["x"], r.config["iters"]) for r in grid) == [(1, 2), (2, 3)]
    assert sorted(len(r.metrics_dataframe) for r in grid) == [2, 3]


def test_a_second_experiment_with_the_same_name_does_not_overwrite_the_first(client, storage):
    first = run(linear, client, storage, param_space={"x": 1}, name="same")
    second = run(linear, client, storage, param_space={"x": 2}, name="same")
    assert first.experiment_path == os.path.join(storage, "same")
    assert second.experiment_path == os.path.join(storage, "same_2")
    with open(os.path.join(first[0].path, "result.json")) as f:
        assert len(f.read().splitlines()) == 5  # untouched by the second run
    assert pd.read_csv(os.path.join(first[0].path, "progress.csv"))["score"].tolist() == [
        1,
        2,
        3,
        4,
        5,
    ]


class Recorder(tune.Callback):
    def __init__(self):
        self.events = []

    def setup(self, **info):
        self.events.append(("setup", os.path.basename(info["experiment_path"])))

    def on_trial_start(self, iteration, trials, trial, **info):
        self.events.append(("start", trial.config["x"]))

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.events.append(("result", trial.config["x"], result["training_iteration"]))

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.events.append(("complete", trial.config["x"]))

    def on_trial_error(self, iteration, trials, trial, **info):
        self.events.append(("error", trial.config["x"]))

    def on_experiment_end(self, trials, **info):
        self.events.append(("end", len(trials)))


def test_callbacks_see_every_event(client, storage):
    recorder = Recorder()
    tune.Tuner(
        flaky,
        param_space={"x": tune.grid_search([1, 2])},
        run_config=tune.RunConfig(name="cb", storage_path=storage, verbose=0, callbacks=[recorder]),
        client=client,
    ).fit()
    events = recorder.events
    assert events[0] == ("setup", "cb") and events[-1] == ("end", 2)
    for x, results, last in ((1, [1, 2], "complete"), (2, [1], "error")):
        mine = [e for e in events[1:-1] if e[1] == x]
        assert mine[0] == ("start", x)
        assert [e[2] for e in mine if e[0] == "result"] == results
        assert mine[-1] == (last, x)
    with pytest.raises(TypeError, match="dasktune.Callback"):
        tune.Tuner(linear, run_config=tune.RunConfig(callbacks=[object()]), client=client).fit()


def test_the_trainable_is_captured_when_the_tuner_is_made(client, storage):
    """As in Ray Tune, a trainable is pickled once, by Tuner(): the values it captures are
    those of that moment, and every fit of the Tuner runs that same trainable."""
    scale = 1

    def train(config):
        tune.report({"scale": scale})

    tuner = tune.Tuner(
        train, run_config=tune.RunConfig(storage_path=storage, verbose=0), client=client
    )
    scale = 2
    assert [r.metrics["scale"] for r in tuner.fit()] == [1]
    # A Tuner made now captures the new value.
    tuner = tune.Tuner(
        train, run_config=tune.RunConfig(storage_path=storage, verbose=0), client=client
    )
    assert [r.metrics["scale"] for r in tuner.fit()] == [2]


def test_a_trainable_that_carries_data_runs_and_its_pickle_is_not_kept(client, storage):
    """A trainable whose pickle is large (it captures 2 MB) is scattered at fit(), as it
    is then, and the Tuner does not hold a second copy of it meanwhile."""
    payload = os.urandom(2 << 20)

    def train(config):
        tune.report({"size": len(payload)})

    tuner = tune.Tuner(
        train, run_config=tune.RunConfig(storage_path=storage, verbose=0), client=client
    )
    assert tuner._trainable_pickle is None
    assert [r.metrics["size"] for r in tuner.fit()] == [2 << 20]


def test_fit_keeps_the_script_s_objects_out_of_full_collections_and_hands_them_back(
    client, storage
):
    """A full collection of the driver walked every object of the script's imports (0.4 s
    with torch imported) on the coordinator's thread; during fit() they are frozen."""
    import gc

    if gc.get_freeze_count():
        pytest.skip("something in this process froze the heap already")
    seen = []

    class FreezeCount(tune.Callback):
        def on_trial_result(self, iteration, trials, trial, result, **info):
            seen.append(gc.get_freeze_count())

    existing = object.__new__(type("Existing", (), {}))
    assert any(o is existing for o in gc.get_objects())
    tune.Tuner(
        linear,
        param_space={"x": 1, "iters": 2},
        run_config=tune.RunConfig(storage_path=storage, verbose=0, callbacks=[FreezeCount()]),
        client=client,
    ).fit()
    assert len(seen) == 2 and min(seen) > 0
    assert gc.get_freeze_count() == 0
    assert any(o is existing for o in gc.get_objects())
