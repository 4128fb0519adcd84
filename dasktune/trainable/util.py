"""Wrappers that attach data and resource requests to a trainable."""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Callable, Mapping
from typing import Any

#: Resource names that dasktune spells the Ray way and Dask spells otherwise.
_RESOURCE_ALIASES = {"gpu": "GPU", "cpu": "CPU"}


def trainable_name(trainable: Any) -> str:
    """The name experiments and trials take from ``trainable``; a ``functools.partial``
    takes its function's, as in Ray Tune.

    Example:
        >>> import functools
        >>> def train_cifar(config, data_dir=None): ...
        >>> trainable_name(functools.partial(train_cifar, data_dir="/data"))
        'train_cifar'
    """
    while isinstance(trainable, functools.partial):
        trainable = trainable.func
    name = getattr(trainable, "__name__", None)
    return name if isinstance(name, str) else type(trainable).__name__


class _Parameterized:
    """A trainable plus large objects that are sent to the cluster once.

    The Tuner scatters ``params`` to the cluster a single time; every trial
    receives the same worker-resident objects instead of a copy each.
    """

    def __init__(self, trainable: Any, params: dict[str, Any]) -> None:
        self.trainable = trainable
        self.params = params
        if callable(trainable):
            # Its name, module and docs: the holder itself is not called, hence the ignore.
            functools.update_wrapper(self, trainable, updated=())  # type: ignore[arg-type]
        self.__name__ = trainable_name(trainable)

    def __repr__(self) -> str:
        return f"with_parameters({self.__name__}, {', '.join(self.params)})"


def with_parameters(trainable: Callable[..., Any] | type, **kwargs: Any) -> Any:
    """Bind large objects to a trainable; they travel to the cluster once.

    Example:
        >>> def train(config, data):
        ...     ...
        >>> trainable = with_parameters(train, data=[1, 2, 3])

    Each trial calls ``train(config, data=data)``; class trainables get them
    as keyword arguments of ``setup``.  With nothing to bind, the trainable is
    returned as it is (Ray Tune accepts that too).
    """
    if not kwargs:
        return trainable
    resources = getattr(trainable, "_dasktune_resources", None)
    wrapped = _Parameterized(trainable, dict(kwargs))
    if resources is not None:
        wrapped._dasktune_resources = resources  # type: ignore[attr-defined]
    return wrapped


def normalize_resources(resources: Mapping[str, float]) -> dict[str, float]:
    """Map Ray-style resource names to Dask worker resources (``gpu`` -> ``GPU``).

    Other names pass through unchanged as Dask resources of the same name.
    """
    out: dict[str, float] = {}
    for name, amount in resources.items():
        if (
            not isinstance(amount, numbers.Real)  # numpy's numbers too
            or isinstance(amount, bool)
            or not math.isfinite(amount)
            or amount < 0
        ):
            raise ValueError(
                f"with_resources: the amount of {name!r} is {amount!r}, but it must be a "
                f"number >= 0, e.g. {{{name!r}: 1}}."
            )
        if amount == 0:
            continue
        dask_name = _RESOURCE_ALIASES.get(name, name)
        if dask_name == "GPU" and amount > 1 and amount != int(amount):
            raise ValueError(
                f"with_resources: the amount of {name!r} is {amount!r}; a trial may share a "
                "GPU ({'gpu': 0.5}) or have whole GPUs ({'gpu': 2}), but not a fraction above "
                f"one. Use {{{name!r}: {math.ceil(amount)}}}."
            )
        out[dask_name] = float(amount)
    return out


class PlacementGroupFactory:
    """Ray Tune's way to ask for a trial's resources as bundles, for ``with_resources``
    and ``resources_per_trial``: ``PlacementGroupFactory([{"CPU": 2, "GPU": 1}])``.

    A dasktune trial runs in one Dask worker process, so it asks for the bundles together
    (their sum); ``strategy`` is accepted and has nothing to place.

    >>> factory = PlacementGroupFactory([{"CPU": 1}, {"CPU": 2, "GPU": 1}])
    >>> factory.required_resources, factory.head_cpus
    ({'CPU': 3.0, 'GPU': 1.0}, 1.0)
    """

    def __init__(self, bundles: Any, strategy: str = "PACK", *args: Any, **kwargs: Any) -> None:
        if (
            not isinstance(bundles, (list, tuple))
            or not bundles
            or not all(isinstance(b, Mapping) for b in bundles)
        ):
            raise TypeError(
                f"PlacementGroupFactory(bundles={bundles!r}): bundles must be a non-empty list "
                'of resource dicts, e.g. [{"CPU": 2, "GPU": 1}].'
            )
        self.bundles = [dict(b) for b in bundles]
        self.strategy = strategy

    @property
    def required_resources(self) -> dict[str, float]:
        total: dict[str, float] = {}
        for bundle in self.bundles:
            for name, amount in bundle.items():
                total[name] = total.get(name, 0.0) + float(amount)
        return total

    @property
    def head_cpus(self) -> float:
        return float(self.bundles[0].get("CPU", 0.0))

    def __repr__(self) -> str:
        return f"PlacementGroupFactory({self.bundles!r}, strategy={self.strategy!r})"


def with_resources(trainable: Any, resources: Mapping[str, float]) -> Any:
    """Ask for worker resources for every trial of ``trainable``.

    ``{"cpu": 1, "gpu": 1}`` becomes the Dask resource request ``{"GPU": 1}``
    (plus ``CPU`` where workers advertise it); ``{"gpu": 0.5}`` lets two trials
    share a GPU.  Other keys are passed through as Dask resources of the same
    name, so workers started with ``--resources "MEM=16e9"`` can be asked for
    ``{"MEM": 8e9}``.  Trials that ask for no GPU stay off the GPU workers where
    the cluster has others (see ``dasktune.execution.capacity.usable_request``).
    """
    if isinstance(resources, PlacementGroupFactory):
        resources = resources.required_resources
    if not isinstance(resources, Mapping):
        raise TypeError(
            f"with_resources(resources={resources!r}): expected a dict such as "
            "{'cpu': 1, 'gpu': 1}."
        )
    normalized = normalize_resources(resources)
    if isinstance(trainable, _Parameterized):
        copy = _Parameterized(trainable.trainable, dict(trainable.params))
        copy._dasktune_resources = normalized  # type: ignore[attr-defined]
        return copy
    if isinstance(trainable, type):
        return type(
            trainable.__name__,
            (trainable,),
            {
                "_dasktune_resources": normalized,
                "__module__": trainable.__module__,
                "__qualname__": trainable.__qualname__,
                "__doc__": trainable.__doc__,
            },
        )

    @functools.wraps(trainable)
    def wrapper(*args: Any, **kw: Any) -> Any:
        return trainable(*args, **kw)

    wrapper.__name__ = trainable_name(trainable)  # wraps() finds none on a functools.partial
    wrapper._dasktune_resources = normalized  # type: ignore[attr-defined]
    return wrapper


def resources_of(trainable: Any) -> dict[str, float]:
    """The Dask resources a trial of ``trainable`` asks for."""
    return dict(getattr(trainable, "_dasktune_resources", None) or {})


def unwrap(trainable: Any) -> tuple[Any, dict[str, Any]]:
    """Split a trainable into the callable or class and its bound parameters."""
    if isinstance(trainable, _Parameterized):
        return trainable.trainable, trainable.params
    return trainable, {}


def validate_save_restore(
    trainable_cls: type, config: dict[str, Any] | None = None, num_gpus: float = 0
) -> bool:
    """Check that a class trainable's checkpoints restore it (Ray Tune's helper).

    Trains one instance a step, saves it, restores a second instance from that
    checkpoint, and checks that both report the same ``training_iteration`` after
    one more step each; raises ``AssertionError`` if not, returns True otherwise.
    ``num_gpus`` is accepted for Ray's signature and ignored.
    """
    import shutil

    from dasktune.trainable import _trial_run

    config = dict(config or {})
    first, second = trainable_cls(config), trainable_cls(config)
    try:
        first._iteration += 1
        first.step()
        checkpoint = _trial_run._save(first)
        try:
            _trial_run._restore(second, checkpoint)
        finally:
            shutil.rmtree(checkpoint.path, ignore_errors=True)
        assert second._iteration == first._iteration, (
            f"{trainable_cls.__name__}: restored at iteration {second._iteration}, saved at "
            f"{first._iteration}; save_checkpoint/load_checkpoint lose the iteration count."
        )
        for instance in (first, second):
            instance._iteration += 1
            instance.step()
        assert first._iteration == second._iteration
    finally:
        first.cleanup()
        second.cleanup()
    return True
