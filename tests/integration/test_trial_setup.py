"""What Ray Tune scripts expect of a trial's surroundings, on a real cluster: names,
directories, working directory, output files, save/restore callbacks, numpy results."""

from __future__ import annotations

import os
import pathlib
import tempfile
import time

import numpy as np
import pandas as pd
import pytest

import dasktune as tune
from dasktune.logger import LoggerCallback
from dasktune.result import SHOULD_CHECKPOINT


def writes_relative_files(config):
    # Ray's pbt_convnet_function example saves "my_model/checkpoint.pt" relative to the
    # working directory: concurrent trials must not share it.
    os.makedirs("my_model", exist_ok=True)
    with open(os.path.join("my_model", "value.txt"), "w") as f:
        f.write(str(config["x"]))
    print(f"printed by trial {config['x']}")
    with open(os.path.join("my_model", "value.txt")) as f:
        tune.report(
            {
                "read_back": int(f.read()),
                "cwd": os.getcwd(),
                "orig": os.environ.get("TUNE_ORIG_WORKING_DIR"),
            }
        )


def test_trials_run_in_their_own_directory_as_in_ray(client, storage):
    grid = tune.Tuner(
        writes_relative_files,
        param_space={"x": tune.grid_search([1, 2, 3, 4])},
        run_config=tune.RunConfig(name="cwd", storage_path=storage, verbose=0),
        client=client,
    ).fit()
    for result in grid:
        assert result.metrics["read_back"] == result.config["x"]
        assert result.metrics["cwd"] == result.path
        assert result.metrics["orig"] and result.metrics["orig"] != result.path
        assert os.path.exists(os.path.join(result.path, "my_model", "value.txt"))


def reports_its_directory(config):
    tune.report({"cwd": os.getcwd()})  # writes nothing: here that would be the worker's cwd


def where_a_trial_runs(client, storage, name, **tune_config):
    """The result of one trial that reports its working directory."""
    return tune.Tuner(
        reports_its_directory,
        param_space={"x": 1},
        tune_config=tune.TuneConfig(**tune_config),
        run_config=tune.RunConfig(name=name, storage_path=storage, verbose=0),
        client=client,
    ).fit()[0]


def test_chdir_to_trial_dir_false_keeps_the_worker_s_directory(client, storage):
    result = where_a_trial_runs(client, storage, "nocwd", chdir_to_trial_dir=False)
    assert result.metrics["cwd"] != result.path


def test_ray_s_chdir_variable_keeps_the_worker_s_directory(client, storage, monkeypatch):
    """Ray 2.8+ scripts set RAY_CHDIR_TO_TRIAL_DIR=0 (in the shell or in os.environ) so
    that relative paths to their data work; TuneConfig's argument still wins."""
    monkeypatch.setenv("RAY_CHDIR_TO_TRIAL_DIR", "0")
    result = where_a_trial_runs(client, storage, "env-nocwd")
    assert result.metrics["cwd"] != result.path
    assert result.log_dir == pathlib.Path(result.path), "Ray 2.0-2.6's name for path"
    result = where_a_trial_runs(client, storage, "env-cwd", chdir_to_trial_dir=True)
    assert result.metrics["cwd"] == result.path


def test_log_to_file_keeps_what_each_trial_prints(client, storage):
    grid = tune.Tuner(
        writes_relative_files,
        param_space={"x": tune.grid_search([1, 2])},
        run_config=tune.RunConfig(
            name="logs", storage_path=storage, verbose=0, log_to_file=("out.txt", "err.txt")
        ),
        client=client,
    ).fit()
    for result in grid:
        with open(os.path.join(result.path, "out.txt")) as f:
            assert f.read() == f"printed by trial {result.config['x']}\n"
        assert os.path.exists(os.path.join(result.path, "err.txt"))


def linear(config):
    for i in range(3):
        tune.report({"score": config["x"] * (i + 1)})


def test_name_creators_name_trials_and_their_directories(client, storage):
    grid = tune.Tuner(
        linear,
        param_space={"x": tune.grid_search([1, 2])},
        tune_config=tune.TuneConfig(
            trial_name_creator=lambda t: f"{t.trainable_name}-x{t.config['x']}",
            trial_dirname_creator=lambda t: f"dir_{t.trial_id}",
        ),
        run_config=tune.RunConfig(name="names", storage_path=storage, verbose=0),
        client=client,
    ).fit()
    names = sorted(os.path.basename(r.path) for r in grid)
    assert all(n.startswith("dir_") for n in names) and len(set(names)) == 2
    analysis = tune.ExperimentAnalysis(os.path.join(storage, "names"))
    assert sorted(t.trial_name for t in analysis.trials) == ["linear-x1", "linear-x2"]


@pytest.mark.parametrize(
    "creator, message",
    [
        (lambda t: "same", "returned 'same' for two trials"),
        (lambda t: "a/b", "plain directory name"),
        (lambda t: "", "non-empty string"),
    ],
)
def test_bad_directory_names_are_refused(client, storage, creator, message):
    with pytest.raises((ValueError, TypeError), match=message):
        tune.Tuner(
            linear,
            param_space={"x": tune.grid_search([1, 2])},
            tune_config=tune.TuneConfig(trial_dirname_creator=creator),
            run_config=tune.RunConfig(name="bad", storage_path=storage, verbose=0),
            client=client,
        ).fit()


class Events(LoggerCallback):
    def __init__(self):
        self.events: list[tuple[str, str]] = []

    def log_trial_save(self, trial):
        self.events.append(("save", os.path.basename(trial.checkpoint_path)))

    def log_trial_restore(self, trial):
        self.events.append(("restore", os.path.basename(trial.checkpoint_path)))


def fails_once(config):
    checkpoint = tune.get_checkpoint()
    start = 0 if checkpoint is None else 2
    for i in range(start, 4):
        directory = tempfile.mkdtemp()
        tune.report({"i": i}, checkpoint=tune.Checkpoint.from_directory(directory))
        if i == 1 and checkpoint is None:
            raise RuntimeError("once")


def test_ray_logger_callbacks_hear_saves_and_restores(client, storage):
    events = Events()
    grid = tune.Tuner(
        fails_once,
        param_space={"x": 1},
        run_config=tune.RunConfig(
            name="events",
            storage_path=storage,
            verbose=0,
            callbacks=[events],
            failure_config=tune.FailureConfig(max_failures=1),
        ),
        client=client,
    ).fit()
    assert grid[0].status == "TERMINATED"
    assert events.events == [
        ("save", "checkpoint_000000"),
        ("save", "checkpoint_000001"),
        ("restore", "checkpoint_000001"),
        ("save", "checkpoint_000002"),
        ("save", "checkpoint_000003"),
    ]


def numpy_and_pandas(config):
    x = np.float64(config["x"])
    for h in range(3):
        tune.report(
            {
                "reward": np.tanh(x) * h,
                "step": np.int64(h),
                "ok": np.bool_(h > 0),
                "mean": pd.Series([x, 2 * x]).mean(),
                7: "int key",
                "shape": (2, 3),
                "nested": {"score": np.float32(0.5)},
            }
        )


def test_numpy_and_pandas_values_reach_the_driver(client, storage):
    """tune.report({"reward": np.tanh(x) * h}) used to fail the trial (msgpack refused it)."""
    grid = tune.Tuner(
        numpy_and_pandas,
        param_space={"x": 0.5},
        tune_config=tune.TuneConfig(metric="reward", mode="max"),
        run_config=tune.RunConfig(name="np", storage_path=storage, verbose=0),
        client=client,
    ).fit()
    result = grid[0]
    assert result.error is None, result.error
    frame = result.metrics_dataframe
    assert frame["reward"].tolist() == pytest.approx([0.0, np.tanh(0.5), 2 * np.tanh(0.5)])
    assert frame["step"].tolist() == [0, 1, 2] and frame["ok"].tolist() == [False, True, True]
    assert result.metrics["7"] == "int key" and list(result.metrics["shape"]) == [2, 3]
    assert result.metrics["nested"]["score"] == 0.5 and result.metrics["mean"] == 0.75
    assert grid.get_best_result().metrics["reward"] == pytest.approx(2 * np.tanh(0.5))


def test_ray_s_mock_trainable_runs_and_recovers_from_its_planned_error(client, storage):
    """hyperband_example's trainable, through dasktune.utils.mock_trainable: it fails after
    its first step until restored from a checkpoint, then climbs its tanh curve."""
    import math

    from dasktune.utils.mock_trainable import MOCK_ERROR_KEY, MyTrainableClass

    grid = tune.Tuner(
        MyTrainableClass,
        param_space={"width": tune.grid_search([1, 5]), "height": 10, MOCK_ERROR_KEY: True},
        run_config=tune.RunConfig(
            name="mock",
            storage_path=storage,
            verbose=0,
            stop={"training_iteration": 4},
            checkpoint_config=tune.CheckpointConfig(checkpoint_frequency=1),
            failure_config=tune.FailureConfig(max_failures=1),
        ),
        client=client,
    ).fit()
    assert not grid.errors
    for result in grid:
        assert result.metrics["training_iteration"] == 4
        expected = 10 * math.tanh(4 / result.config["width"])
        assert result.metrics["episode_reward_mean"] == pytest.approx(expected)
        assert os.path.exists(os.path.join(result.path, "error.txt"))  # it did fail once


class StepsUntilSaved(tune.Trainable):
    """Steps until it has been asked to save once (or 400 steps), then ends."""

    def setup(self, config):
        self.saves = 0

    def step(self):
        time.sleep(0.05)
        return {"saves": self.saves, "done": self.saves > 0 or self.iteration >= 400}

    def save_checkpoint(self, checkpoint_dir):
        self.saves += 1
        with open(os.path.join(checkpoint_dir, "it"), "w") as f:
            f.write(str(self.iteration))

    def load_checkpoint(self, checkpoint_dir):
        pass


class AskForACheckpoint(tune.Callback):
    """Ray's custom_checkpointing_with_callback: ask once, at iteration 3."""

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if result["training_iteration"] == 3:
            result[SHOULD_CHECKPOINT] = True


def test_a_callback_s_should_checkpoint_makes_a_class_trainable_save(client, storage):
    grid = tune.Tuner(
        StepsUntilSaved,
        run_config=tune.RunConfig(
            name="asked", storage_path=storage, verbose=0, callbacks=[AskForACheckpoint()]
        ),
        client=client,
    ).fit()
    result = grid[0]
    assert not grid.errors
    assert result.metrics["training_iteration"] < 400, "the request never reached the trial"
    assert result.checkpoint is not None  # no checkpoint_frequency, no checkpoint_at_end
    with open(os.path.join(result.checkpoint.path, "it")) as f:
        saved_at = int(f.read())
    assert 3 <= saved_at < 400
    assert result.metrics_dataframe["saves"].max() <= 1
