"""pytest's settings for the whole checkout: the doctests of dasktune's modules.

``pytest`` runs the ``>>>`` examples in dasktune's docstrings (``--doctest-modules``,
set in pyproject.toml), and so imports every module of the package. The modules below
need an optional package to be imported or for their examples to run; where it is not
installed, their examples are left out rather than failing.
"""

from __future__ import annotations

import importlib.util

#: Module -> the optional package it needs (and the extra that installs it).
_NEEDS = {
    "dasktune/search/hyperopt.py": "hyperopt",  # dasktune[hyperopt]
    "dasktune/search/optuna.py": "optuna",  # dasktune[optuna]
    "dasktune/schedulers/_gp_bandit.py": "sklearn",  # dasktune[pb2]
    "dasktune/schedulers/pb2.py": "sklearn",  # its example builds a PB2
    "dasktune/integration/xgboost.py": "xgboost",  # xgboost's report callbacks
    "dasktune/integration/lightgbm.py": "lightgbm",  # LightGBM's
}

collect_ignore = [path for path, package in _NEEDS.items()
                  if importlib.util.find_spec(package) is None]
