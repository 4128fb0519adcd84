"""LightGBM callbacks that report each boosting round to dasktune (Ray Tune's
``ray.tune.integration.lightgbm``).

Pass one to ``lightgbm.train`` inside the trainable; each round's evaluation results
become a result of the trial, named ``"<data>-<metric>"``: the data's name from
``valid_names=`` and the metric from ``params["metric"]`` (``"eval-binary_logloss"``).
A scheduler can stop the trial after any round::

    import lightgbm
    import dasktune as tune
    from dasktune.integration.lightgbm import TuneReportCheckpointCallback
    from dasktune.schedulers import ASHAScheduler

    def train(config):
        lightgbm.train(
            {"objective": "binary", "learning_rate": config["lr"], "verbose": -1},
            train_set,
            num_boost_round=100,
            valid_sets=[valid_set],
            valid_names=["eval"],
            callbacks=[TuneReportCheckpointCallback({"loss": "eval-binary_logloss"})],
        )

    results = tune.Tuner(
        train,
        param_space={"lr": tune.loguniform(1e-3, 0.5)},
        tune_config=tune.TuneConfig(metric="loss", mode="min", scheduler=ASHAScheduler()),
    ).fit()
    booster = TuneReportCheckpointCallback.get_model(results.get_best_result().checkpoint)

Under ``lightgbm.cv`` the metrics are the folds' mean and standard deviation, named
``"<data>-<metric>-mean"`` and ``"<data>-<metric>-stdv"``, as in Ray.  The last round is
the one ``num_boost_round`` makes the last: a training that ``lightgbm.early_stopping``
ends sooner gets no checkpoint at its end (set ``frequency``).
"""

from __future__ import annotations

import os
from typing import Any

try:
    import lightgbm
    from lightgbm.callback import CallbackEnv
except ImportError as _error:  # pragma: no cover - exercised by a test that hides lightgbm
    raise ImportError(
        "dasktune.integration.lightgbm needs the lightgbm package: pip install lightgbm"
    ) from _error

from dasktune.integration import _common
from dasktune.trainable.checkpoint import Checkpoint

__all__ = ["TuneReportCallback", "TuneReportCheckpointCallback"]


def _logged(evaluation_result_list: Any) -> dict[str, Any]:
    """Each metric of LightGBM's ``env.evaluation_result_list``, named ``<data>-<metric>``.

    Example:
        >>> _logged([("eval", "auc", 0.9, True), ("valid", "l2", 0.3, False, 0.01)])
        {'eval-auc': 0.9, 'valid-l2-mean': 0.3, 'valid-l2-stdv': 0.01}
    """
    logged: dict[str, Any] = {}
    for entry in evaluation_result_list or ():
        data, metric, value = entry[:3]
        stdv = entry[4] if len(entry) > 4 else None  # LightGBM 4.6+ always has the field
        name = f"{data}-{metric}"
        if stdv is None:
            logged[name] = value
        else:  # lightgbm.cv: the folds' mean and standard deviation
            logged[f"{name}-mean"], logged[f"{name}-stdv"] = value, stdv
    return logged


class TuneReportCheckpointCallback(_common.CallbackBase):
    """Report each boosting round's evaluation results, and save the booster as checkpoints.

    Args:
        metrics: What to report: a logged name (``"eval-binary_logloss"``), a list of
            them, or a dict ``{reported name: logged name}`` to rename them; None reports
            every metric LightGBM logs.  A name LightGBM does not log fails the trial at
            the first round, with the names it does log.
        filename: The booster's file in each checkpoint (None: :attr:`CHECKPOINT_NAME`),
            in LightGBM's text format.
        frequency: Save a checkpoint with every ``frequency``-th round's result; 0 saves
            none during training.
        checkpoint_at_end: Save one with the last round's result.  So is one when a
            scheduler stops or pauses the trial.
        results_postprocessing_fn: A function given the dict of metrics to report (plain
            floats), returning the dict to report instead.
    """

    #: The booster's file in a checkpoint, unless ``filename`` says otherwise (Ray's name).
    CHECKPOINT_NAME = "model.txt"
    _LIBRARY = "lightgbm"
    _NAMES = (
        "the data's name from lightgbm.train(valid_names=['eval']) and the metric from "
        "params['metric'] (such as 'eval-binary_logloss')"
    )

    @classmethod
    def get_model(
        cls, checkpoint: Checkpoint | str | os.PathLike[str], filename: str = CHECKPOINT_NAME
    ) -> lightgbm.Booster:
        """The booster saved in a checkpoint that this callback reported
        (``result.checkpoint``); ``filename`` is the one the callback was made with."""
        return lightgbm.Booster(model_file=_common.model_file(cls.__name__, checkpoint, filename))

    def __call__(self, env: CallbackEnv) -> None:
        if env.iteration == env.begin_iteration:  # a new training
            self._reporter.reset()
        self._reporter.round(
            _logged(env.evaluation_result_list),
            env.iteration - env.begin_iteration + 1,
            lambda path: env.model.save_model(path),
            last=env.iteration == env.end_iteration - 1,
        )


class TuneReportCallback(_common.ReportOnly, TuneReportCheckpointCallback):
    """``TuneReportCallback(metrics=None, results_postprocessing_fn=None)``: report each
    boosting round's evaluation results, and save no checkpoint (Ray 1.x's callback, which
    ``TuneReportCheckpointCallback`` replaced in Ray 2)."""
