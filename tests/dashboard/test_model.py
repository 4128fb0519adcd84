"""The page's data: records folded into a model, read back from an experiment directory."""

from __future__ import annotations

import json
import os

import pytest

from dasktune.dashboard._follow import RUNGS_FILE, ExperimentFollower
from dasktune.dashboard._model import ExperimentModel, TrialView
from dasktune.dashboard._views import Axis, parallel_axes, parse_filter, table_row


def test_records_fold_into_versioned_trials():
    model = ExperimentModel()
    model.apply({"kind": "experiment", "name": "e", "metric": "loss", "mode": "min", "total": 3})
    model.apply({"kind": "trial", "id": "t_00000", "name": "a", "index": 0, "config": {"lr": 1}})
    model.apply({"kind": "trial", "id": "t_00001", "name": "b", "index": 1, "config": {"lr": 2}})
    seen = model.version
    for it, loss in ((1, 0.9), (3, 0.5), (2, 0.7)):  # out of order: kept sorted by iteration
        model.apply(
            {
                "kind": "result",
                "id": "t_00000",
                "iteration": it,
                "metrics": {"loss": loss, "flag": True},
            }
        )
    assert [t.name for t in model.changed_since(seen)] == ["a"]  # only what changed
    a = model.trials["t_00000"]
    assert list(a.curve("loss")[0]) == [1, 2, 3] and list(a.curve("loss")[1]) == [0.9, 0.7, 0.5]
    assert a.status == "RUNNING" and a.iteration == 3 and a.last == {"loss": 0.5}
    assert "flag" not in model.metrics  # bools are not curves
    model.apply({"kind": "result", "id": "t_00001", "iteration": 1, "metrics": {"loss": 0.4}})
    assert model.best()[0].name == "b" and model.best(mode="max")[0].name == "a"
    model.apply({"kind": "result", "id": "unknown", "iteration": 1, "metrics": {"loss": 0}})
    model.apply({"kind": "status", "id": "t_00001", "status": "TERMINATED"})
    assert model.counts()["TERMINATED"] == 1 and model.counts()["RUNNING"] == 1
    model.apply({"kind": "end", "status": "finished"})
    assert model.finished() and model.meta_version == model.version


def test_filter_words_and_comparisons():
    rows = [
        {"id": "1", "trial": "t_1", "status": "RUNNING", "config/lr": 0.001, "last": 0.5},
        {"id": "2", "trial": "t_2", "status": "TERMINATED", "config/lr": 0.1, "last": ""},
        {"id": "3", "trial": "t_3", "status": "ERROR", "config/opt": "adam", "last": 0.9},
    ]

    def kept(text):
        test = parse_filter(text)
        return [r["trial"] for r in rows if test(r)]

    assert kept("") == ["t_1", "t_2", "t_3"]
    assert kept("lr<0.01") == ["t_1"]
    assert kept("running") == ["t_1"]
    assert kept("last>=0.5 opt=adam") == ["t_3"]
    assert kept("status!=error lr>0.01") == ["t_2"]


def test_parallel_axes_choose_log_scales_and_categories():
    trials = [
        TrialView(str(i), f"t{i}", i, config={"lr": lr, "opt": opt, "seed": 1}, last={"acc": acc})
        for i, (lr, opt, acc) in enumerate(
            [(1e-4, "sgd", 0.1), (1e-2, "adam", 0.5), (1e-1, "sgd", 0.9)]
        )
    ]
    axes = parallel_axes(trials, ["lr", "opt", "seed"], "acc")
    assert [(a.name, a.kind) for a in axes] == [
        ("lr", "log"),
        ("opt", "category"),
        ("acc", "linear"),
    ]  # constant seed left out
    assert axes[0].position(1e-2) == pytest.approx(2 / 3)
    assert axes[1].position("sgd") == 1.0 and axes[1].label(False) == "adam"
    assert Axis("x", "linear", 0, 1).position("text") != Axis("x", "linear", 0, 1).position(0.5)
    row = table_row(trials[1], "acc", "max", ["lr", "opt"])
    assert row["config/lr"] == 0.01 and row["config/opt"] == "adam" and row["last"] == 0.5


def test_the_follower_reads_a_real_experiment(finished_experiment):
    path = finished_experiment.experiment_path
    follower = ExperimentFollower(path)
    version = follower.poll()
    model = follower.model
    assert model.finished() and model.metric == "score" and model.mode == "max"
    assert len(model.trials) == len(finished_experiment) == 12
    for result in finished_experiment:
        view = next(t for t in model.trials.values() if t.name == os.path.basename(result.path))
        frame = result.metrics_dataframe
        assert list(view.curve("score")[1]) == pytest.approx(list(frame["score"]))
        assert view.status == "TERMINATED"
        if len(frame) < 12:  # ASHA stopped it: marked where
            assert view.marks == [(float(frame["training_iteration"].iloc[-1]), "stopped")]
    # The rungs that the driver wrote for it, and nothing new on a second poll.
    assert os.path.exists(os.path.join(path, RUNGS_FILE))
    assert [r["milestone"] for r in model.rungs] == [1, 2, 4, 8]
    assert follower.poll() == version


def test_the_follower_follows_files_as_they_grow(tmp_path):
    """Lines appended, a line half written, and the last line rewritten when a trial ends."""
    journal = tmp_path / "journal.jsonl"
    trial_dir = tmp_path / "train_00000"
    trial_dir.mkdir()
    results = trial_dir / "result.json"

    def append(path, *records, tail=""):
        with open(path, "a") as f:
            f.write("".join(json.dumps(r) + "\n" for r in records) + tail)

    append(
        journal,
        {"event": "experiment", "name": "x", "metric": "m", "mode": "max", "trial_id_prefix": "p"},
        {
            "event": "trial",
            "id": "p_00000",
            "index": 0,
            "dir": "train_00000",
            "config": {"lr": 0.1, "net": {"depth": 2}},
        },
    )
    append(
        results,
        {"training_iteration": 1, "m": 1.0, "done": False},
        tail='{"training_iteration": 2, "m"',
    )  # the writer is mid-line
    follower = ExperimentFollower(str(tmp_path))
    follower.poll()
    trial = follower.model.trials["p_00000"]
    assert trial.config == {"lr": 0.1, "net/depth": 2}
    assert list(trial.curve("m")[1]) == [1.0]
    with open(results, "a") as f:
        f.write(': 2.0, "done": false}\n')
    follower.poll()
    assert list(trial.curve("m")[1]) == [1.0, 2.0]
    # The driver ends the trial: it rewrites the last line as done, then journals the status.
    data = results.read_bytes()
    cut = data.rstrip(b"\n").rfind(b"\n") + 1
    results.write_bytes(
        data[:cut] + json.dumps({"training_iteration": 2, "m": 2.5, "done": True}).encode() + b"\n"
    )
    append(
        journal,
        {"event": "status", "id": "p_00000", "status": "TERMINATED"},
        {"event": "end", "status": "finished"},
    )
    follower.poll()
    assert list(trial.curve("m")[1]) == [1.0, 2.5] and trial.status == "TERMINATED"
    assert follower.model.finished()


def test_a_resumed_experiment_runs_again(tmp_path):
    records = [
        {"event": "experiment", "name": "x", "trial_id_prefix": "p"},
        {"event": "end", "status": "interrupted", "reason": "SIGTERM"},
        {"event": "resumed", "when": 1.0},
    ]
    (tmp_path / "journal.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    follower = ExperimentFollower(str(tmp_path))
    follower.poll()
    assert not follower.model.finished()
