"""dasktune.integration.xgboost and .lightgbm: real boosting, reported round by round to a
Tuner on the real cluster, stopped by ASHA, checkpointed and loaded back."""

from __future__ import annotations

import importlib
import sys

import numpy as np
import pytest

import dasktune as tune
from dasktune.schedulers import ASHAScheduler

ROUNDS = 12  # below ASHA's max_t: the trials that survive end by themselves
FREQUENCY = 5  # checkpoints after rounds 5 and 10, and one at the end (12)
# The good learning rate's two trials run first (2 workers, a trial each), alike to the last
# digit, so that neither stops the other; the two slow ones reach ASHA's first rung (2
# rounds) after those did, far worse, and are stopped there, whatever the timing.
RATES = [0.5, 0.5, 1e-4, 2e-4]


def data():
    from sklearn.datasets import make_classification

    x, y = make_classification(n_samples=500, n_features=8, n_informative=5, random_state=0)
    return x[:400], y[:400], x[400:], y[400:]


# -- the two libraries -------------------------------------------------------------------


def xgb_params(rate):
    return {
        "objective": "binary:logistic",
        "eval_metric": ["logloss", "error"],
        "eta": rate,
        "max_depth": 3,
        "nthread": 1,
        "seed": 0,
    }


def xgb_train(config):
    import xgboost

    from dasktune.integration.xgboost import TuneReportCheckpointCallback

    x, y, x_valid, y_valid = data()
    dtrain, dvalid = xgboost.DMatrix(x, y), xgboost.DMatrix(x_valid, y_valid)
    xgboost.train(
        xgb_params(config["rate"]),
        dtrain,
        num_boost_round=ROUNDS,
        evals=[(dtrain, "train"), (dvalid, "eval")],
        verbose_eval=False,
        callbacks=[TuneReportCheckpointCallback(config["metrics"], frequency=FREQUENCY)],
    )


def xgb_predictions(booster):
    """The booster's predictions for the validation data, and its number of rounds."""
    import xgboost

    return booster.predict(xgboost.DMatrix(data()[2])), booster.num_boosted_rounds()


def xgb_local(rate, rounds):
    import xgboost

    x, y, _, _ = data()
    return xgboost.train(xgb_params(rate), xgboost.DMatrix(x, y), rounds)


def lgb_params(rate):
    return {
        "objective": "binary",
        "metric": ["binary_logloss", "binary_error"],
        "learning_rate": rate,
        "num_leaves": 7,
        "min_data_in_leaf": 5,
        "num_threads": 1,
        "deterministic": True,
        "seed": 0,
        "verbose": -1,
    }


def lgb_train(config):
    import lightgbm

    from dasktune.integration.lightgbm import TuneReportCheckpointCallback

    x, y, x_valid, y_valid = data()
    train_set = lightgbm.Dataset(x, y)
    lightgbm.train(
        lgb_params(config["rate"]),
        train_set,
        num_boost_round=ROUNDS,
        valid_sets=[train_set, lightgbm.Dataset(x_valid, y_valid, reference=train_set)],
        valid_names=["train", "eval"],
        callbacks=[TuneReportCheckpointCallback(config["metrics"], frequency=FREQUENCY)],
    )


def lgb_predictions(booster):
    return booster.predict(data()[2]), booster.current_iteration()


def lgb_local(rate, rounds):
    import lightgbm

    x, y, _, _ = data()
    return lightgbm.train(lgb_params(rate), lightgbm.Dataset(x, y), rounds)


#: library: (its trainable, helpers, the metric ASHA reads, the one renamed "error")
LIBRARIES = {
    "xgboost": (xgb_train, xgb_predictions, xgb_local, "logloss", "error"),
    "lightgbm": (lgb_train, lgb_predictions, lgb_local, "binary_logloss", "binary_error"),
}


@pytest.mark.parametrize("library", list(LIBRARIES))
def test_rounds_reach_asha_and_checkpoints_load(client, storage, library):
    pytest.importorskip(library)
    callback = importlib.import_module(f"dasktune.integration.{library}")
    get_model = callback.TuneReportCheckpointCallback.get_model
    train, predictions, local, loss, error = LIBRARIES[library]
    metric = f"eval-{loss}"
    metrics = {metric: metric, "error": f"eval-{error}"}  # the dict form renames eval-error

    results = tune.Tuner(
        lambda config: train({**config, "metrics": metrics}),
        param_space={"rate": tune.grid_search(RATES)},
        tune_config=tune.TuneConfig(
            scheduler=ASHAScheduler(metric=metric, mode="min", max_t=20, grace_period=2),
            # One at a time, in the grid's order: the fast trials fill the rung before the
            # slow ones reach it. Two at a time, Dask may start a slow one beside the first
            # fast one, and which reaches the rung first is a race (seen under load).
            max_concurrent_trials=1,
        ),
        run_config=tune.RunConfig(storage_path=storage, verbose=0),
        client=client,
    ).fit()

    assert results.num_errors == 0, results.errors
    stopped = []
    for result in results:
        frame = result.metrics_dataframe
        rounds = len(frame)
        assert list(frame["training_iteration"]) == list(range(1, rounds + 1))
        for row in frame.to_dict("records"):  # every round: plain floats, renamed
            assert type(row[metric]) is float and type(row["error"]) is float
        assert not {f"eval-{error}", f"train-{loss}", f"train-{error}"} & set(frame.columns)
        assert type(result.metrics[metric]) is float
        assert rounds <= ROUNDS
        if rounds < ROUNDS:
            stopped.append(result)
        # Every FREQUENCY rounds, and one at the end: stopped at a rung, a trial still has
        # a checkpoint of its last round.
        iterations = sorted(m["training_iteration"] for _, m in result.best_checkpoints)
        assert iterations == sorted({*range(FREQUENCY, rounds + 1, FREQUENCY), rounds})
        by_round = {m["training_iteration"]: c for c, m in result.best_checkpoints}
        assert result.checkpoint == by_round[rounds]
        # The model of the last round: as trained here, to the last digit.
        loaded, loaded_rounds = predictions(get_model(result.checkpoint))
        expected, _ = predictions(local(result.config["rate"], rounds))
        assert loaded_rounds == rounds
        np.testing.assert_allclose(loaded, expected, rtol=1e-6)
    assert {r.config["rate"] for r in stopped} == {1e-4, 2e-4}, "ASHA stopped the slow ones"
    assert all(len(r.metrics_dataframe) == 2 for r in stopped)


# -- mistakes ---------------------------------------------------------------------------


def test_an_unknown_metric_fails_the_trial_naming_the_logged_ones(client, storage):
    pytest.importorskip("xgboost")
    pytest.importorskip("lightgbm")

    def train(config):
        if config["library"] == "xgboost":
            xgb_train({"rate": 0.3, "metrics": "eval-los"})
        else:
            lgb_train({"rate": 0.3, "metrics": ["eval-binary_logloss", "eval-auc"]})

    results = tune.Tuner(
        train,
        param_space={"library": tune.grid_search(["xgboost", "lightgbm"])},
        run_config=tune.RunConfig(storage_path=storage, verbose=0),
        client=client,
    ).fit()
    errors = {r.config["library"]: str(r.error) for r in results}
    assert "`TuneReportCheckpointCallback(metrics=...)` is 'eval-los'" in errors["xgboost"]
    assert (
        "xgboost logged no 'eval-los': the names it logged are 'train-logloss', "
        "'train-error', 'eval-logloss', 'eval-error'"
    ) in errors["xgboost"]
    assert "lightgbm logged no 'eval-auc'" in errors["lightgbm"]
    assert "'eval-binary_logloss', 'eval-binary_error'" in errors["lightgbm"]
    assert all(len(r.metrics_dataframe) == 0 for r in results), "failed at the first round"


@pytest.mark.parametrize("library", ["xgboost", "lightgbm"])
def test_bad_arguments_are_named_with_their_fix(library, tmp_path):
    pytest.importorskip(library)
    module = importlib.import_module(f"dasktune.integration.{library}")
    callback = module.TuneReportCheckpointCallback
    with pytest.raises(ValueError, match=r"`TuneReportCheckpointCallback\(frequency=...\)` is -1"):
        callback(frequency=-1)
    with pytest.raises(TypeError, match=r"results_postprocessing_fn=...\)` is 'mean'.*Pass"):
        callback(results_postprocessing_fn="mean")
    with pytest.raises(TypeError, match=r"`TuneReportCallback\(metrics=...\)` is 3.*Pass"):
        module.TuneReportCallback(3)
    (tmp_path / "model.ubj").write_text("")
    with pytest.raises(FileNotFoundError, match=r"no file 'model' \(it has \['model.ubj'\]\)"):
        callback.get_model(tune.Checkpoint.from_directory(tmp_path), filename="model")


def cross_validate(config):
    """``xgboost.cv`` or ``lightgbm.cv``, reported by Ray 1.x's report-only callback."""
    case = config["case"]
    x, y, _, _ = data()

    def spread(metrics):  # each result gets the folds' spread relative to their mean too
        return {**metrics, "spread": metrics[case["std"]] / metrics[case["mean"]]}

    if case["library"] == "xgboost":
        import xgboost

        from dasktune.integration.xgboost import TuneReportCallback

        callback = TuneReportCallback([case["mean"], case["std"]], spread)
        xgboost.cv(xgb_params(0.3), xgboost.DMatrix(x, y), 3, nfold=2, callbacks=[callback])
    else:
        import lightgbm

        from dasktune.integration.lightgbm import TuneReportCallback

        callback = TuneReportCallback([case["mean"], case["std"]], spread)
        lightgbm.cv(lgb_params(0.3), lightgbm.Dataset(x, y), 3, nfold=2, callbacks=[callback])


def test_report_only_callbacks_under_cross_validation(client, storage):
    pytest.importorskip("xgboost")
    pytest.importorskip("lightgbm")
    cases = [
        {"library": "xgboost", "mean": "test-logloss-mean", "std": "test-logloss-std"},
        {
            "library": "lightgbm",
            "mean": "valid-binary_logloss-mean",
            "std": "valid-binary_logloss-stdv",
        },
    ]
    results = tune.Tuner(
        cross_validate,
        param_space={"case": tune.grid_search(cases)},
        run_config=tune.RunConfig(storage_path=storage, verbose=0),
        client=client,
    ).fit()
    assert results.num_errors == 0, results.errors
    for result in results:
        case = result.config["case"]
        frame = result.metrics_dataframe
        assert list(frame["training_iteration"]) == [1, 2, 3]
        for row in frame.to_dict("records"):
            values = [row[case["mean"]], row[case["std"]], row["spread"]]
            assert [type(v) for v in values] == [float] * 3
            assert row["spread"] == row[case["std"]] / row[case["mean"]]
        assert result.checkpoint is None and result.best_checkpoints == []


def test_xgboost_cv_cannot_checkpoint_and_says_what_to_use():
    xgboost = pytest.importorskip("xgboost")
    from dasktune.integration.xgboost import TuneReportCheckpointCallback

    x, y, _, _ = data()
    callback = TuneReportCheckpointCallback()
    with pytest.raises(ValueError, match="use TuneReportCallback"):
        xgboost.cv(xgb_params(0.3), xgboost.DMatrix(x, y), 2, nfold=2, callbacks=[callback])


@pytest.mark.parametrize(
    ("library", "command"),
    [("xgboost", "pip install xgboost"), ("lightgbm", "pip install lightgbm")],
)
def test_importing_without_the_library_says_how_to_install_it(monkeypatch, library, command):
    monkeypatch.setitem(sys.modules, library, None)  # as if not installed
    monkeypatch.delitem(sys.modules, f"dasktune.integration.{library}", raising=False)
    with pytest.raises(ImportError, match=f"needs the {library} package: {command}"):
        importlib.import_module(f"dasktune.integration.{library}")
