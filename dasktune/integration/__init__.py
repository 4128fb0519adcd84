"""Callbacks of training libraries that report to dasktune (Ray Tune's ``ray.tune.integration``).

Each module needs its library, and is imported on its own:

* :mod:`dasktune.integration.xgboost`: ``TuneReportCheckpointCallback`` and
  ``TuneReportCallback`` for ``xgboost.train`` (``pip install xgboost``);
* :mod:`dasktune.integration.lightgbm`: the same two for ``lightgbm.train``
  (``pip install lightgbm``).

``dasktune port`` rewrites ``ray.tune.integration.xgboost`` and
``ray.tune.integration.lightgbm`` to these modules.
"""
