"""Checks of a trainable before any trial runs, with errors that say what to fix."""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable
from typing import Any

import cloudpickle

from dasktune.trainable.trainable import Trainable
from dasktune.trainable.util import trainable_name, unwrap


def check_trainable(trainable: Any) -> bytes:
    """Refuse, with the fix, a trainable that cannot run as a trial; return its pickle
    (the trainable without ``with_parameters``' values)."""
    fn, params = unwrap(trainable)
    is_class = isinstance(fn, type)
    if is_class and not issubclass(fn, Trainable):
        raise TypeError(
            f"Tuner(trainable={fn.__name__}): a class trainable must subclass "
            "dasktune.Trainable (setup/step/save_checkpoint/load_checkpoint)."
        )
    if not is_class and not callable(fn):
        raise TypeError(
            f"Tuner(trainable={fn!r}): pass a function train(config) that calls "
            "tune.report(...), or a dasktune.Trainable subclass."
        )
    if not is_class and params and not accepts_params(fn, list(params)):
        raise TypeError(
            f"tune.with_parameters({trainable_name(fn)}, {', '.join(params)}=...): "
            f"{trainable_name(fn)} must accept them as keyword arguments, e.g. "
            f"def {trainable_name(fn)}(config, {', '.join(params)}): ..."
        )
    check_not_being_imported(fn)
    return check_picklable(fn)


def check_not_being_imported(trainable: Any) -> None:
    """Refuse a trainable whose module is still being imported: Dask would hang on it.

    Dask sends functions and classes from modules by reference.  The embedded
    cluster's scheduler, which runs in this process, unpickles them and so
    waits for the module's import to finish, while the import waits for the
    experiment; a remote worker would import the module and run the
    experiment again.
    """
    module = getattr(trainable, "__module__", None) or ""
    spec = getattr(sys.modules.get(module), "__spec__", None)
    if getattr(spec, "_initializing", False):
        raise RuntimeError(
            f"Tuner({trainable_name(trainable)}) was created while its module `{module}` is "
            "still being imported, so Dask could not load the trainable and would wait for "
            f"ever. Run the experiment as a script (python {module.replace('.', '/')}.py), "
            "or move it into a function that you call after the import."
        )


def check_picklable(trainable: Any, argument: str = "trainable") -> bytes:
    """Pickle a trainable; raise a clear error naming what it captures that cannot be."""
    try:
        return cloudpickle.dumps(trainable)
    except Exception as exc:  # cloudpickle raises many types; report the culprit instead
        original = exc
    name = trainable_name(trainable)
    for var, value in _captured(trainable).items():
        try:
            cloudpickle.dumps(value)
        except Exception as exc:
            raise TypeError(
                f"The {argument} `{name}` cannot be sent to Dask workers: it uses `{var}` "
                f"(a {type(value).__module__}.{type(value).__qualname__}), which cannot be pickled "
                f"({type(exc).__name__}: {exc}). Create `{var}` inside the trainable instead, or "
                "pass what it is built from through tune.with_parameters()."
            ) from None
    raise TypeError(
        f"The {argument} `{name}` cannot be pickled to send it to Dask workers "
        f"({type(original).__name__}: {original})."
    ) from original


def _captured(trainable: Any) -> dict[str, Any]:
    """The objects a function (or a class's methods) refers to from outside."""
    functions = [trainable]
    if isinstance(trainable, type):
        functions = [v for v in vars(trainable).values() if inspect.isfunction(v)]
    found: dict[str, Any] = {}
    for fn in functions:
        if not inspect.isfunction(fn):
            continue
        try:
            closure = inspect.getclosurevars(fn)
        except (TypeError, ValueError):
            continue
        found.update(closure.nonlocals)
        found.update(closure.globals)
    return {k: v for k, v in found.items() if not inspect.ismodule(v)}


def accepts_params(fn: Callable[..., Any], names: list[str]) -> bool:
    """Whether ``fn(config, **{name: ...})`` is a valid call."""
    try:
        inspect.signature(fn).bind(None, **{n: None for n in names})
    except TypeError:
        return False
    return True
