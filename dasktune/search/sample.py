"""Search-space domains and their public constructors (Ray Tune's names).

A search space is a (nested) dict whose leaves are constants, :class:`Domain`
objects or ``{"grid_search": [...]}`` markers.  This module defines the
domains and how one value is drawn from each; resolving whole spaces lives in
:mod:`dasktune.search.variant_generator`, converting them to other libraries'
spaces lives in the optional integrations.

The domains are frozen dataclasses whose attributes describe the distribution
completely, so converters only read attributes:

========================  ====================================================
constructor               domain
========================  ====================================================
``uniform(l, u)``         ``Float(l, u)``
``quniform(l, u, q)``     ``Float(l, u, q=q)``
``loguniform(l, u, b)``   ``Float(l, u, kind=LOGUNIFORM, base=b)``
``qloguniform(l,u,q,b)``  ``Float(l, u, kind=LOGUNIFORM, base=b, q=q)``
``randn(m, s)``           ``Float(None, None, kind=NORMAL, mean=m, sd=s)``
``qrandn(m, s, q)``       ``Float(None, None, kind=NORMAL, mean=m, sd=s, q=q)``
``randint(l, u)``         ``Integer(l, u)``
``qrandint(l, u, q)``     ``Integer(l, u + 1, q=q)``  (Ray: ``u`` inclusive)
``lograndint(l, u, b)``   ``Integer(l, u, kind=LOGUNIFORM, base=b)``
``qlograndint(l,u,q,b)``  ``Integer(l, u + 1, kind=LOGUNIFORM, base=b, q=q)``
``choice(cs)``            ``Categorical(list(cs))``
``sample_from(f)``        ``Function(f)``
``grid_search(vs)``       ``{"grid_search": list(vs)}`` (not a domain)
========================  ====================================================

``Integer.upper`` is always exclusive; ``Float.upper`` is inclusive only for
quantized floats (rounding can reach it).  Quantized values are multiples of
``q`` that lie inside the bounds: a draw is rounded to the nearest multiple of
``q`` and, if rounding left the bounds, moved to the nearest multiple inside.
"""

from __future__ import annotations

import enum
import inspect
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from dasktune._validation import is_integer, is_number

__all__ = [
    "Categorical",
    "Domain",
    "Float",
    "Function",
    "Integer",
    "SamplingKind",
    "choice",
    "grid_search",
    "is_grid_search",
    "lograndint",
    "loguniform",
    "qlograndint",
    "qloguniform",
    "qrandint",
    "qrandn",
    "quniform",
    "randint",
    "randn",
    "sample_from",
    "uniform",
]

GRID_SEARCH_KEY = "grid_search"


class SamplingKind(str, enum.Enum):
    """How a numeric domain spreads its samples.

    A ``str`` enum, so ``domain.kind == "loguniform"`` holds as well.
    """

    UNIFORM = "uniform"
    LOGUNIFORM = "loguniform"
    NORMAL = "normal"

    def __str__(self) -> str:
        return self.value


class Domain:
    """Base class of the values a hyperparameter may take.

    Subclasses are frozen dataclasses; :meth:`sample` draws one plain Python
    value (``float``, ``int`` or a category) from a
    :class:`numpy.random.Generator`, never from a global random state.
    """

    def sample(self, rng: np.random.Generator, spec: object | None = None) -> Any:
        """Draw one value.

        Args:
            rng: The random generator to draw from.
            spec: Only used by :class:`Function`: the object passed to the
                user's function (see :func:`sample_from`).

        Returns:
            One value of the domain, as a plain Python object.
        """
        raise NotImplementedError

    def contains(self, value: Any) -> bool:
        """Whether ``value`` is a value this domain can produce."""
        raise NotImplementedError

    @property
    def is_function(self) -> bool:
        """Whether sampling depends on the rest of the config (``sample_from``)."""
        return False


# --------------------------------------------------------------------- checks


def _fail(call: str, rule: str, fix: str) -> ValueError:
    return ValueError(f"{call}: {rule}; {fix}.")


def _call_text(name: str, **arguments: Any) -> str:
    shown = ", ".join(f"{key}={value!r}" for key, value in arguments.items())
    return f"{name}({shown})"


def _check_real(call: str, argument: str, value: Any) -> float:
    if not is_number(value):
        raise _fail(
            call,
            f"`{argument}` is {value!r}, but it must be a real number",
            f"pass a number as `{argument}`",
        )
    number = float(value)
    if not math.isfinite(number):
        raise _fail(
            call, f"`{argument}` is {value!r}, but it must be finite", f"pass a finite `{argument}`"
        )
    return number


def _check_integral(call: str, argument: str, value: Any) -> int:
    if not is_number(value):
        raise _fail(
            call,
            f"`{argument}` is {value!r}, but it must be an integer",
            f"pass an int as `{argument}`",
        )
    if not is_integer(value) and not float(value).is_integer():
        raise _fail(
            call,
            f"`{argument}` is {value!r}, but it must be an integer",
            "use uniform()/quniform() for float ranges or pass a whole number",
        )
    return int(value)


def _in_order(call: str, lower: Any, upper: Any) -> tuple[Any, Any]:
    """A float range given upper bound first, as Ray Tune accepts it (and real scripts have
    it: ``loguniform(1e-3, 1e-5)``): the same range, with a warning."""
    if lower > upper:
        warnings.warn(
            f"{call}: `lower` is above `upper`; drawing from [{upper!r}, {lower!r}], as Ray "
            "Tune does. Swap them to silence this.",
            UserWarning,
            stacklevel=3,
        )
        return upper, lower
    return lower, upper


def _check_bounds(call: str, lower: Any, upper: Any, *, log: bool) -> None:
    """Check numeric bounds (already checked to be numbers): ordered, positive for logs."""
    if not lower < upper:
        fix = (
            "swap them" if lower > upper else "widen the range, or use a constant for a fixed value"
        )
        raise _fail(call, "`lower` must be less than `upper`", fix)
    if log and lower <= 0:
        raise _fail(
            call,
            f"`lower` is {lower!r}, but a log-scaled domain needs `lower` > 0",
            "pass a positive lower bound (the untransformed value, not its logarithm)",
        )


def _check_base(call: str, base: Any) -> float:
    number = _check_real(call, "base", base)
    if number <= 0 or number == 1:
        raise _fail(
            call,
            f"`base` is {base!r}, but it must be positive and not 1",
            "pass base=10 (the default)",
        )
    return number


def _check_q(call: str, q: Any, *, integer: bool) -> float | int:
    number: float | int = _check_integral(call, "q", q) if integer else _check_real(call, "q", q)
    if number <= 0:
        raise _fail(
            call,
            f"`q` is {q!r}, but it must be greater than 0",
            "pass a positive quantum such as q=1",
        )
    return number


def _check_sd(call: str, sd: Any) -> float:
    number = _check_real(call, "sd", sd)
    if number <= 0:
        raise _fail(
            call,
            f"`sd` is {sd!r}, but it must be greater than 0",
            "pass a positive standard deviation",
        )
    return number


# ------------------------------------------------------------- quantization


def _multiples_within(
    lower: float, upper: float, q: float, *, upper_inclusive: bool
) -> tuple[int, int]:
    """The smallest and largest ``k`` with ``k * q`` inside the bounds (float-tolerant)."""

    def near_integer(x: float) -> bool:
        return math.isclose(x, round(x), rel_tol=0.0, abs_tol=1e-9)

    low = lower / q
    k_min = round(low) if near_integer(low) else math.ceil(low)
    high = upper / q
    if near_integer(high):
        k_max = round(high) if upper_inclusive else round(high) - 1
    else:
        k_max = math.floor(high)
    return k_min, k_max


def _snap_float(k: float, q: float) -> float:
    """``k * q`` with the floating-point noise of the product removed."""
    digits = 10 - math.floor(math.log10(q))
    return float(round(k * q, max(digits, 0)))


# ------------------------------------------------------------------ domains


@dataclass(frozen=True)
class Float(Domain):
    """A real-valued domain.

    Attributes:
        lower: Smallest value (None for ``normal``).
        upper: Largest value (None for ``normal``); only reached by quantized
            domains, whose draws are rounded.
        kind: ``uniform``, ``loguniform`` or ``normal``.
        base: Log base of a ``loguniform`` domain.  It names the scale the
            user thinks in; the distribution itself does not depend on it.
        mean: Mean of a ``normal`` domain.
        sd: Standard deviation of a ``normal`` domain.
        q: None, or the quantum: values are multiples of ``q``.
    """

    lower: float | None
    upper: float | None
    kind: SamplingKind = SamplingKind.UNIFORM
    base: float = 10
    mean: float = 0.0
    sd: float = 1.0
    q: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", SamplingKind(self.kind))
        call = _call_text(
            "Float", lower=self.lower, upper=self.upper, kind=self.kind.value, q=self.q
        )
        if self.kind is SamplingKind.NORMAL:
            if self.lower is not None or self.upper is not None:
                raise _fail(
                    call,
                    "a normal domain has no bounds, but `lower` or `upper` is set",
                    "pass lower=None and upper=None, or use uniform()",
                )
            object.__setattr__(self, "mean", _check_real(call, "mean", self.mean))
            object.__setattr__(self, "sd", _check_sd(call, self.sd))
        else:
            lower = _check_real(call, "lower", self.lower)
            upper = _check_real(call, "upper", self.upper)
            _check_bounds(call, lower, upper, log=self.kind is SamplingKind.LOGUNIFORM)
            object.__setattr__(self, "lower", lower)
            object.__setattr__(self, "upper", upper)
        object.__setattr__(self, "base", _check_base(call, self.base))
        if self.q is not None:
            q = float(_check_q(call, self.q, integer=False))
            object.__setattr__(self, "q", q)
            if self.lower is not None and self.upper is not None:
                k_min, k_max = _multiples_within(self.lower, self.upper, q, upper_inclusive=True)
                if k_min > k_max:
                    raise _fail(
                        call,
                        f"no multiple of `q` ({q!r}) lies in [{self.lower!r}, {self.upper!r}]",
                        "pass a smaller `q` or a wider range",
                    )

    def quantized(self, q: float) -> Float:
        """This domain with its values rounded to multiples of ``q``."""
        return replace(self, q=q)

    def sample(self, rng: np.random.Generator, spec: object | None = None) -> float:
        if self.kind is SamplingKind.NORMAL:
            value = float(rng.normal(self.mean, self.sd))
        elif self.kind is SamplingKind.LOGUNIFORM:
            assert self.lower is not None and self.upper is not None
            value = float(np.exp(rng.uniform(np.log(self.lower), np.log(self.upper))))
        else:
            assert self.lower is not None and self.upper is not None
            value = float(rng.uniform(self.lower, self.upper))
        if self.q is None:
            return value
        k = round(value / self.q)
        if self.lower is not None and self.upper is not None:
            k_min, k_max = _multiples_within(self.lower, self.upper, self.q, upper_inclusive=True)
            k = min(max(k, k_min), k_max)
        return _snap_float(k, self.q)

    def contains(self, value: Any) -> bool:
        if not is_number(value):
            return False
        if self.q is not None and not math.isclose(
            value / self.q, round(value / self.q), abs_tol=1e-9
        ):
            return False
        if self.lower is None or self.upper is None:
            return math.isfinite(value)
        tolerance = 1e-12 * max(1.0, abs(self.upper))
        return self.lower - tolerance <= value <= self.upper + tolerance


@dataclass(frozen=True)
class Integer(Domain):
    """An integer-valued domain.

    Attributes:
        lower: Smallest value (inclusive).
        upper: Exclusive upper bound of the values, always; the constructors
            whose Ray names take an inclusive bound (``qrandint``,
            ``qlograndint``) store ``upper + 1``.
        kind: ``uniform`` or ``loguniform``.
        base: Log base of a ``loguniform`` domain (a label, as for Float).
        q: None, or the quantum: values are multiples of ``q``.
    """

    lower: int
    upper: int
    kind: SamplingKind = SamplingKind.UNIFORM
    base: float = 10
    q: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", SamplingKind(self.kind))
        call = _call_text(
            "Integer", lower=self.lower, upper=self.upper, kind=self.kind.value, q=self.q
        )
        if self.kind is SamplingKind.NORMAL:
            raise _fail(
                call,
                "an Integer domain cannot be normal",
                "use randn()/qrandn() for a normal domain",
            )
        lower = _check_integral(call, "lower", self.lower)
        upper = _check_integral(call, "upper", self.upper)
        _check_bounds(call, lower, upper, log=self.kind is SamplingKind.LOGUNIFORM)
        object.__setattr__(self, "lower", lower)
        object.__setattr__(self, "upper", upper)
        object.__setattr__(self, "base", _check_base(call, self.base))
        if self.q is not None:
            q = int(_check_q(call, self.q, integer=True))
            object.__setattr__(self, "q", q)
            k_min, k_max = _multiples_within(lower, upper, q, upper_inclusive=False)
            if k_min > k_max:
                raise _fail(
                    call,
                    f"no multiple of `q` ({q!r}) lies in [{lower!r}, {upper - 1!r}]",
                    "pass a smaller `q` or a wider range",
                )

    def quantized(self, q: int) -> Integer:
        """This domain with its values rounded to multiples of ``q``."""
        return replace(self, q=q)

    def sample(self, rng: np.random.Generator, spec: object | None = None) -> int:
        if self.kind is SamplingKind.LOGUNIFORM:
            value = int(np.floor(np.exp(rng.uniform(np.log(self.lower), np.log(self.upper)))))
            value = min(max(value, self.lower), self.upper - 1)
        else:
            value = int(rng.integers(self.lower, self.upper))
        if self.q is None or self.q == 1:
            return value
        k_min, k_max = _multiples_within(self.lower, self.upper, self.q, upper_inclusive=False)
        k = min(max(round(value / self.q), k_min), k_max)
        return int(k * self.q)

    def contains(self, value: Any) -> bool:
        if not is_integer(value):
            return False
        if self.q is not None and value % self.q != 0:
            return False
        return self.lower <= value < self.upper


@dataclass(frozen=True)
class Categorical(Domain):
    """One of a list of values, each equally likely.

    Attributes:
        categories: The values; any objects, returned as they are.
    """

    categories: list[Any] = field(default_factory=list)

    def __post_init__(self) -> None:
        categories = list(self.categories)
        if not categories:
            raise _fail(
                _call_text("choice", categories=self.categories),
                "`categories` is empty, but it needs at least one value",
                "pass a non-empty list such as choice([1, 2, 3])",
            )
        object.__setattr__(self, "categories", categories)

    def __len__(self) -> int:
        return len(self.categories)

    def sample(self, rng: np.random.Generator, spec: object | None = None) -> Any:
        # Index rather than rng.choice(categories), which would coerce the
        # categories to one numpy dtype.
        return self.categories[int(rng.integers(len(self.categories)))]

    def contains(self, value: Any) -> bool:
        return any(value == category for category in self.categories)


@dataclass(frozen=True)
class Function(Domain):
    """A value computed by a user function (``sample_from``).

    Attributes:
        func: Called with one argument, the ``spec`` (see :func:`sample_from`),
            or with none if it takes no arguments.
    """

    func: Callable[..., Any]

    def __post_init__(self) -> None:
        if not callable(self.func):
            raise _fail(
                _call_text("sample_from", func=self.func),
                f"`func` is {self.func!r}, but it must be callable",
                "pass a function such as sample_from(lambda spec: spec.config.a * 2)",
            )

    @property
    def is_function(self) -> bool:
        return True

    @property
    def takes_spec(self) -> bool:
        """Whether ``func`` is called with the spec (else with no argument)."""
        try:
            signature = inspect.signature(self.func)
        except (TypeError, ValueError):  # builtins without a signature
            return True
        try:
            signature.bind(None)
        except TypeError:
            return False
        return True

    def sample(self, rng: np.random.Generator, spec: object | None = None) -> Any:
        return self.func(spec) if self.takes_spec else self.func()

    def contains(self, value: Any) -> bool:
        return True


# ------------------------------------------------------- public constructors


def uniform(lower: float, upper: float) -> Float:
    """A float drawn uniformly from ``[lower, upper)``.

    Example:
        >>> import numpy as np
        >>> 0.0 <= uniform(0.0, 1.0).sample(np.random.default_rng(0)) < 1.0
        True
    """
    call = _call_text("uniform", lower=lower, upper=upper)
    _check_real(call, "lower", lower), _check_real(call, "upper", upper)
    lower, upper = _in_order(call, lower, upper)
    _check_bounds(call, lower, upper, log=False)
    return Float(lower, upper)


def quniform(lower: float, upper: float, q: float) -> Float:
    """A float drawn uniformly from ``[lower, upper]`` and rounded to a multiple of ``q``.

    Example:
        >>> import numpy as np
        >>> quniform(0.0, 1.0, 0.25).sample(np.random.default_rng(0)) in {0.0, 0.25, 0.5, 0.75, 1.0}
        True
    """
    call = _call_text("quniform", lower=lower, upper=upper, q=q)
    _check_real(call, "lower", lower), _check_real(call, "upper", upper)
    lower, upper = _in_order(call, lower, upper)
    _check_bounds(call, lower, upper, log=False)
    _check_q(call, q, integer=False)
    return _rename(call, lambda: Float(lower, upper, q=q))


def loguniform(lower: float, upper: float, base: float = 10) -> Float:
    """A float whose logarithm is uniform: as likely in [1e-4, 1e-3] as in [1e-3, 1e-2].

    Example:
        >>> import numpy as np
        >>> 1e-4 <= loguniform(1e-4, 1e-1).sample(np.random.default_rng(0)) < 1e-1
        True
    """
    call = _call_text("loguniform", lower=lower, upper=upper, base=base)
    _check_real(call, "lower", lower), _check_real(call, "upper", upper)
    lower, upper = _in_order(call, lower, upper)
    _check_bounds(call, lower, upper, log=True)
    _check_base(call, base)
    return Float(lower, upper, kind=SamplingKind.LOGUNIFORM, base=base)


def qloguniform(lower: float, upper: float, q: float, base: float = 10) -> Float:
    """A log-uniform float in ``[lower, upper]`` rounded to a multiple of ``q``."""
    call = _call_text("qloguniform", lower=lower, upper=upper, q=q, base=base)
    _check_real(call, "lower", lower), _check_real(call, "upper", upper)
    lower, upper = _in_order(call, lower, upper)
    _check_bounds(call, lower, upper, log=True)
    _check_q(call, q, integer=False)
    _check_base(call, base)
    return _rename(call, lambda: Float(lower, upper, kind=SamplingKind.LOGUNIFORM, base=base, q=q))


def randn(mean: float = 0.0, sd: float = 1.0) -> Float:
    """A float drawn from the normal distribution with ``mean`` and ``sd``."""
    call = _call_text("randn", mean=mean, sd=sd)
    _check_real(call, "mean", mean)
    _check_sd(call, sd)
    return Float(None, None, kind=SamplingKind.NORMAL, mean=mean, sd=sd)


def qrandn(mean: float, sd: float, q: float) -> Float:
    """A normal float (``mean``, ``sd``) rounded to a multiple of ``q``."""
    call = _call_text("qrandn", mean=mean, sd=sd, q=q)
    _check_real(call, "mean", mean)
    _check_sd(call, sd)
    _check_q(call, q, integer=False)
    return Float(None, None, kind=SamplingKind.NORMAL, mean=mean, sd=sd, q=q)


def randint(lower: int, upper: int) -> Integer:
    """An int drawn uniformly from ``lower`` (inclusive) to ``upper`` (exclusive).

    Example:
        >>> import numpy as np
        >>> randint(0, 3).sample(np.random.default_rng(0)) in {0, 1, 2}
        True
    """
    call = _call_text("randint", lower=lower, upper=upper)
    low, high = _check_integral(call, "lower", lower), _check_integral(call, "upper", upper)
    _check_bounds(call, lower, upper, log=False)
    return Integer(low, high)


def qrandint(lower: int, upper: int, q: int = 1) -> Integer:
    """A multiple of ``q`` drawn uniformly from ``lower`` to ``upper``, BOTH inclusive (as in Ray).

    Example:
        >>> import numpy as np
        >>> qrandint(0, 10, 5).sample(np.random.default_rng(0)) in {0, 5, 10}
        True
    """
    call = _call_text("qrandint", lower=lower, upper=upper, q=q)
    low, high = _check_integral(call, "lower", lower), _check_integral(call, "upper", upper)
    _check_bounds(call, lower, upper, log=False)
    _check_q(call, q, integer=True)
    return _rename(call, lambda: Integer(low, high + 1, q=q))


def lograndint(lower: int, upper: int, base: float = 10) -> Integer:
    """An int drawn log-uniformly from ``lower`` (inclusive) to ``upper`` (exclusive)."""
    call = _call_text("lograndint", lower=lower, upper=upper, base=base)
    low, high = _check_integral(call, "lower", lower), _check_integral(call, "upper", upper)
    _check_bounds(call, lower, upper, log=True)
    _check_base(call, base)
    return Integer(low, high, kind=SamplingKind.LOGUNIFORM, base=base)


def qlograndint(lower: int, upper: int, q: int, base: float = 10) -> Integer:
    """A log-uniform multiple of ``q`` from ``lower`` to ``upper``, BOTH inclusive (as in Ray)."""
    call = _call_text("qlograndint", lower=lower, upper=upper, q=q, base=base)
    low, high = _check_integral(call, "lower", lower), _check_integral(call, "upper", upper)
    _check_bounds(call, lower, upper, log=True)
    _check_q(call, q, integer=True)
    _check_base(call, base)
    return _rename(
        call, lambda: Integer(low, high + 1, kind=SamplingKind.LOGUNIFORM, base=base, q=q)
    )


def choice(categories: Sequence[Any]) -> Categorical:
    """One of ``categories``, each equally likely; values are returned as given.

    Example:
        >>> import numpy as np
        >>> choice(["relu", "tanh"]).sample(np.random.default_rng(0)) in {"relu", "tanh"}
        True
    """
    if isinstance(categories, (str, bytes, dict)) or not hasattr(categories, "__iter__"):
        raise _fail(
            _call_text("choice", categories=categories),
            f"`categories` is {categories!r}, but it must be a list of values",
            "pass a list such as choice(['relu', 'tanh'])",
        )
    return Categorical(list(categories))


def sample_from(func: Callable[..., Any]) -> Function:
    """A value computed by ``func`` once the rest of the config is sampled.

    ``func`` receives a ``spec`` whose ``spec.config`` gives attribute and item
    access to the already-resolved values of the trial's config, so one value
    can depend on another (``sample_from(lambda spec: 2 * spec.config.width)``).
    For code written against newer Ray versions, ``spec["width"]`` and
    ``spec.width`` read the config too.  A function taking no argument is
    called without one.

    Use a :class:`numpy.random.Generator` of your own inside ``func`` if it
    draws random numbers; the global ``numpy.random`` state makes runs
    irreproducible.
    """
    return Function(func)


def grid_search(values: Sequence[Any]) -> dict[str, list[Any]]:
    """Try every one of ``values``: the space is expanded into one variant per value.

    Several grid searches in one space give their cross product.

    Example:
        >>> grid_search([1, 2])
        {'grid_search': [1, 2]}
    """
    if isinstance(values, (str, bytes, dict)) or not hasattr(values, "__iter__"):
        raise _fail(
            _call_text("grid_search", values=values),
            f"`values` is {values!r}, but it must be a list of values",
            "pass a list such as grid_search([0.1, 0.01])",
        )
    listed = list(values)
    if not listed:
        raise _fail(
            _call_text("grid_search", values=values),
            "`values` is empty, so the grid would have no variant",
            "pass at least one value, or remove the key from the space",
        )
    return {GRID_SEARCH_KEY: listed}


def is_grid_search(value: Any) -> bool:
    """Whether ``value`` is a ``grid_search`` marker (``{"grid_search": [...]}``)."""
    return isinstance(value, dict) and len(value) == 1 and GRID_SEARCH_KEY in value


def _rename(call: str, build: Callable[[], Domain]) -> Any:
    """Build a domain, reporting its errors under the public constructor's name."""
    try:
        return build()
    except ValueError as error:
        message = str(error)
        head, sep, rest = message.partition("): ")
        raise ValueError(f"{call}: {rest}" if sep else message) from None
