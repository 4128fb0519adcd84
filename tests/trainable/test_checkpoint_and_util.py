"""Checkpoint directories and the trainable wrappers with_parameters / with_resources."""

from __future__ import annotations

import math
import os
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dasktune.trainable.checkpoint import Checkpoint
from dasktune.trainable.trainable import Trainable
from dasktune.trainable.util import (
    normalize_resources,
    resources_of,
    unwrap,
    with_parameters,
    with_resources,
)

# -- Checkpoint -------------------------------------------------------------


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "state"
    (directory / "nested").mkdir(parents=True)
    (directory / "model.txt").write_text("weights")
    (directory / "nested" / "opt.txt").write_text("momentum")
    return directory


def test_a_dict_checkpoint_gives_its_dict_back() -> None:
    data = {"epoch": 3, "weights": np.arange(4.0), "scale": lambda x: 2 * x}
    checkpoint = Checkpoint.from_dict(data)
    back = checkpoint.to_dict()
    assert back["epoch"] == 3 and back["weights"].tolist() == [0.0, 1.0, 2.0, 3.0]
    assert back["scale"](2) == 4, "cloudpickle: a lambda survives too"
    copied = Checkpoint(checkpoint.to_directory())
    assert copied.to_dict()["epoch"] == 3, "the dict travels with the directory"
    shutil.rmtree(checkpoint.path)
    shutil.rmtree(copied.path)


def test_a_dict_checkpoint_needs_a_dict_and_a_file_checkpoint_has_none(state_dir: Path) -> None:
    with pytest.raises(
        TypeError, match=r"Checkpoint.from_dict\(data=\[1, 2\]\): data must be a dict"
    ):
        Checkpoint.from_dict([1, 2])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"holds files, not a dict.*as_directory"):
        Checkpoint.from_directory(state_dir).to_dict()


def test_from_directory_accepts_str_and_pathlike(state_dir: Path) -> None:
    assert Checkpoint.from_directory(state_dir).path == str(state_dir)
    assert Checkpoint.from_directory(str(state_dir)).path == str(state_dir)
    assert os.fspath(Checkpoint.from_directory(state_dir)) == str(state_dir)


def test_from_directory_missing_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(
        ValueError, match=r"Checkpoint\.from_directory\(path=.*nope.*no such directory"
    ):
        Checkpoint.from_directory(missing)


def test_from_directory_rejects_a_file(state_dir: Path) -> None:
    with pytest.raises(ValueError, match="no such directory"):
        Checkpoint.from_directory(state_dir / "model.txt")


def test_as_directory_yields_the_files(state_dir: Path) -> None:
    with Checkpoint.from_directory(state_dir).as_directory() as directory:
        assert Path(directory, "model.txt").read_text() == "weights"


def test_to_directory_copies_into_a_given_path(state_dir: Path, tmp_path: Path) -> None:
    target = tmp_path / "copy"
    assert Checkpoint(state_dir).to_directory(target) == str(target)
    assert (target / "nested" / "opt.txt").read_text() == "momentum"
    (target / "model.txt").write_text("changed")
    assert (state_dir / "model.txt").read_text() == "weights", "the copy is independent"


def test_to_directory_without_path_makes_a_temporary_one(state_dir: Path) -> None:
    target = Checkpoint(state_dir).to_directory()
    try:
        assert target != str(state_dir)
        assert Path(target, "model.txt").read_text() == "weights"
    finally:
        shutil.rmtree(target)


def test_equality_and_hash_compare_absolute_paths(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(state_dir.parent)
    relative, absolute = Checkpoint("state"), Checkpoint(state_dir)
    assert relative == absolute
    assert hash(relative) == hash(absolute)
    assert len({relative, absolute}) == 1
    assert Checkpoint("other") != absolute
    assert absolute != str(state_dir)
    assert repr(absolute) == f"Checkpoint(path={str(state_dir)!r})"


# -- with_parameters --------------------------------------------------------


def train(config: dict[str, Any], data: Any = None, labels: Any = None) -> None:
    """Train on data."""


class Model(Trainable):
    def setup(self, config: dict[str, Any], data: Any = None) -> None:
        self.data = data

    def step(self) -> dict[str, Any]:
        return {"n": len(self.data)}


def test_with_parameters_binds_objects() -> None:
    data = list(range(5))
    wrapped = with_parameters(train, data=data, labels="y")
    fn, params = unwrap(wrapped)
    assert fn is train
    assert params == {"data": data, "labels": "y"}
    assert params["data"] is data, "bound objects are not copied"
    assert wrapped.__name__ == "train"
    assert wrapped.__doc__ == "Train on data."
    assert repr(wrapped) == "with_parameters(train, data, labels)"


def test_with_parameters_with_nothing_to_bind_is_the_trainable_itself() -> None:
    """Ray Tune accepts with_parameters(train) (cifar10_pytorch does it)."""
    assert with_parameters(train) is train
    assert unwrap(with_parameters(train)) == (train, {})


def test_with_parameters_on_a_class_trainable() -> None:
    wrapped = with_parameters(Model, data=[1, 2, 3])
    cls, params = unwrap(wrapped)
    assert cls is Model
    assert wrapped.__name__ == "Model"
    assert cls({"a": 1}, **params).step() == {"n": 3}


def test_unwrap_plain_trainable() -> None:
    assert unwrap(train) == (train, {})
    assert unwrap(Model) == (Model, {})


# -- with_resources ---------------------------------------------------------


def test_normalize_maps_ray_names_and_passes_others_through() -> None:
    assert normalize_resources({"cpu": 2, "gpu": 0.5, "MEM": 8e9, "GPU": 1}) == {
        "CPU": 2.0,
        "GPU": 1.0,
        "MEM": 8e9,
    }


def test_normalize_drops_zero_amounts() -> None:
    assert normalize_resources({"cpu": 1, "gpu": 0}) == {"CPU": 1.0}


def test_normalize_takes_numpy_amounts() -> None:
    # as read from a config or computed with numpy: np.int64(2) is not an int
    assert normalize_resources({"cpu": np.int64(2), "gpu": np.float32(0.5)}) == {
        "CPU": 2.0,
        "GPU": 0.5,
    }


def test_normalize_returns_floats() -> None:
    normalized = normalize_resources({"gpu": 1})
    assert normalized == {"GPU": 1.0} and isinstance(normalized["GPU"], float)


@pytest.mark.parametrize("amount", [-1, "1", None, [1]])
def test_bad_amount_names_the_resource_and_amount(amount: Any) -> None:
    with pytest.raises(ValueError, match=re.escape(f"the amount of 'gpu' is {amount!r}")):
        with_resources(train, {"gpu": amount})


def test_nan_amount_is_rejected() -> None:
    with pytest.raises(ValueError, match="the amount of 'gpu'"):
        with_resources(train, {"gpu": math.nan})


def test_resources_must_be_a_mapping() -> None:
    with pytest.raises(TypeError, match=r"with_resources\(resources=\[.*expected a dict"):
        with_resources(train, [("gpu", 1)])  # type: ignore[arg-type]


def test_with_resources_on_a_function() -> None:
    calls: list[Any] = []

    def fn(config: dict[str, Any], data: Any = None) -> str:
        calls.append((config, data))
        return "ok"

    wrapped = with_resources(fn, {"gpu": 1, "cpu": 1})
    assert resources_of(wrapped) == {"GPU": 1.0, "CPU": 1.0}
    assert wrapped.__name__ == "fn"
    assert wrapped({"a": 1}, data=2) == "ok"
    assert calls == [({"a": 1}, 2)]
    assert resources_of(fn) == {}, "the original function is unchanged"


def test_with_resources_on_a_class_makes_a_subclass() -> None:
    wrapped = with_resources(Model, {"gpu": 1})
    assert isinstance(wrapped, type) and issubclass(wrapped, Model) and wrapped is not Model
    assert wrapped.__name__ == "Model"
    assert resources_of(wrapped) == {"GPU": 1.0}
    assert resources_of(Model) == {}
    assert wrapped({}, data=[1]).step() == {"n": 1}


def test_resources_survive_with_parameters_in_either_order() -> None:
    inner = with_parameters(with_resources(train, {"gpu": 1}), data=[1])
    assert resources_of(inner) == {"GPU": 1.0}
    fn, params = unwrap(inner)
    assert params == {"data": [1]} and fn.__name__ == "train"

    outer = with_resources(with_parameters(train, data=[1]), {"gpu": 2})
    assert resources_of(outer) == {"GPU": 2.0}
    assert unwrap(outer) == (train, {"data": [1]})


def test_resources_of_returns_a_copy() -> None:
    wrapped = with_resources(train, {"gpu": 1})
    resources_of(wrapped)["GPU"] = 5
    assert resources_of(wrapped) == {"GPU": 1.0}


def test_with_resources_on_parameterized_does_not_alias() -> None:
    bound = with_parameters(train, data=[1])
    one_gpu = with_resources(bound, {"gpu": 1})
    two_gpus = with_resources(bound, {"gpu": 2})
    assert resources_of(two_gpus) == {"GPU": 2.0}
    assert resources_of(one_gpu) == {"GPU": 1.0}
    assert resources_of(bound) == {}
