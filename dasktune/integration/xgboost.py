"""XGBoost callbacks that report each boosting round to dasktune (Ray Tune's
``ray.tune.integration.xgboost``).

Pass one to ``xgboost.train`` inside the trainable; each round's evaluation results
become a result of the trial, named as XGBoost logs them: ``"<data>-<metric>"``, the
data's name from ``evals=`` and the metric from ``eval_metric`` (``"eval-logloss"``).
A scheduler can stop the trial after any round::

    import xgboost
    import dasktune as tune
    from dasktune.integration.xgboost import TuneReportCheckpointCallback
    from dasktune.schedulers import ASHAScheduler

    def train(config):
        xgboost.train(
            {"objective": "binary:logistic", "eval_metric": "logloss", "eta": config["eta"]},
            dtrain,
            num_boost_round=100,
            evals=[(dvalid, "eval")],
            verbose_eval=False,
            callbacks=[TuneReportCheckpointCallback({"loss": "eval-logloss"}, frequency=10)],
        )

    results = tune.Tuner(
        train,
        param_space={"eta": tune.loguniform(1e-3, 0.5)},
        tune_config=tune.TuneConfig(metric="loss", mode="min", scheduler=ASHAScheduler()),
    ).fit()
    booster = TuneReportCheckpointCallback.get_model(results.get_best_result().checkpoint)

Under ``xgboost.cv`` the metrics are the folds' mean and standard deviation, named
``"<data>-<metric>-mean"`` and ``"<data>-<metric>-std"`` as in the frame ``xgboost.cv``
returns; its boosters cannot be saved as one model, so use :class:`TuneReportCallback`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

try:
    import xgboost
    from xgboost.callback import TrainingCallback
except ImportError as _error:  # pragma: no cover - exercised by a test that hides xgboost
    raise ImportError(
        "dasktune.integration.xgboost needs the xgboost package: pip install xgboost "
        "(or pip install xgboost-cpu, smaller, without GPU support)"
    ) from _error

from dasktune.integration import _common
from dasktune.trainable.checkpoint import Checkpoint

__all__ = ["TuneReportCallback", "TuneReportCheckpointCallback"]


def _logged(evals_log: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The latest value of each metric in XGBoost's ``evals_log``, named ``<data>-<metric>``.

    Example:
        >>> _logged({"eval": {"logloss": [0.6, 0.5]}, "test": {"rmse": [(0.3, 0.01)]}})
        {'eval-logloss': 0.5, 'test-rmse-mean': 0.3, 'test-rmse-std': 0.01}
    """
    logged: dict[str, Any] = {}
    for data, metrics in evals_log.items():
        for metric, values in metrics.items():
            if not values:
                continue
            name, value = f"{data}-{metric}", values[-1]
            if isinstance(value, tuple):  # xgboost.cv: the folds' mean and standard deviation
                logged[f"{name}-mean"], logged[f"{name}-std"] = value
            else:
                logged[name] = value
    return logged


class TuneReportCheckpointCallback(_common.CallbackBase, TrainingCallback):
    """Report each boosting round's evaluation results, and save the booster as checkpoints.

    Args:
        metrics: What to report: a logged name (``"eval-logloss"``), a list of them, or a
            dict ``{reported name: logged name}`` to rename them; None reports every
            metric XGBoost logs.  A name XGBoost does not log fails the trial at the
            first round, with the names it does log.
        filename: The booster's file in each checkpoint (None: :attr:`CHECKPOINT_NAME`);
            its extension picks XGBoost's format (``.ubj``, ``.json``).
        frequency: Save a checkpoint with every ``frequency``-th round's result; 0 saves
            none during training.
        checkpoint_at_end: Save one after the last round (unless that round had one).  It
            is stored with the last round's result, and so is one when a scheduler stops
            or pauses the trial.
        results_postprocessing_fn: A function given the dict of metrics to report (plain
            floats), returning the dict to report instead.
    """

    #: The booster's file in a checkpoint, unless ``filename`` says otherwise (Ray's name).
    CHECKPOINT_NAME = "model.ubj"
    _LIBRARY = "xgboost"
    _NAMES = (
        "the data's name from xgboost.train(evals=[(dvalid, 'eval')]) and the metric from "
        "params['eval_metric'] (such as 'eval-logloss')"
    )

    @classmethod
    def get_model(
        cls, checkpoint: Checkpoint | str | os.PathLike[str], filename: str = CHECKPOINT_NAME
    ) -> xgboost.Booster:
        """The booster saved in a checkpoint that this callback reported
        (``result.checkpoint``); ``filename`` is the one the callback was made with."""
        booster = xgboost.Booster()
        booster.load_model(_common.model_file(cls.__name__, checkpoint, filename))
        return booster

    def before_training(self, model: Any) -> Any:
        self._reporter.reset()
        if self._reporter.saves and not hasattr(model, "save_model"):
            raise ValueError(
                f"{type(self).__name__} saves checkpoints, and the boosters of xgboost.cv "
                "(one for each fold) cannot be saved as one: use TuneReportCallback(metrics) "
                f"with xgboost.cv, or {type(self).__name__}(metrics, frequency=0, "
                "checkpoint_at_end=False)."
            )
        return model

    def after_iteration(self, model: Any, epoch: int, evals_log: TrainingCallback.EvalsLog) -> bool:
        self._reporter.round(_logged(evals_log), epoch + 1, lambda path: model.save_model(path))
        return False  # go on: a trial stopped by its scheduler ends inside tune.report

    def after_training(self, model: Any) -> Any:
        self._reporter.end(lambda path: model.save_model(path))
        return model


class TuneReportCallback(_common.ReportOnly, TuneReportCheckpointCallback):
    """``TuneReportCallback(metrics=None, results_postprocessing_fn=None)``: report each
    boosting round's evaluation results, and save no checkpoint (Ray 1.x's callback, which
    ``TuneReportCheckpointCallback`` replaced in Ray 2).  Works with ``xgboost.cv`` too."""
