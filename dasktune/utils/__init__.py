"""Helpers for trainables that Ray Tune keeps in ``ray.tune.utils``."""

from __future__ import annotations

from dasktune.trainable.util import validate_save_restore

__all__ = ["validate_save_restore"]
