"""dasktune._validation: one rule per number helper, the mode check, the metric/mode mixin."""

from __future__ import annotations

import ast
import math
import sys
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dasktune._validation import (
    MetricModeMixin,
    as_number,
    invalid_argument,
    is_finite_number,
    is_integer,
    is_number,
    validate_mode,
)

PACKAGE = Path(__file__).resolve().parents[1] / "dasktune"

NUMBERS = [0, -3, 2.5, np.int64(7), np.float32(1.5), Fraction(1, 3), 10**30]
NOT_NUMBERS = [True, False, np.bool_(True), None, "1", [1], complex(1, 0), {}]
NON_FINITE = [math.nan, math.inf, -math.inf, np.float64("nan")]


@pytest.mark.parametrize("value", NUMBERS + NON_FINITE)
def test_is_number_takes_every_real_but_bools(value: Any) -> None:
    assert is_number(value)


@pytest.mark.parametrize("value", NOT_NUMBERS)
def test_bools_and_other_types_are_not_numbers(value: Any) -> None:
    assert not is_number(value)
    assert not is_finite_number(value)
    assert not is_integer(value)
    assert as_number(value) is None


def test_is_finite_number_refuses_nan_and_infinities() -> None:
    assert all(is_finite_number(value) for value in NUMBERS)
    assert not any(is_finite_number(value) for value in NON_FINITE)


def test_is_integer_takes_integral_types_only() -> None:
    assert all(is_integer(value) for value in (0, -3, np.int64(7), np.uint8(2), 10**30))
    assert not any(is_integer(value) for value in (2.0, np.float64(2), Fraction(4, 2), math.nan))


def test_as_number_is_a_float_and_keeps_nan() -> None:
    assert as_number(np.int64(3)) == 3.0 and type(as_number(np.int64(3))) is float
    assert math.isnan(as_number(math.nan))  # type: ignore[arg-type]
    assert as_number(-math.inf) == -math.inf


def test_invalid_argument_names_the_argument_the_value_the_rule_and_the_fix() -> None:
    error = invalid_argument("max_t", -1, "it must be > 0", "Pass max_t=100.")
    assert str(error) == "The value of `max_t` is -1, but it must be > 0. Pass max_t=100."


def test_validate_mode() -> None:
    for mode in (None, "min", "max"):
        validate_mode(mode)
    with pytest.raises(
        ValueError,
        match=r"^The value of `mode` is 'maximise', but it must be "
        r"'min' or 'max'\. Pass mode='max'",
    ):
        validate_mode("maximise")
    with pytest.raises(ValueError, match=r"`TuneConfig\(mode=\.\.\.\)` is 1"):
        validate_mode(1, "TuneConfig(mode=...)")


class Rule(MetricModeMixin):
    def __init__(self, metric: str | None = None, mode: str | None = None) -> None:
        self._set_metric_and_mode(metric, mode)


def test_mixin_fills_in_what_is_not_set() -> None:
    rule = Rule(metric="loss")
    assert (rule.metric, rule.mode) == ("loss", None)
    assert rule.set_search_properties("loss", "min", num_samples=3)
    assert (rule.metric, rule.mode) == ("loss", "min")
    assert rule.set_search_properties(None, None)
    assert (rule.metric, rule.mode) == ("loss", "min")


def test_mixin_reports_a_conflict_and_changes_nothing() -> None:
    rule = Rule(metric="loss")
    assert not rule.set_search_properties("accuracy", "max")
    assert (rule.metric, rule.mode) == ("loss", None)
    rule = Rule(mode="min")
    assert not rule.set_search_properties("loss", "max")
    assert (rule.metric, rule.mode) == (None, "min")


def test_mixin_checks_the_mode() -> None:
    with pytest.raises(ValueError, match="'min' or 'max'"):
        Rule(mode="minimise")
    with pytest.raises(ValueError, match="'min' or 'max'"):
        Rule().set_search_properties("loss", "minimise")


def test_mixin_requires_metric_and_mode_with_the_fix() -> None:
    Rule("loss", "min")._require_metric_and_mode()
    with pytest.raises(
        ValueError,
        match=r"Rule needs a `metric` and a `mode`, but metric='loss' "
        r"and mode=None\. Pass them to Rule\(metric=\.\.\., "
        r"mode=\.\.\.\) or to tune\.TuneConfig",
    ):
        Rule("loss")._require_metric_and_mode()


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_validation_is_a_leaf_module() -> None:
    """It imports only the standard library, so every subpackage may import it."""
    imported = imported_modules(PACKAGE / "_validation.py")
    assert {name.split(".")[0] for name in imported} <= set(sys.stdlib_module_names)


def test_search_does_not_import_schedulers() -> None:
    """schedulers/pbt.py imports search/sample.py; the way back would be an import cycle."""
    for path in sorted((PACKAGE / "search").glob("*.py")):
        imported = imported_modules(path)
        assert not any(name.startswith("dasktune.schedulers") for name in imported), path.name
