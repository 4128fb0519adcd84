"""TensorBoard logging, read back with TensorBoard's own event reader.

dasktune writes the event files itself; TensorBoard's reader checks their framing
(TFRecord checksums) and their protobufs.
"""

from __future__ import annotations

import glob
import math
import os

import dask
import pytest

import dasktune as tune
from dasktune.logger import TBXLoggerCallback
from dasktune.trial import Trial

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
plugin_data_pb2 = pytest.importorskip("tensorboard.plugins.hparams.plugin_data_pb2")
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(tune.__file__)))


def varied(config):
    for i in range(1, 4):
        tune.report(
            {
                "score": config["lr"] * i,
                "nested": {"a": i},
                "nan": float("nan"),
                "flag": True,
                "label": "text",
            }
        )


def read(trial_dir: str):
    files = glob.glob(os.path.join(trial_dir, "events.out.tfevents.*"))
    assert len(files) == 1, files  # one event file per trial, in the trial's own directory
    acc = event_accumulator.EventAccumulator(trial_dir)
    acc.Reload()
    return acc


def hparams_of(acc) -> dict:
    """The config that TensorBoard's HParams tab shows for this run."""
    content = acc.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    data = plugin_data_pb2.HParamsPluginData.FromString(content)
    values = {}
    for key, value in data.session_start_info.hparams.items():
        kind = value.WhichOneof("kind")
        values[key] = getattr(value, kind)
    return values


def test_every_numeric_metric_becomes_a_scalar_per_iteration(client, storage):
    grid = tune.Tuner(
        varied,
        param_space={"lr": tune.grid_search([0.5, 2.0]), "layers": [4, 8]},
        run_config=tune.RunConfig(
            name="tb", storage_path=storage, verbose=0, callbacks=[TBXLoggerCallback()]
        ),
        client=client,
    ).fit()
    for result in grid:
        acc = read(result.path)
        tags = set(acc.Tags()["scalars"])
        assert {"dasktune/score", "dasktune/nested/a", "dasktune/time_total_s"} <= tags
        # NaN, bools, strings and bookkeeping fields are not curves.
        assert not tags & {
            "dasktune/nan",
            "dasktune/flag",
            "dasktune/label",
            "dasktune/training_iteration",
            "dasktune/timestamp",
            "dasktune/pid",
        }
        score = acc.Scalars("dasktune/score")
        lr = result.config["lr"]
        assert [e.step for e in score] == [1, 2, 3]
        assert [e.value for e in score] == pytest.approx([lr, 2 * lr, 3 * lr])
        assert [e.value for e in acc.Scalars("dasktune/nested/a")] == [1, 2, 3]
        # The HParams tab: the trial's config, a list shown as its repr.
        assert hparams_of(acc) == {"lr": pytest.approx(lr), "layers": "[4, 8]"}


def test_every_experiment_is_logged_unless_the_setting_says_no(client, storage):
    grid = tune.Tuner(
        varied,
        param_space={"lr": 1.0},
        run_config=tune.RunConfig(storage_path=storage, verbose=0),
        client=client,
    ).fit()
    assert [e.value for e in read(grid[0].path).Scalars("dasktune/score")] == [1.0, 2.0, 3.0]
    with dask.config.set({"dasktune.tensorboard": False}):
        grid = tune.Tuner(
            varied,
            param_space={"lr": 1.0},
            run_config=tune.RunConfig(storage_path=storage, verbose=0),
            client=client,
        ).fit()
    assert not glob.glob(os.path.join(grid[0].path, "events.out.tfevents.*"))


def test_no_tensorboard_package_is_imported(tmp_path):
    """Writing events costs no tensorboardX or torch import (about a second each)."""
    import subprocess
    import sys

    code = (
        "import sys, math; from dasktune.logger import TBXLoggerCallback; "
        "from dasktune.trial import Trial; c = TBXLoggerCallback(); "
        f"t = Trial('t', {{'lr': 1}}, local_path={str(tmp_path)!r}); "
        "[c.on_trial_result(1, [t], t, {'training_iteration': i, 'loss': 1 / i}) "
        "for i in range(1, 4)]; c.on_experiment_end([t]); "
        "print(sorted(m for m in ('tensorboardX', 'torch', 'tensorboard') "
        "if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": _ROOT},
    )
    assert out.stdout.strip() == "[]"
    assert [e.value for e in read(str(tmp_path)).Scalars("dasktune/loss")] == pytest.approx(
        [1.0, 0.5, 1 / 3]
    )


def test_a_trial_that_never_completes_is_written_out_at_the_end(tmp_path):
    """Pure hook logic: the experiment's end closes what is still open, hparams included."""
    callback = TBXLoggerCallback()
    trial = Trial("t1", {"lr": 0.1, "opt": {"name": "sgd"}}, local_path=str(tmp_path))
    callback.on_trial_result(1, [trial], trial, {"training_iteration": 1, "loss": math.inf})
    callback.on_trial_result(1, [trial], trial, {"training_iteration": 2, "loss": 0.5})
    callback.on_experiment_end([trial])
    acc = read(str(tmp_path))
    assert [(e.step, e.value) for e in acc.Scalars("dasktune/loss")] == [(2, 0.5)]
    assert hparams_of(acc) == {"lr": pytest.approx(0.1), "opt/name": "sgd"}


def test_bad_flush_interval_is_refused():
    with pytest.raises(ValueError, match=r"TBXLoggerCallback\(flush_secs=...\)` is 0"):
        TBXLoggerCallback(flush_secs=0)
