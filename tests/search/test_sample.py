"""Domains and their constructors: ranges, types, quantization, attributes, errors."""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import numpy as np
import pytest

from dasktune.search import sample as tune
from dasktune.search.sample import Categorical, Float, Integer, SamplingKind

N = 3000


def draw(domain: tune.Domain, n: int = N, seed: int = 0) -> list[Any]:
    rng = np.random.default_rng(seed)
    return [domain.sample(rng) for _ in range(n)]


def is_multiple(value: float, q: float) -> bool:
    return math.isclose(value / q, round(value / q), abs_tol=1e-9)


# ----------------------------------------------------------------- floats


def test_uniform_range_type_and_spread() -> None:
    values = draw(tune.uniform(2.0, 5.0))
    assert all(type(v) is float for v in values)
    assert all(2.0 <= v < 5.0 for v in values)
    assert min(values) < 2.05 and max(values) > 4.95
    assert np.mean(values) == pytest.approx(3.5, abs=0.1)


def test_quniform_values_are_float_multiples_of_q_including_both_bounds() -> None:
    values = draw(tune.quniform(0.0, 1.0, 0.1))
    assert all(type(v) is float for v in values)
    assert all(is_multiple(v, 0.1) and 0.0 <= v <= 1.0 for v in values)
    assert set(values) == {round(0.1 * k, 10) for k in range(11)}


def test_quniform_bounds_not_multiples_of_q_stay_inside() -> None:
    values = draw(tune.quniform(0.05, 0.95, 0.2))
    assert set(values) <= {0.2, 0.4, 0.6, 0.8}
    assert set(values) == {0.2, 0.4, 0.6, 0.8}


def test_loguniform_range_and_log_spread() -> None:
    values = np.array(draw(tune.loguniform(1e-4, 1e-1)))
    assert np.all((values >= 1e-4) & (values < 1e-1))
    # Each decade holds about a third of the samples.
    for low in (1e-4, 1e-3, 1e-2):
        share = np.mean((values >= low) & (values < low * 10))
        assert share == pytest.approx(1 / 3, abs=0.05)


def test_qloguniform_multiples_within_bounds() -> None:
    values = draw(tune.qloguniform(1.0, 100.0, 5.0))
    assert all(type(v) is float and is_multiple(v, 5.0) and 5.0 <= v <= 100.0 for v in values)
    assert 100.0 in values and 5.0 in values


def test_randn_moments() -> None:
    values = np.array(draw(tune.randn(5.0, 2.0)))
    assert values.mean() == pytest.approx(5.0, abs=0.15)
    assert values.std() == pytest.approx(2.0, abs=0.15)


def test_randn_defaults_are_standard_normal() -> None:
    domain = tune.randn()
    assert (domain.mean, domain.sd) == (0.0, 1.0)
    assert np.mean(draw(domain)) == pytest.approx(0.0, abs=0.1)


def test_qrandn_multiples_of_q() -> None:
    values = draw(tune.qrandn(0.0, 1.0, 0.5))
    assert all(type(v) is float and is_multiple(v, 0.5) for v in values)
    assert {-1.0, -0.5, 0.0, 0.5, 1.0} <= set(values)


# --------------------------------------------------------------- integers


def test_randint_upper_exclusive_plain_ints() -> None:
    values = draw(tune.randint(0, 3))
    assert all(type(v) is int for v in values)
    assert set(values) == {0, 1, 2}


def test_qrandint_upper_inclusive_like_ray() -> None:
    domain = tune.qrandint(0, 10, 5)
    assert domain.upper == 11  # normalised to an exclusive bound
    values = draw(domain)
    assert all(type(v) is int for v in values)
    assert set(values) == {0, 5, 10}


def test_qrandint_ray_docs_example_negative_range() -> None:
    values = draw(tune.qrandint(-21, 12, 3))
    assert set(values) == set(range(-21, 13, 3))


def test_qrandint_default_q_is_one_and_inclusive() -> None:
    assert set(draw(tune.qrandint(1, 4))) == {1, 2, 3, 4}


def test_lograndint_upper_exclusive_log_spread() -> None:
    values = np.array(draw(tune.lograndint(1, 1000)))
    assert all(type(v) is int for v in values.tolist())
    assert values.min() == 1 and values.max() <= 999
    assert np.mean(values < 10) == pytest.approx(1 / 3, abs=0.05)


def test_qlograndint_upper_inclusive_multiples() -> None:
    domain = tune.qlograndint(1, 10, 5)
    assert domain.upper == 11
    values = draw(domain)
    assert set(values) == {5, 10}
    assert all(type(v) is int for v in values)


# ---------------------------------------------------- categorical, function


def test_choice_keeps_each_category_as_given() -> None:
    categories = [1, "a", None, 2.5, (1, 2)]
    values = draw(tune.choice(categories))
    assert len(set(map(repr, values))) == len(categories)
    assert {type(v) for v in values} == {int, str, type(None), float, tuple}


def test_choice_is_uniform() -> None:
    values = draw(tune.choice(["a", "b", "c", "d"]), n=8000)
    for category in "abcd":
        assert values.count(category) / 8000 == pytest.approx(0.25, abs=0.03)


def test_choice_accepts_any_iterable() -> None:
    assert tune.choice(range(3)).categories == [0, 1, 2]
    assert tune.choice(("x", "y")).categories == ["x", "y"]


def test_sample_from_calls_func_with_spec_or_without_arguments() -> None:
    seen: list[object] = []
    with_spec = tune.sample_from(lambda spec: seen.append(spec) or 3)
    assert with_spec.sample(np.random.default_rng(0), spec="the-spec") == 3
    assert seen == ["the-spec"]
    assert tune.sample_from(lambda: 7).sample(np.random.default_rng(0)) == 7
    assert with_spec.is_function and not tune.uniform(0, 1).is_function


def test_grid_search_returns_ray_marker() -> None:
    assert tune.grid_search([1, 2]) == {"grid_search": [1, 2]}
    assert tune.grid_search(x for x in "ab") == {"grid_search": ["a", "b"]}
    assert tune.is_grid_search(tune.grid_search([0]))
    assert not tune.is_grid_search({"grid_search": [1], "other": 2})


# ------------------------------------------------- attributes for converters


@pytest.mark.parametrize(
    ("domain", "expected"),
    [
        (tune.uniform(1, 2), Float(1.0, 2.0)),
        (tune.quniform(0, 1, 0.25), Float(0.0, 1.0, q=0.25)),
        (tune.loguniform(1e-3, 1), Float(1e-3, 1.0, kind=SamplingKind.LOGUNIFORM)),
        (tune.loguniform(1, 8, base=2), Float(1.0, 8.0, kind=SamplingKind.LOGUNIFORM, base=2)),
        (
            tune.qloguniform(1, 100, 1, base=2),
            Float(1.0, 100.0, kind=SamplingKind.LOGUNIFORM, base=2, q=1.0),
        ),
        (tune.randn(1, 3), Float(None, None, kind=SamplingKind.NORMAL, mean=1.0, sd=3.0)),
        (tune.qrandn(0, 2, 0.5), Float(None, None, kind=SamplingKind.NORMAL, sd=2.0, q=0.5)),
        (tune.randint(0, 5), Integer(0, 5)),
        (tune.qrandint(0, 10, 2), Integer(0, 11, q=2)),
        (tune.lograndint(1, 100), Integer(1, 100, kind=SamplingKind.LOGUNIFORM)),
        (
            tune.qlograndint(1, 100, 10, base=2),
            Integer(1, 101, kind=SamplingKind.LOGUNIFORM, base=2, q=10),
        ),
        (tune.choice("a b".split()), Categorical(["a", "b"])),
    ],
)
def test_constructors_build_documented_domains(domain: tune.Domain, expected: tune.Domain) -> None:
    assert domain == expected


def test_kind_is_str_enum_and_attributes_have_converter_types() -> None:
    domain = tune.qloguniform(1, 100, 5)
    assert domain.kind == "loguniform" and str(domain.kind) == "loguniform"
    assert isinstance(domain.lower, float) and isinstance(domain.q, float)
    assert domain.base == 10
    integer = tune.qrandint(0, 10, 5)
    assert isinstance(integer.q, int) and integer.kind == "uniform"
    assert tune.randint(0, 3).q is None and tune.uniform(0, 1).q is None


def test_domains_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        tune.uniform(0, 1).lower = 3  # type: ignore[misc]


def test_quantized_returns_new_domain() -> None:
    base = tune.uniform(0, 1)
    quantized = base.quantized(0.5)
    assert base.q is None and quantized.q == 0.5
    assert set(draw(quantized)) == {0.0, 0.5, 1.0}
    assert set(draw(tune.randint(0, 10).quantized(3))) == {0, 3, 6, 9}


def test_contains() -> None:
    assert tune.uniform(0, 1).contains(0.5) and not tune.uniform(0, 1).contains(1.5)
    assert not tune.uniform(0, 1).contains("0.5")
    assert tune.randint(0, 3).contains(2) and not tune.randint(0, 3).contains(3)
    assert not tune.randint(0, 3).contains(1.0)
    assert tune.qrandint(0, 10, 5).contains(10) and not tune.qrandint(0, 10, 5).contains(4)
    assert tune.quniform(0, 1, 0.1).contains(0.3) and not tune.quniform(0, 1, 0.1).contains(0.35)
    assert tune.randn().contains(-12.0)
    assert tune.choice([1, "a"]).contains("a") and not tune.choice([1, "a"]).contains("b")
    assert tune.sample_from(lambda spec: 1).contains(object())


def test_numbers_follow_one_rule() -> None:
    """Any real number but a bool (dasktune._validation.is_number), numpy scalars included."""
    assert tune.uniform(0, 1).contains(np.float32(0.5))
    assert tune.uniform(0, 1).contains(Fraction(1, 2))
    assert not tune.uniform(0, 1).contains(True) and not tune.randint(0, 3).contains(True)
    assert tune.randint(0, 3).contains(np.int64(2))
    assert not tune.randint(0, 3).contains(np.float64(2))
    assert tune.uniform(Fraction(1, 4), np.float32(1)) == tune.uniform(0.25, 1.0)
    assert tune.randint(np.int64(1), 4.0) == tune.randint(1, 4)
    with pytest.raises(ValueError, match="`lower` is True, but it must be a real number"):
        tune.uniform(True, 2)
    with pytest.raises(ValueError, match="`upper` is False, but it must be an integer"):
        tune.randint(0, False)


def test_sampling_is_reproducible_with_the_same_generator_seed() -> None:
    domains = (
        tune.uniform(0, 1),
        tune.lograndint(1, 100),
        tune.choice(list("abc")),
        tune.qrandn(0, 1, 0.1),
    )
    for domain in domains:
        assert draw(domain, 50, seed=7) == draw(domain, 50, seed=7)
        assert draw(domain, 50, seed=7) != draw(domain, 50, seed=8)


# --------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("build", "call", "bounds"),
    [
        (lambda: tune.uniform(5, 1), "uniform(lower=5, upper=1)", (1, 5)),
        (lambda: tune.quniform(3, 1, 0.5), "quniform(lower=3, upper=1, q=0.5)", (1, 3)),
        (lambda: tune.loguniform(1e-3, 1e-5), "loguniform(lower=0.001, upper=1e-05", (1e-5, 1e-3)),
        (lambda: tune.qloguniform(100, 1, 1), "qloguniform(lower=100, upper=1", (1, 100)),
    ],
)
def test_a_float_range_given_upper_first_is_drawn_as_ray_draws_it(build, call, bounds):
    """Ray Tune accepts it, and real scripts have it (``loguniform(1e-3, 1e-5)``): the same
    range, with a warning that names the call; integer ranges stay an error, as in Ray."""
    with pytest.warns(UserWarning, match=re.escape(call)) as caught:
        domain = build()
    assert "Swap them" in str(caught[0].message)
    assert (domain.lower, domain.upper) == bounds
    rng = np.random.default_rng(0)
    assert all(bounds[0] <= domain.sample(rng) <= bounds[1] for _ in range(100))


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        (
            lambda: tune.uniform(1, 1),
            ["uniform(lower=1, upper=1)", "`lower` must be less than `upper`"],
        ),
        (lambda: tune.uniform(0, math.inf), ["`upper` is inf", "finite"]),
        (lambda: tune.uniform("a", 1), ["`lower` is 'a'", "real number"]),
        (
            lambda: tune.quniform(0, 1, 0),
            ["quniform(lower=0, upper=1, q=0)", "`q` is 0", "greater than 0"],
        ),
        (lambda: tune.quniform(0, 1, -0.1), ["`q` is -0.1"]),
        (lambda: tune.quniform(0.1, 0.2, 1), ["no multiple of `q`", "smaller `q`"]),
        (
            lambda: tune.loguniform(0, 1),
            ["loguniform(lower=0, upper=1, base=10)", "`lower` is 0", "> 0"],
        ),
        (lambda: tune.loguniform(-1, 1), ["`lower` is -1"]),
        (lambda: tune.loguniform(1, 10, base=1), ["`base` is 1"]),
        (lambda: tune.qloguniform(0, 10, 1), ["qloguniform(lower=0", "`lower` is 0"]),
        (lambda: tune.qloguniform(1, 10, 0), ["`q` is 0"]),
        (lambda: tune.randn(0, 0), ["randn(mean=0, sd=0)", "`sd` is 0", "greater than 0"]),
        (lambda: tune.randn(0, -1), ["`sd` is -1"]),
        (lambda: tune.qrandn(0, 1, 0), ["qrandn(mean=0, sd=1, q=0)", "`q` is 0"]),
        (lambda: tune.qrandn(0, -2, 1), ["`sd` is -2"]),
        (lambda: tune.randint(5, 1), ["randint(lower=5, upper=1)", "swap them"]),
        (lambda: tune.randint(3, 3), ["randint(lower=3, upper=3)", "less than"]),
        (lambda: tune.randint(0.5, 3), ["`lower` is 0.5", "integer"]),
        (lambda: tune.qrandint(10, 0, 2), ["qrandint(lower=10, upper=0, q=2)", "swap them"]),
        (lambda: tune.qrandint(0, 10, 0), ["`q` is 0"]),
        (lambda: tune.qrandint(0, 10, 2.5), ["`q` is 2.5", "integer"]),
        (lambda: tune.qrandint(1, 3, 5), ["no multiple of `q` (5) lies in [1, 3]"]),
        (
            lambda: tune.lograndint(0, 10),
            ["lograndint(lower=0, upper=10, base=10)", "`lower` is 0"],
        ),
        (lambda: tune.lograndint(10, 1), ["swap them"]),
        (lambda: tune.qlograndint(0, 10, 2), ["qlograndint(lower=0", "`lower` is 0"]),
        (lambda: tune.qlograndint(1, 10, -2), ["`q` is -2"]),
        (lambda: tune.choice([]), ["choice(categories=[])", "empty", "non-empty list"]),
        (lambda: tune.choice("abc"), ["`categories` is 'abc'", "list"]),
        (lambda: tune.choice(5), ["`categories` is 5"]),
        (lambda: tune.grid_search([]), ["grid_search(values=[])", "empty"]),
        (lambda: tune.grid_search(3), ["`values` is 3", "list"]),
        (lambda: tune.sample_from(5), ["`func` is 5", "callable"]),
        (lambda: Float(2.0, 1.0), ["Float(lower=2.0, upper=1.0", "swap them"]),
        (lambda: Float(0.0, 1.0, kind=SamplingKind.NORMAL), ["no bounds"]),
        (lambda: Integer(0, 5, kind=SamplingKind.NORMAL), ["cannot be normal"]),
    ],
)
def test_bad_input_names_argument_value_rule_and_fix(
    build: Callable[[], Any], expected: list[str]
) -> None:
    with pytest.raises(ValueError) as info:
        build()
    message = str(info.value)
    for fragment in expected:
        assert fragment in message
    # Every message ends with a fix after the rule.
    assert "; " in message and message.endswith(".")
