"""dasktune's settings, read through ``dask.config`` (section ``dasktune``).

Override them like any Dask setting: ``dask.config.set({"dasktune.console.interval": 1})``,
a YAML file in ``~/.config/dask/``, or ``DASK_DASKTUNE__CONSOLE__INTERVAL=1``.
"""

from __future__ import annotations

import os
from typing import Any

import dask
import yaml

_FILE = os.path.join(os.path.dirname(__file__), "dasktune.yaml")

with open(_FILE) as _f:
    _DEFAULTS = yaml.safe_load(_f)

dask.config.update_defaults(_DEFAULTS)


def get(key: str) -> Any:
    """The setting ``dasktune.<key>``."""
    return dask.config.get(f"dasktune.{key}")
