"""``tune.run`` and ExperimentAnalysis on a real cluster, with scripts shaped like Ray Tune's
published examples (function and class trainables, schedulers, searchers, checkpoints)."""

from __future__ import annotations

import datetime
import functools
import json
import os
import subprocess
import sys
import tempfile
import textwrap

import pandas as pd
import pytest

import dasktune as tune
from dasktune.schedulers import AsyncHyperBandScheduler


def evaluation_fn(step, width, height):
    return (0.1 + width * step / 100) ** (-1) + height * 0.1


def easy_objective(config):
    """Ray's tune_basic_example trainable, without its sleep."""
    for step in range(config["steps"]):
        tune.report(
            {
                "iterations": step,
                "mean_loss": evaluation_fn(step, config["width"], config["height"]),
            }
        )


def test_a_classic_tune_run_script(client, storage):
    analysis = tune.run(
        easy_objective,
        name="asynchyperband_test",
        metric="mean_loss",
        mode="min",
        scheduler=AsyncHyperBandScheduler(grace_period=2, max_t=10),
        stop={"training_iteration": 6},
        num_samples=3,
        config={"steps": 10, "width": tune.grid_search([5, 50]), "height": tune.uniform(0, 1)},
        storage_path=storage,
        verbose=0,
        client=client,
    )
    assert isinstance(analysis, tune.ExperimentAnalysis)
    assert analysis.experiment_path == os.path.join(storage, "asynchyperband_test")
    assert len(analysis.trials) == 6
    # The best by the last reported mean_loss: recomputed from the trials' own results.
    last = {t.trial_id: t.last_result["mean_loss"] for t in analysis.trials}
    best_id = min(last, key=last.get)
    assert analysis.best_trial.trial_id == best_id
    assert analysis.best_config == analysis.get_all_configs()[best_id]
    assert analysis.best_result["mean_loss"] == last[best_id]
    assert analysis.best_logdir == analysis.best_trial.path
    assert os.path.isfile(os.path.join(analysis.best_logdir, "params.json"))
    assert list(analysis.best_dataframe["mean_loss"])[-1] == last[best_id]
    assert analysis.results == {t.trial_id: t.last_result for t in analysis.trials}
    assert set(analysis.results_df.index) == set(last)
    assert analysis.results_df.loc[best_id, "mean_loss"] == last[best_id]
    frames = analysis.trial_dataframes
    assert all(
        len(frames[t.trial_id]) == t.last_result["training_iteration"] for t in analysis.trials
    )
    assert max(len(f) for f in frames.values()) == 6, "the stop criterion held"
    # dataframe(metric, mode): each trial's best result ever, with its config.
    frame = analysis.dataframe(metric="mean_loss", mode="min")
    for _, row in frame.iterrows():
        trial_frame = frames[row["trial_id"]]
        assert row["mean_loss"] == trial_frame["mean_loss"].min()
        assert row["config/width"] in (5, 50) and row["logdir"].startswith(storage)
    assert len(analysis.dataframe()) == 6
    # Scopes: "all" compares each trial's best result ever.
    best_ever = min(frames, key=lambda i: frames[i]["mean_loss"].min())
    assert analysis.get_best_trial("mean_loss", "min", scope="all").trial_id == best_ever
    worst = max(last, key=last.get)
    assert analysis.get_best_trial("mean_loss", "max").trial_id == worst
    assert analysis.get_best_config("mean_loss", "max") == analysis.get_all_configs()[worst]
    flat = analysis.get_all_configs(prefix=True)[best_id]
    assert set(flat) == {"config/steps", "config/width", "config/height"}


class TrainMNISTLike(tune.Trainable):
    """A class trainable in the shape of Ray's mnist_pytorch_trainable, without torch."""

    def setup(self, config):
        self.position = 10.0

    def step(self):
        self.position -= self.config["lr"] * 10  # the loss reaches 0, then climbs again
        return {"loss": abs(self.position)}

    def save_checkpoint(self, checkpoint_dir):
        with open(os.path.join(checkpoint_dir, "state.json"), "w") as f:
            json.dump({"position": self.position, "iteration": self.iteration}, f)

    def load_checkpoint(self, checkpoint_dir):
        with open(os.path.join(checkpoint_dir, "state.json")) as f:
            self.position = json.load(f)["position"]


def saved_iteration(checkpoint) -> int:
    with open(os.path.join(checkpoint.path, "state.json")) as f:
        return json.load(f)["iteration"]


def test_checkpoint_arguments_and_best_checkpoints(client, storage):
    analysis = tune.run(
        TrainMNISTLike,
        config={"lr": tune.grid_search([0.25, 0.4])},
        metric="loss",
        mode="min",
        stop={"training_iteration": 8},
        checkpoint_freq=1,
        checkpoint_at_end=True,
        keep_checkpoints_num=2,
        checkpoint_score_attr="min-loss",
        storage_path=storage,
        name="ckpt",
        verbose=0,
        client=client,
    )
    trial = next(t for t in analysis.trials if t.config["lr"] == 0.25)
    # lr 0.25: loss 7.5, 5, 2.5, 0, 2.5, 5, 7.5, 10: the best checkpoint is iteration 4's.
    best = analysis.get_best_checkpoint(trial, "loss", "min")
    assert saved_iteration(best) == 4
    assert analysis.get_best_checkpoint(trial.path, "loss", "min") == best, "by its directory"
    paths = analysis.get_trial_checkpoints_paths(trial, "loss")
    # Two kept by score (0 and 2.5: iterations 4 and 3, or 5), plus always the newest.
    assert [value for _, value in paths][-1] == 10.0 and 0.0 in [value for _, value in paths]
    assert len(paths) == 3 and all(os.path.isdir(path) for path, _ in paths)
    assert saved_iteration(analysis.get_last_checkpoint(trial)) == 8
    by_iteration = analysis.get_trial_checkpoints_paths(trial)
    assert [value for _, value in by_iteration] == sorted(value for _, value in by_iteration)
    assert saved_iteration(analysis.get_best_checkpoint(trial, "training_iteration", "max")) == 8
    best_trial = min(analysis.trials, key=lambda t: t.last_result["loss"])
    assert analysis.best_trial.trial_id == best_trial.trial_id
    assert analysis.best_checkpoint == analysis.get_best_checkpoint(best_trial, "loss", "min")
    assert analysis.best_trial.checkpoint == analysis.get_last_checkpoint(best_trial)

    # Loaded again from its directory: the same trials and results; checkpoints by order only.
    again = tune.ExperimentAnalysis(analysis.experiment_path)
    assert (again.default_metric, again.default_mode) == ("loss", "min")
    assert [t.trial_id for t in again.trials] == [t.trial_id for t in analysis.trials]
    assert again.best_config == analysis.best_config
    pd.testing.assert_frame_equal(
        again.trial_dataframes[trial.trial_id], analysis.trial_dataframes[trial.trial_id]
    )
    assert again.get_last_checkpoint(again.trials[0]) == analysis.get_last_checkpoint(trial)
    assert (
        saved_iteration(again.get_best_checkpoint(again.trials[0], "training_iteration", "max"))
        == 8
    )
    with pytest.raises(ValueError, match="cannot rank them by 'loss'"):
        again.get_best_checkpoint(again.trials[0], "loss", "min")


def flaky(config):
    tune.report({"score": config["x"]})
    if config["x"] == 2:
        raise ValueError("x=2 is not allowed")
    tune.report({"score": config["x"] * 10})


def test_failed_trials_raise_tune_error_unless_told_not_to(client, storage):
    with pytest.raises(tune.TuneError, match=r"1 of 3 failed") as info:
        tune.run(
            flaky,
            config={"x": tune.grid_search([1, 2, 3])},
            storage_path=storage,
            name="fails",
            verbose=0,
            client=client,
        )
    error = info.value
    assert "ValueError: x=2 is not allowed" in str(error)
    assert [t.config for t in error.failed_trials] == [{"x": 2}]
    assert error.analysis.get_best_config("score", "max") == {"x": 3}

    analysis = tune.run(
        flaky,
        config={"x": tune.grid_search([1, 2, 3])},
        storage_path=storage,
        name="tolerated",
        verbose=0,
        raise_on_failed_trial=False,
        metric="score",
        mode="max",
        client=client,
    )
    assert [str(t.status) for t in analysis.trials] == ["TERMINATED", "ERROR", "TERMINATED"]
    assert "x=2 is not allowed" in analysis.trials[1].error_msg
    assert analysis.best_config == {"x": 3}


def test_searcher_by_name_resources_and_local_dir(client, storage):
    pytest.importorskip("hyperopt")
    analysis = tune.run(
        easy_objective,
        search_alg="hyperopt",
        metric="mean_loss",
        mode="min",
        num_samples=4,
        config={"steps": 3, "width": tune.uniform(1, 20), "height": tune.uniform(-1, 1)},
        resources_per_trial={"cpu": 1},
        local_dir=storage,
        name="hyperopt",
        max_concurrent_trials=2,
        verbose=0,
        client=client,
    )
    assert len(analysis.trials) == 4
    assert analysis.experiment_path == os.path.join(storage, "hyperopt")
    assert len({t.config["width"] for t in analysis.trials}) == 4


def test_results_carry_ray_tune_s_auto_filled_fields(client, storage):
    """What real scripts read: result["config"] in callbacks, config/<key> and date columns
    in results_df, node_ip, and Result.metrics["config"]."""
    seen = []

    class ConfigReader(tune.Callback):
        def on_trial_result(self, iteration, trials, trial, result, **info):
            seen.append((result["config"]["x"], result["node_ip"], result["date"]))

    analysis = tune.run(
        easy_objective,
        config={"steps": 2, "width": tune.grid_search([1, 2]), "height": 0, "x": 7},
        metric="mean_loss",
        mode="min",
        storage_path=storage,
        verbose=0,
        callbacks=[ConfigReader()],
        client=client,
    )
    assert sorted(x for x, _, _ in seen) == [7, 7, 7, 7]
    worker_hosts = {a.split("://")[1].rsplit(":", 1)[0] for a in client.scheduler_info()["workers"]}
    assert {ip for _, ip, _ in seen} <= worker_hosts
    for _, _, date in seen:
        datetime.datetime.strptime(date, "%Y-%m-%d_%H-%M-%S")  # Ray's format
    df = analysis.results_df
    assert sorted(df["config/width"]) == [1, 2] and set(df["config/x"]) == {7}
    assert {"date", "node_ip", "hostname", "pid"} <= set(df.columns)
    assert "config" not in df.columns, "flattened into config/<key>, as in Ray"
    best = analysis.get_best_trial()
    assert best.last_result["config"] == best.config
    grid = tune.Tuner(
        easy_objective,
        param_space={"steps": 2, "width": 3, "height": 0},
        run_config=tune.RunConfig(storage_path=storage, verbose=0),
        client=client,
    ).fit()
    assert grid[0].metrics["config"] == {"steps": 2, "width": 3, "height": 0}
    assert list(grid[0].metrics_dataframe["config/width"]) == [3, 3]
    assert "config/width" in grid.get_dataframe().columns


def train_on_data(config, data=None):
    tune.report({"loss": float((data * config["x"]).sum())})


def test_tune_run_takes_a_trainable_with_parameters(client, storage):
    """Ray 1.x's way to ship a dataset once: tune.run(tune.with_parameters(train, data=...)),
    alone and under with_resources (resources_per_trial), in either order."""
    import numpy as np

    data = np.arange(10.0)
    bound = tune.with_parameters(train_on_data, data=data)
    for trainable, resources in (
        (bound, None),
        (bound, {"cpu": 1}),
        (tune.with_resources(bound, {"cpu": 1}), None),
        (tune.with_parameters(tune.with_resources(train_on_data, {"cpu": 1}), data=data), None),
    ):
        analysis = tune.run(
            trainable,
            config={"x": tune.grid_search([1.0, 2.0])},
            resources_per_trial=resources,
            metric="loss",
            mode="min",
            storage_path=storage,
            verbose=0,
            client=client,
        )
        assert sorted(t.last_result["loss"] for t in analysis.trials) == [45.0, 90.0]
        assert analysis.best_config == {"x": 1.0}
        assert analysis.trials[0].trial_name.startswith("train_on_data_")


def objective_with_data(config, data_dir=None):
    tune.report({"loss": config["x"] ** 2, "data": data_dir})


def test_a_partial_names_the_experiment_and_trials_after_its_function(client, storage, capsys):
    # As in PyTorch's Ray Tune tutorial: tune.run(partial(train_cifar, data_dir=...), ...)
    analysis = tune.run(
        functools.partial(objective_with_data, data_dir="/data"),
        resources_per_trial={"cpu": 1, "gpu": 0},
        config={"x": tune.grid_search([1, 2])},
        storage_path=storage,
        client=client,
    )
    assert os.path.basename(analysis.experiment_path).startswith("objective_with_data_")
    names = sorted(os.path.basename(t.path) for t in analysis.trials)
    assert names == ["objective_with_data_00000", "objective_with_data_00001"]
    assert {t.last_result["data"] for t in analysis.trials} == {"/data"}
    assert "trials ask for" not in capsys.readouterr().out, "one CPU each: nothing to say"
    grid = tune.Tuner(
        functools.partial(objective_with_data, data_dir="/d"),
        param_space={"x": 3},
        run_config=tune.RunConfig(storage_path=storage, verbose=0),
        client=client,
    ).fit()
    assert os.path.basename(grid[0].path) == "objective_with_data_00000"


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"run_or_experiment": "PPO"}, TypeError, "no registry of trainables"),
        ({"config": [1, 2]}, TypeError, r"`tune.run\(config=...\)` is \[1, 2\]"),
        ({"resume": True}, ValueError, "no experiment to resume at"),
        ({"resume": "SOMETIMES"}, ValueError, r"`tune.run\(resume=...\)` is 'SOMETIMES'"),
        ({"restore": "/tmp/ckpt"}, ValueError, "cannot start a trial from a checkpoint"),
        (
            {"scheduler": "hb_bohb"},
            ValueError,
            r"`tune.run\(scheduler=...\)` is 'hb_bohb'.*hyperband, ",
        ),
        ({"resources_per_trial": [("cpu", 1)]}, TypeError, "tune.PlacementGroupFactory"),
        ({"checkpoint_config": {"num_to_keep": 1}}, TypeError, "tune.CheckpointConfig"),
        ({"keep_checkpoints_num": 0}, ValueError, "num_to_keep"),
    ],
)
def test_bad_arguments_are_refused_before_anything_runs(storage, kwargs, error, message):
    kwargs = {"run_or_experiment": easy_objective, "storage_path": storage, **kwargs}
    with pytest.raises(error, match=message):
        tune.run(kwargs.pop("run_or_experiment"), **kwargs)
    assert not os.path.exists(storage) or not os.listdir(storage)


GUARDLESS_SCRIPT = """
import time
import dasktune as tune

def objective(config):
    for step in range(5):
        tune.report({"mean_loss": (config["x"] - 3) ** 2 + 1 / (step + 1)})

analysis = tune.run(objective, config={"x": tune.grid_search([1, 2, 3, 4])},
                    metric="mean_loss", mode="min", name="guardless", verbose=0)
print("BEST", analysis.best_config["x"], len(analysis.trials))
"""


def test_a_script_without_main_guard_runs_as_a_subprocess(tmp_path):
    """tune.run at module level, on the embedded cluster, as a user runs a tutorial script."""
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(GUARDLESS_SCRIPT))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DASKTUNE_", "DASK_"))}
    env.update(
        HOME=str(tmp_path),
        PYTHONPATH=os.pathsep.join(
            [os.path.dirname(os.path.dirname(tune.__file__)), env.get("PYTHONPATH", "")]
        ),
        DASK_DASKTUNE__CLUSTER__KEEP_ALIVE="0",
        DASK_DASKTUNE__CLUSTER__N_WORKERS="2",
    )
    proc = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    assert "BEST 3 4" in proc.stdout, output[-4000:]
    assert "Traceback" not in output and "deprecat" not in output.lower(), output[-4000:]
    assert (tmp_path / "dasktune_results" / "guardless" / "experiment_state.json").is_file()


def fails_until_fixed(config):
    for step in range(3):
        tune.report({"score": config["x"] + step})
    if config["x"] == 2 and not os.path.exists(config["fixed"]):
        raise RuntimeError("not yet")


def test_resume_auto_with_restart_errored_reruns_only_the_failed_trial(client, storage, tmp_path):
    fixed = str(tmp_path / "fixed")
    space = {"x": tune.grid_search([1, 2, 3]), "fixed": fixed}
    first = tune.run(
        fails_until_fixed,
        config=space,
        name="flaky",
        storage_path=storage,
        verbose=0,
        raise_on_failed_trial=False,
        client=client,
    )
    assert sorted(t.status for t in first.trials) == ["ERROR", "TERMINATED", "TERMINATED"]
    open(fixed, "w").close()
    second = tune.run(
        fails_until_fixed,
        config=space,
        name="flaky",
        storage_path=storage,
        verbose=0,
        resume="AUTO+RESTART_ERRORED",
        client=client,
    )
    assert [t.status for t in second.trials] == ["TERMINATED"] * 3
    assert not os.path.exists(os.path.join(storage, "flaky_2")), "it continued, not restarted"
    for trial in second.trials:
        frame = second.trial_dataframes[trial.trial_id]
        assert frame["training_iteration"].tolist() == [1, 2, 3]
        runs = [p for p in os.listdir(trial.local_path) if p.startswith(".run-")]
        assert len(runs) == (2 if trial.config["x"] == 2 else 1)


def test_more_cpus_than_a_worker_thread_is_said_once_and_runs(client, storage, capsys):
    # The workers advertise no CPU resource: a trial is a thread, and the request cannot
    # reserve more; the user hears so instead of silently getting one thread.
    analysis = tune.run(
        objective_with_data,
        resources_per_trial={"cpu": 2},
        config={"x": tune.grid_search([1, 2])},
        storage_path=storage,
        client=client,
    )
    assert len(analysis.trials) == 2
    out = capsys.readouterr().out
    assert out.count("trials ask for 2 CPUs each") == 1
    assert "up to 2 run at once" in out and "--resources 'CPU=2'" in out


def air_style(config):
    """Ray AIR's shape (Ray 2.0-2.6): dict checkpoints, resumed from after a failure."""
    start = 0
    checkpoint = tune.get_checkpoint()
    if checkpoint:
        start = checkpoint.to_dict()["epoch"]
    for epoch in range(start + 1, 6):
        if epoch == 3 and checkpoint is None:
            raise RuntimeError("the first run fails at epoch 3")
        state = {"epoch": epoch, "weights": [config["x"]] * epoch}
        tune.report({"epoch": epoch}, checkpoint=tune.Checkpoint.from_dict(state))


def test_dict_checkpoints_carry_a_retried_trial_on(client, storage):
    grid = tune.Tuner(
        air_style,
        param_space={"x": 0.5},
        run_config=tune.RunConfig(
            storage_path=storage, verbose=0, failure_config=tune.FailureConfig(max_failures=1)
        ),
        client=client,
    ).fit()
    (result,) = grid
    assert result.error is None
    assert result.metrics_dataframe["epoch"].tolist() == [1, 2, 3, 4, 5]
    assert result.checkpoint.to_dict() == {"epoch": 5, "weights": [0.5] * 5}


def ends_itself(config):
    for step in range(1, 100):
        tune.report({"score": step * config["x"], "done": step == config["last"]})


def test_a_result_with_done_true_ends_a_function_trial_as_finished(client, storage):
    analysis = tune.run(
        ends_itself,
        config={"x": tune.grid_search([1, 2]), "last": 3},
        metric="score",
        mode="max",
        scheduler=AsyncHyperBandScheduler(grace_period=10, max_t=100),
        storage_path=storage,
        verbose=0,
        client=client,
    )
    assert [t.status for t in analysis.trials] == ["TERMINATED", "TERMINATED"]
    assert [t.last_result["training_iteration"] for t in analysis.trials] == [3, 3]
    assert all(t.last_result["done"] for t in analysis.trials)


def fails_for_big_x(config):
    if config["x"] > 1:
        raise ValueError(f"x={config['x']} is too big for this model")
    tune.report({"loss": config["x"]})


def test_a_failed_trial_is_said_at_default_verbosity_and_by_get_best_result(
    client, storage, capsys
):
    """Not only an ERROR count in the table: the failure's last line and where its
    traceback is, once per trial; a best result that none reported says the trials failed."""
    grid = tune.Tuner(
        fails_for_big_x,
        param_space={"x": tune.grid_search([2, 3])},
        run_config=tune.RunConfig(name="fails", storage_path=storage),
        client=client,
    ).fit()
    out = capsys.readouterr().out
    for result in grid:
        name = os.path.basename(result.path)
        line = f"dasktune: trial {name} failed: ValueError: x={result.config['x']} is too big"
        assert line in out, out
        assert os.path.join(result.path, "error.txt") in out
    assert out.count(" failed: ValueError") == 2
    with pytest.raises(ValueError, match=r"2 of 2 trials failed \(the first: ValueError: x="):
        grid.get_best_result(metric="loss", mode="min")


def ray_1_checkpointing(config, checkpoint_dir=None):
    """Ray 1.x's function API, as its scripts were written: tune.checkpoint_dir(step) and
    a checkpoint_dir argument to resume from."""
    start = 0
    if checkpoint_dir:
        with open(os.path.join(checkpoint_dir, "state.json")) as f:
            start = json.load(f)["step"] + 1
    for step in range(start, 5):
        with tune.checkpoint_dir(step=step) as directory:
            with open(os.path.join(directory, "state.json"), "w") as f:
                json.dump({"step": step}, f)
        if step == 2 and checkpoint_dir is None:
            raise RuntimeError("the first run dies after its third checkpoint")
        tune.report(step=step, resumed_from=-1 if checkpoint_dir is None else start - 1)


def one_trial_retried_once(trainable, client, storage, **kwargs):
    """tune.run of one trial that may fail once: the trial and its results' rows."""
    analysis = tune.run(
        trainable, max_failures=1, storage_path=storage, verbose=0, client=client, **kwargs
    )
    [trial] = analysis.trials
    return analysis, trial, analysis.trial_dataframes[trial.trial_id]


def test_ray_1_checkpoint_dir_api_resumes_a_failed_trial(client, storage):
    analysis, trial, df = one_trial_retried_once(
        ray_1_checkpointing, client, storage, config={"x": 1}
    )
    # Steps 0-1 by the first run; it died in step 2 before reporting, so the second run
    # starts from step 1's checkpoint (written in step 1, carried by its report).
    assert list(df["step"]) == [0, 1, 2, 3, 4]
    assert list(df["resumed_from"]) == [-1, -1, 1, 1, 1]
    best = analysis.get_last_checkpoint(trial)
    with open(os.path.join(best.path, "state.json")) as f:
        assert json.load(f) == {"step": 4}


class Ray0Trainable(tune.Trainable):
    """Ray Tune 0.x's class API: _setup/_train/_save (a file path)/_restore/_stop."""

    def _setup(self, config):
        self.value = 0
        self.marker = config["marker"]

    def _train(self):
        self.value += 1
        if self.value == 3 and not os.path.exists(self.marker):
            open(self.marker, "w").close()
            raise RuntimeError("the first run dies in its third step")
        return {"value": self.value, "done": self.value >= 4}

    def _save(self, checkpoint_dir):
        path = os.path.join(checkpoint_dir, "value.json")
        with open(path, "w") as f:
            json.dump(self.value, f)
        return path

    def _restore(self, checkpoint_path):
        with open(checkpoint_path) as f:
            self.value = json.load(f)

    def _stop(self):
        with open(self.marker + ".stopped", "a") as f:
            f.write("x")


def test_ray_0_class_api_trains_saves_and_restores(client, storage, tmp_path):
    marker = str(tmp_path / "failed-once")
    _, trial, df = one_trial_retried_once(
        Ray0Trainable, client, storage, config={"marker": marker}, checkpoint_freq=1
    )
    # Steps 1-2, the failure in step 3, then from step 2's checkpoint: 3 and 4.
    assert list(df["value"]) == [1, 2, 3, 4]
    assert trial.status == "TERMINATED"
    with open(marker + ".stopped") as f:
        assert f.read() == "xx", "_stop ran once per run"


def reports_accuracy_only(config):
    tune.report({"accuracy": 0.5})


def test_tune_config_s_metric_must_be_reported_unless_strict_checking_is_off(
    client, storage, monkeypatch
):
    """As in Ray Tune: the Tuner's own metric is checked in every result (a misspelt metric
    or metrics nested by mistake left a silently empty column); Ray's variable turns the
    check off."""
    tuner = tune.Tuner(
        reports_accuracy_only,
        tune_config=tune.TuneConfig(metric="loss", mode="min"),
        run_config=tune.RunConfig(storage_path=storage, verbose=0),
        client=client,
    )
    with pytest.raises(ValueError, match=r"TuneConfig\(metric=\.\.\.\) needs the metric 'loss'"):
        tuner.fit()
    monkeypatch.setenv("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
    grid = tune.Tuner(
        reports_accuracy_only,
        tune_config=tune.TuneConfig(metric="loss", mode="min"),
        run_config=tune.RunConfig(storage_path=storage, verbose=0),
        client=client,
    ).fit()
    assert grid[0].metrics["accuracy"] == 0.5 and grid[0].error is None


def sums_its_parameters(config, indices=None, pair=None, mapping=None):
    tune.report({"total": sum(indices) + sum(pair) + sum(mapping.values()) + config["x"]})


def test_with_parameters_takes_lists_tuples_and_dicts_whole(client, storage):
    """Real scripts bind (X, y), index lists and dicts. Dask scatters a container element by
    element and returns a container of futures: fit() used to fail at the end, after every
    trial had run, releasing them."""
    grid = tune.Tuner(
        tune.with_parameters(
            sums_its_parameters, indices=list(range(1000)), pair=(1, 2), mapping={"a": 10}
        ),
        param_space={"x": tune.grid_search([0, 1])},
        run_config=tune.RunConfig(storage_path=storage, verbose=0),
        client=client,
    ).fit()
    assert sorted(r.metrics["total"] for r in grid) == [499513, 499514]
    assert len(client.scheduler_info()["workers"]) == 2
    assert not any(key.startswith("list-") for key in client.who_has()), "released whole"


def checkpoints_a_curve(config):
    """Loss falls then rises: the best checkpoint is neither the first nor the last."""
    resources = tune.get_context().get_trial_resources()
    for step, loss in enumerate([3.0, 1.0, 2.0], start=1):
        with tempfile.TemporaryDirectory() as directory:
            with open(os.path.join(directory, "step"), "w") as f:
                f.write(str(step))
            tune.report(
                {
                    "loss": loss + config["x"],
                    "cpus": resources.required_resources.get("CPU", 0),
                    "bundles": len(resources.bundles),
                },
                checkpoint=tune.Checkpoint.from_directory(directory),
            )


def test_what_scripts_read_after_fit_and_in_callbacks(client, storage):
    """Ray 2.x's analysis and callback names found in real scripts: Tuner.get_results(),
    also on a restored Tuner without running it; Result.get_best_checkpoint(metric, mode);
    Trial.path, local_experiment_path, checkpoint and evaluated_params; the trial's
    resources as Ray's placement group factory."""
    completed = []

    class Cleanup(tune.Callback):
        def on_trial_complete(self, iteration, trials, trial, **info):
            completed.append(
                (
                    trial.path,
                    trial.local_experiment_path,
                    trial.checkpoint.path,
                    trial.evaluated_params,
                )
            )

    tuner = tune.Tuner(
        tune.with_resources(checkpoints_a_curve, {"cpu": 1}),
        param_space={"x": tune.grid_search([0.0, 10.0])},
        tune_config=tune.TuneConfig(metric="loss", mode="min"),
        run_config=tune.RunConfig(
            name="after", storage_path=storage, verbose=0, callbacks=[Cleanup()]
        ),
        client=client,
    )
    grid = tuner.fit()
    assert tuner.get_results() is grid
    best = grid.get_best_result()
    assert best.config == {"x": 0.0} and best.metrics["cpus"] == 1 and best.metrics["bundles"] == 1
    with open(os.path.join(best.get_best_checkpoint("loss", "min").path, "step")) as f:
        assert f.read() == "2"
    with open(os.path.join(best.get_best_checkpoint("loss", "max").path, "step")) as f:
        assert f.read() == "1"
    assert best.get_best_checkpoint("no_such_metric", "min") is None
    experiment = os.path.join(storage, "after")
    assert sorted(e[3]["x"] for e in completed) == [0.0, 10.0]
    for path, experiment_path, checkpoint, _ in completed:
        assert experiment_path == experiment and os.path.dirname(path) == experiment
        assert os.path.dirname(checkpoint) == path
    restored = tune.Tuner.restore(experiment, trainable=checkpoints_a_curve, client=client)
    again = restored.get_results()
    assert sorted(r.metrics["loss"] for r in again) == [2.0, 12.0]
    assert again.get_best_result().config == {"x": 0.0}, "the Tuner's metric and mode"
    with pytest.raises(RuntimeError, match="call fit\\(\\) first"):
        tune.Tuner(checkpoints_a_curve).get_results()


def reports_through_its_reporter(config, reporter):
    """Ray 0.x-1.x's function API: train(config, reporter), reporter(metric=value)."""
    for step in range(3):
        reporter(mean_loss=config["x"] / (step + 1), step=step)


def test_ray_1_analysis_keys_trials_by_their_directories(client, storage):
    """Ray 1.x's analysis pattern, all over real scripts: trial_dataframes and
    get_all_configs indexed by get_best_logdir(), tune.Analysis(dir, metric, mode), and
    fetch_trial_dataframes()."""
    analysis = tune.run(
        reports_through_its_reporter,
        config={"x": tune.grid_search([1.0, 2.0])},
        metric="mean_loss",
        mode="min",
        name="ray1",
        storage_path=storage,
        verbose=0,
        client=client,
    )
    best = analysis.get_best_logdir()
    assert list(analysis.trial_dataframes[best]["step"]) == [0, 1, 2]
    assert analysis.get_all_configs()[best] == {"x": 1.0}
    assert best in analysis.trial_dataframes and best + "/" in analysis.trial_dataframes
    trial = analysis.trials[0]
    assert analysis.trial_dataframes[trial.trial_id] is not None, "trial ids still work"
    with pytest.raises(KeyError):
        analysis.trial_dataframes[os.path.join(storage, "ray1", "no_such_trial")]
    reread = tune.Analysis(os.path.join(storage, "ray1"), "mean_loss", "min")
    assert reread.best_config == {"x": 1.0}
    frames = reread.fetch_trial_dataframes()
    assert sorted(len(df) for df in frames.values()) == [3, 3]


class SavesAFilePath(tune.Trainable):
    """save_checkpoint returns the file it wrote (Ray's contract): on restore,
    load_checkpoint gets that file where the checkpoint now lies."""

    def setup(self, config):
        self.value = 0
        self.marker = config["marker"]

    def step(self):
        self.value += 1
        if self.value == 3 and not os.path.exists(self.marker):
            open(self.marker, "w").close()
            raise RuntimeError("the first run dies in its third step")
        return {"value": self.value, "done": self.value >= 4}

    def save_checkpoint(self, checkpoint_dir):
        path = os.path.join(checkpoint_dir, "model.json")
        with open(path, "w") as f:
            json.dump(self.value, f)
        return path

    def load_checkpoint(self, checkpoint):
        with open(checkpoint) as f:
            self.value = json.load(f)


def test_a_class_trainable_s_saved_file_path_comes_back_on_restore(client, storage, tmp_path):
    _, trial, df = one_trial_retried_once(
        SavesAFilePath,
        client,
        storage,
        config={"marker": str(tmp_path / "failed-once")},
        checkpoint_freq=1,
    )
    assert list(df["value"]) == [1, 2, 3, 4]
    assert trial.status == "TERMINATED"


# -- Ray Tune 1.x's tune.Experiment and tune.run_experiments ------------------------------


def counting(config):
    for step in range(config["steps"]):
        tune.report({"score": config["x"] * (step + 1)})


def test_run_experiments_runs_each_named_experiment_and_returns_all_trials(client, storage):
    # One scheduler for both (each gets its own copy); no rung is reached here.
    scheduler = AsyncHyperBandScheduler(metric="score", mode="max", grace_period=5, max_t=10)
    trials = tune.run_experiments(
        {
            # Ray 1.x's dict form, with its older local_dir.
            "first": {
                "run": counting,
                "config": {"x": tune.grid_search([1, 2]), "steps": 3},
                "stop": {"training_iteration": 2},
                "local_dir": storage,
            },
            "second": tune.Experiment(
                "second",
                counting,
                config={"x": 5, "steps": 4},
                num_samples=2,
                storage_path=storage,
            ),
        },
        scheduler=scheduler,
        verbose=0,
        client=client,
    )
    assert len(trials) == 4
    first, second = trials[:2], trials[2:]
    assert sorted(t.config["x"] for t in first) == [1, 2]
    assert all(t.last_result["training_iteration"] == 2 for t in first), "the stop held"
    assert sorted(t.last_result["score"] for t in first) == [2, 4]
    assert all(t.last_result["score"] == 20 for t in second)
    assert {os.path.dirname(t.path) for t in first} == {os.path.join(storage, "first")}
    assert {os.path.dirname(t.path) for t in second} == {os.path.join(storage, "second")}
    assert all(t.status == "TERMINATED" for t in trials)


def test_tune_run_takes_an_experiment_and_refuses_its_settings_twice(client, storage):
    experiment = tune.Experiment(
        "single", counting, config={"x": 3, "steps": 2}, storage_path=storage
    )
    analysis = tune.run(experiment, metric="score", mode="max", verbose=0, client=client)
    assert analysis.experiment_path == os.path.join(storage, "single")
    assert analysis.best_result["score"] == 6
    with pytest.raises(ValueError, match=r"config belongs to the experiment.*tune.Experiment"):
        tune.run(experiment, config={"x": 1}, verbose=0, client=client)


def test_experiments_described_wrongly_are_refused_with_the_fix():
    with pytest.raises(TypeError, match=r"tune.Experiment\('e', scheduler=\.\.\.\).*tune.run"):
        tune.Experiment("e", counting, scheduler="asha")
    with pytest.raises(TypeError, match=r"the trainable under 'run'"):
        tune.run_experiments({"e": {"config": {"x": 1}}})
    with pytest.raises(TypeError, match=r"pass a tune.Experiment, a list of them, or a dict"):
        tune.run_experiments([counting])
    with pytest.raises(TypeError, match=r"name must be a non-empty string"):
        tune.Experiment("", counting)


def test_schedulers_and_searchers_by_ray_s_names_take_their_arguments():
    from dasktune.schedulers import AsyncHyperBandScheduler, PopulationBasedTraining
    from dasktune.search.optuna import OptunaSearch

    asha = tune.create_scheduler("async_hyperband", metric="loss", mode="min", max_t=7)
    assert isinstance(asha, AsyncHyperBandScheduler)
    assert (asha.metric, asha.mode, asha._max_t) == ("loss", "min", 7)
    pbt = tune.create_scheduler("PBT", hyperparam_mutations={"lr": [0.1, 0.01]})
    assert isinstance(pbt, PopulationBasedTraining)
    optuna_search = tune.create_searcher("optuna", metric="loss", mode="min")
    assert isinstance(optuna_search, OptunaSearch) and optuna_search.metric == "loss"
    with pytest.raises(ValueError, match=r"create_scheduler\(scheduler=\.\.\.\)` is 'asha'.*fifo"):
        tune.create_scheduler("asha")
    with pytest.raises(ValueError, match=r"create_searcher\(search_alg=\.\.\.\)` is 'bohb'"):
        tune.create_searcher("bohb")


def test_ray_1x_settings_gone_from_ray_2_are_accepted(client, storage, caplog):
    import logging

    with caplog.at_level(logging.INFO, logger="dasktune"):
        analysis = tune.run(
            counting,
            name="ray1",
            config={"x": 2, "steps": 2},
            storage_path=storage,
            verbose=0,
            client=client,
            loggers=[object],
            queue_trials=True,
            global_checkpoint_period=10,
            sync_to_driver=False,
            upload_dir="",
        )
    assert analysis.trials[0].last_result["score"] == 4
    assert "tune.run(loggers) has no effect" in caplog.text and "LoggerCallback" in caplog.text
    # run_errored_only=True is Ray 1.x's resume="ERRORED_ONLY": there must be an experiment.
    with pytest.raises(ValueError, match="no experiment to resume at"):
        tune.run(
            counting,
            name="never_ran",
            storage_path=storage,
            run_errored_only=True,
            verbose=0,
            client=client,
        )
    experiment = tune.Experiment(
        "ray1_exp",
        counting,
        config={"x": 1, "steps": 1},
        storage_path=storage,
        sync_to_driver=False,
        loggers=None,
    )
    assert experiment.spec["sync_to_driver"] is False
