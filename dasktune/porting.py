"""Port a Ray Tune script to dasktune: rewrite its imports and Ray calls, keep the rest.

Pure: source text in, :class:`PortResult` out (the ported text, what could
not be ported and why, notes); the ``dasktune port`` command
(:mod:`dasktune.cli`) reads and writes the files.  The script is read with
:mod:`ast`, and only the spans that change are edited in the text, so the
user's formatting and comments survive on every other line.

What it rewrites:

* imports of ``ray.tune`` and its modules (schedulers, search, hyperopt,
  optuna, stopper, logger...), ``ray.train`` and ``ray.air`` (``report``,
  ``Checkpoint``, ``get_checkpoint``, the configs, ``session``), and uses of
  them through ``import ray`` (``ray.tune.Tuner``, ``ray.train.report``);
* ``session.get_trial_id()`` and friends to ``tune.get_context().get_trial_id()``,
  the older ``tune.report(loss=...)`` to ``tune.report({"loss": ...})`` (``metrics=``
  and ``checkpoint=`` stay: they are report's own), the constants of
  ``ray.tune.result`` to their strings, ``ray.__version__`` to dasktune's;
* ``ray.init(...)``: removed (dasktune starts a local Dask cluster, or uses
  the default ``distributed.Client``), or ``distributed.Client(address)``
  when it had an address; its value (``context = ray.init()``) becomes None, or that
  client; ``ray.shutdown()``: removed; ``ray.is_initialized()``: False;
* ``ray.tune.examples.<module>`` helpers: imported from ``<module>`` beside the
  script (port that example too);
* torchvision's ``datasets`` (``from torchvision import datasets, transforms``,
  ``import torchvision.datasets as datasets``, ``from torchvision.datasets import
  MNIST``), where only its MNIST is used: dasktune's (the same MNIST, with an
  offline fallback).

What it drops, with a note: an import of a Ray name that the script binds itself
in the same scope (``from ray import train`` then ``def train(config)``: Ray's is
dead there), and an import that cannot be ported of a name the script never uses.
A name a function binds itself (``def load(train=True)``) is the function's, not Ray's.

What it cannot port is listed as a :class:`Problem` and left as it was: Ray's
tasks and actors (``ray.remote``, ``ray.get``), Ray Datasets, placement groups,
Ray Train's trainers (``TorchTrainer``), searchers and integrations dasktune
does not have.  Ray's environment variables (``RAY_CHDIR_TO_TRIAL_DIR``) stay, with
a note saying whether dasktune reads them.
"""

from __future__ import annotations

import ast
import difflib
import re
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

__all__ = ["PortResult", "Problem", "port_source", "unported"]

COMMENT = "# dasktune port:"


@dataclass(frozen=True)
class Problem:
    """A construct that could not be ported: where, what, and why (with the way out)."""

    line: int
    construct: str
    reason: str


@dataclass
class PortResult:
    """The outcome of :func:`port_source`."""

    original: str
    ported: str
    problems: list[Problem] = field(default_factory=list)
    #: Changes the user should know of, ``(line, text)``; they need no action to run.
    notes: list[tuple[int, str]] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return self.ported != self.original

    def diff(self, path: str = "script.py", ported_path: str | None = None) -> str:
        """A unified diff from the original to the ported text."""
        return "".join(
            difflib.unified_diff(
                self.original.splitlines(keepends=True),
                self.ported.splitlines(keepends=True),
                fromfile=path,
                tofile=ported_path or f"{path} (ported to dasktune)",
            )
        )


# -- where Ray's names are in dasktune -----------------------------------------------------


@dataclass(frozen=True)
class _Module:
    """A Ray module; ``target`` is the dasktune module its names go to."""

    target: str
    #: Whether an alias of it becomes an alias of ``target`` (the names keep their spelling);
    #: otherwise each use is rewritten (``train.report`` -> ``tune.report``).
    aliased: bool = False


@dataclass(frozen=True)
class _Name:
    """A Ray name that dasktune has: ``module.expression``, e.g. ``dasktune``, ``report``."""

    module: str
    expression: str
    #: What the user should know of where it is ported (it may not be quite Ray's).
    note: str = field(default="", repr=False)


@dataclass(frozen=True)
class _Literal:
    """A constant of Ray's: its string value, and why it may not do here what it does in Ray."""

    value: str
    caveat: str = ""


@dataclass(frozen=True)
class _Sibling:
    """A helper module of Ray's examples, expected beside the ported script."""

    module: str


@dataclass(frozen=True)
class _Unportable:
    reason: str


_Target = _Module | _Name | _Literal | _Sibling | _Unportable

_MODULES: dict[str, _Module] = {
    "ray.tune": _Module("dasktune", aliased=True),
    "ray.tune.schedulers": _Module("dasktune.schedulers", aliased=True),
    "ray.tune.search": _Module("dasktune.search", aliased=True),
    "ray.tune.search.hyperopt": _Module("dasktune.search.hyperopt", aliased=True),
    "ray.tune.search.optuna": _Module("dasktune.search.optuna", aliased=True),
    "ray.tune.stopper": _Module("dasktune.stopper", aliased=True),
    "ray.tune.logger": _Module("dasktune.logger", aliased=True),
    **{
        f"ray.tune.schedulers.{m}": _Module("dasktune.schedulers")
        for m in (
            "async_hyperband",
            "hyperband",
            "median_stopping_rule",
            "pb2",
            "pbt",
            "trial_scheduler",
        )
    },
    **{
        f"ray.tune.search.{m}": _Module("dasktune.search")
        for m in (
            "basic_variant",
            "concurrency_limiter",
            "repeater",
            "searcher",
            "sample",
            "variant_generator",
        )
    },
    # Ray 1.x kept the searchers in ray.tune.suggest (renamed ray.tune.search in 2.0), and
    # the search space's domains in ray.tune.sample.
    "ray.tune.suggest": _Module("dasktune.search", aliased=True),
    "ray.tune.suggest.hyperopt": _Module("dasktune.search.hyperopt", aliased=True),
    "ray.tune.suggest.optuna": _Module("dasktune.search.optuna", aliased=True),
    **{
        f"ray.tune.suggest.{m}": _Module("dasktune.search")
        for m in ("basic_variant", "repeater", "suggestion", "variant_generator")
    },
    "ray.tune.sample": _Module("dasktune.search"),
    "ray.tune.trial": _Module("dasktune.trial"),
    "ray.tune.progress_reporter": _Module("dasktune"),
    "ray.tune.execution.placement_groups": _Module("dasktune"),
    "ray.tune.callback": _Module("dasktune"),
    "ray.tune.error": _Module("dasktune"),
    "ray.tune.analysis": _Module("dasktune"),
    "ray.tune.result_grid": _Module("dasktune"),
    "ray.tune.trainable": _Module("dasktune"),
    "ray.tune.experiment": _Module("dasktune.trial"),
    "ray.tune.result": _Module("dasktune"),
    # The boosting libraries' callbacks; ray.tune.integration's others are not ported.
    "ray.tune.integration.xgboost": _Module("dasktune.integration.xgboost", aliased=True),
    "ray.tune.integration.lightgbm": _Module("dasktune.integration.lightgbm", aliased=True),
    "ray.train": _Module("dasktune"),
    "ray.air": _Module("dasktune"),
    "ray.air.config": _Module("dasktune"),
    "ray.air.result": _Module("dasktune"),
    "ray.air.session": _Module("dasktune"),
    "ray": _Module("dasktune"),
    # Ray ships cloudpickle as ray.cloudpickle; Dask depends on the package itself.
    "ray.cloudpickle": _Module("cloudpickle", aliased=True),
}

#: What each dasktune module offers under Ray's names (tests check these against the modules).
AVAILABLE: dict[str, frozenset[str]] = {
    "dasktune": frozenset(
        {
            "CLIReporter",
            "JupyterNotebookReporter",
            "ProgressReporter",
            "TuneReporterBase",
            "Callback",
            "Checkpoint",
            "CheckpointConfig",
            "Experiment",
            "ExperimentAnalysis",
            "FailureConfig",
            "Result",
            "ResultGrid",
            "RunConfig",
            "Stopper",
            "SyncConfig",
            "Trainable",
            "TuneConfig",
            "TuneError",
            "Tuner",
            "choice",
            "Analysis",
            "PlacementGroupFactory",
            "checkpoint_dir",
            "create_scheduler",
            "create_searcher",
            "get_checkpoint",
            "get_context",
            "grid_search",
            "lograndint",
            "loguniform",
            "qlograndint",
            "qloguniform",
            "qrandint",
            "qrandn",
            "quniform",
            "randint",
            "randn",
            "report",
            "run",
            "run_experiments",
            "sample_from",
            "uniform",
            "with_parameters",
            "with_resources",
        }
    ),
    "dasktune.schedulers": frozenset(
        {
            "ASHAScheduler",
            "AsyncHyperBandScheduler",
            "FIFOScheduler",
            "HyperBandScheduler",
            "MedianStoppingRule",
            "PB2",
            "PopulationBasedTraining",
            "PopulationBasedTrainingReplay",
            "TrialScheduler",
            "create_scheduler",
        }
    ),
    "dasktune.search": frozenset(
        {
            "BasicVariantGenerator",
            "ConcurrencyLimiter",
            "Repeater",
            "Searcher",
            "TRIAL_INDEX",
            "create_searcher",
            "choice",
            "grid_search",
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
            "Categorical",
            "Domain",
            "Float",
            "Function",
            "Integer",
        }
    ),
    "dasktune.search.hyperopt": frozenset({"HyperOptSearch"}),
    "dasktune.search.optuna": frozenset({"OptunaSearch"}),
    "dasktune.stopper": frozenset(
        {
            "Stopper",
            "CombinedStopper",
            "ExperimentPlateauStopper",
            "FunctionStopper",
            "MaximumIterationStopper",
            "NoopStopper",
            "TimeoutStopper",
            "TrialPlateauStopper",
        }
    ),
    "dasktune.logger": frozenset(
        {
            "LoggerCallback",
            "CSVLoggerCallback",
            "JsonLoggerCallback",
            "TBXLoggerCallback",
            "pretty_print",
        }
    ),
    "dasktune.trial": frozenset({"Trial"}),
    # TuneReportCallback: Ray 1.x's report-only callback (deprecated in Ray 2).
    **{
        f"dasktune.integration.{library}": frozenset(
            {"TuneReportCheckpointCallback", "TuneReportCallback"}
        )
        for library in ("xgboost", "lightgbm")
    },
}

_ACTORS = (
    "Ray tasks and actors have no dasktune counterpart: on Dask, run functions with "
    "distributed.Client.submit, or do the work inside the trainable."
)
_RUNTIME = "a query of the Ray runtime; dasktune runs on Dask (see distributed.Client)."
_TRAINERS = (
    "Ray Train's distributed trainers run a training loop on several workers; "
    "dasktune tunes a function that trains in one worker process: call your training "
    "loop from a function trainable."
)
#: The calls of Ray's runtime that are ported, and what they become.
_RUNTIME_CALLS = {
    "init": "ray.init(...) is removed, or becomes distributed.Client(address)",
    "shutdown": "ray.shutdown() is removed",
    "is_initialized": "ray.is_initialized() becomes False",
    "put": "ray.put(value) becomes the value itself",
    "get": "ray.get(ref) becomes ref (the value ray.put was given)",
}
_CONTEXT = {
    f"get_{what}": f"get_context().get_{what}"
    for what in ("trial_id", "trial_name", "trial_dir", "trial_resources", "experiment_name")
}
_RESULT_KEYS = {
    "DONE": "done",
    "HOSTNAME": "hostname",
    "TRIAL_ID": "trial_id",
    "PID": "pid",
    "TIME_TOTAL_S": "time_total_s",
    "TIME_THIS_ITER_S": "time_this_iter_s",
    "TIMESTAMP": "timestamp",
    "TRAINING_ITERATION": "training_iteration",
    "SHOULD_CHECKPOINT": "should_checkpoint",
    "MEAN_LOSS": "mean_loss",
    "MEAN_ACCURACY": "mean_accuracy",
    "EPISODE_REWARD_MEAN": "episode_reward_mean",
    "TIMESTEPS_TOTAL": "timesteps_total",
    "EPISODES_TOTAL": "episodes_total",
    "TIMESTEPS_THIS_ITER": "timesteps_this_iter",
    "EPISODES_THIS_ITER": "episodes_this_iter",
}

#: Names that need more than the module's mapping, by their full Ray path.
_SPECIAL: dict[str, _Target] = {
    **{f"ray.air.session.{name}": _Name("dasktune", expr) for name, expr in _CONTEXT.items()},
    **{f"ray.tune.{name}": _Name("dasktune", expr) for name, expr in _CONTEXT.items()},
    **{f"ray.tune.result.{name}": _Literal(value) for name, value in _RESULT_KEYS.items()},
    **{
        f"ray.{m}.get_world_{w}": _Unportable(_TRAINERS)
        for m in ("air.session", "train")
        for w in ("size", "rank")
    },
    "ray.air.session.get_local_rank": _Unportable(_TRAINERS),
    "ray.air.session.get_dataset_shard": _Unportable(_TRAINERS),
    "ray.train.get_dataset_shard": _Unportable(_TRAINERS),
    "ray.train.ScalingConfig": _Unportable(_TRAINERS),
    "ray.air.ScalingConfig": _Unportable(_TRAINERS),
    "ray.air.config.ScalingConfig": _Unportable(_TRAINERS),
    "ray.train.DataConfig": _Unportable(_TRAINERS),
    "ray.util.placement_group": _Unportable(
        "placement groups are Ray's; on Dask a trial runs in one worker process: ask for "
        "resources with tune.with_resources(train, {'cpu': 1, 'gpu': 1})."
    ),
    "ray.tune.execution": _Unportable(
        "Ray Tune's execution internals have no dasktune "
        "counterpart (dasktune.execution is not a public API)."
    ),
    "ray.rllib": _Unportable(
        "RLlib's algorithms run on Ray; dasktune tunes functions and tune.Trainable classes."
    ),
    "ray.tune.register_trainable": _Unportable(
        "dasktune has no registry of trainables: pass the function or class itself."
    ),
    "ray.tune.register_env": _Unportable("dasktune has no registry of environments."),
    "ray.tune.ResumeConfig": _Unportable(
        "give tune.run(resume=...) Ray's strings ('AUTO', 'LOCAL+ERRORED', "
        "'AUTO+RESTART_ERRORED'...), or call Tuner.restore(path, trainable, "
        "resume_errored=..., restart_errored=...)."
    ),
    "ray.tune.schedulers.hb_bohb": _Unportable("BOHB is not in dasktune."),
    "ray.tune.schedulers.HyperBandForBOHB": _Unportable("BOHB is not in dasktune."),
    "ray.tune.schedulers.ResourceChangingScheduler": _Unportable(
        "dasktune cannot change a running trial's resources."
    ),
    "ray.tune.utils.validate_save_restore": _Name("dasktune.utils", "validate_save_restore"),
    "ray.tune.logger.Logger": _Unportable(
        "Ray's older Logger classes are gone from Ray 2 too: subclass "
        "dasktune.logger.LoggerCallback (log_trial_result...) and pass it in callbacks=."
    ),
    # Ray 0.8's way to report, removed in Ray 1.0: the same keywords go to tune.report.
    "ray.tune.track.log": _Name("dasktune", "report"),
    **{
        f"ray.tune.utils.mock_trainable.{name}": _Name("dasktune.utils.mock_trainable", name)
        for name in ("MyTrainableClass", "MOCK_ERROR_KEY", "MOCK_TRAINABLE_NAME")
    },
    "ray.tune.utils": _Unportable(
        "ray.tune.utils is Ray's internal toolbox: dasktune.utils has validate_save_restore "
        "and mock_trainable.MyTrainableClass; copy anything else you use into your script."
    ),
    "ray.tune.integration": _Unportable(
        "Ray's framework callbacks report through Ray's session, and dasktune has only "
        "XGBoost's and LightGBM's (dasktune.integration.xgboost, .lightgbm): call "
        "tune.report from a callback of your own (Keras and Lightning take callbacks)."
    ),
    # Ray Train's callback for XGBoost and LightGBM is the one ray.tune.integration has.
    **{
        f"ray.train.{library}.RayTrainReportCallback": _Name(
            f"dasktune.integration.{library}", "TuneReportCheckpointCallback"
        )
        for library in ("xgboost", "lightgbm")
    },
    "ray.air.integrations": _Unportable(
        "Ray's MLflow/W&B/Comet integrations are not in dasktune: log from the trainable, or "
        "write a tune.Callback."
    ),
    "ray.train.torch": _Unportable(_TRAINERS),
    "ray.train.tensorflow": _Unportable(_TRAINERS),
    "ray.train.lightning": _Unportable(_TRAINERS),
    "ray.train.huggingface": _Unportable(_TRAINERS),
    "ray.train.xgboost": _Unportable(_TRAINERS),
    "ray.train.lightgbm": _Unportable(_TRAINERS),
    "ray.data": _Unportable(
        "Ray Datasets have no dasktune counterpart: load the data in the trainable, or pass "
        "it once with tune.with_parameters(train, data=data) (a dask.dataframe works too)."
    ),
    "ray.util": _Unportable("ray.util is part of Ray's runtime; " + _RUNTIME),
    **{
        f"ray.{name}": _Unportable(_ACTORS)
        for name in (
            "remote",
            "get",
            "put",
            "wait",
            "kill",
            "get_actor",
            "method",
            "actor",
            "cancel",
            "ObjectRef",
        )
    },
    **{
        f"ray.{name}": _Unportable(
            f"ray.{name} is ported only where it is called ({ported}); here it is not "
            "called: call it, or remove this use."
        )
        for name, ported in _RUNTIME_CALLS.items()
    },
    "ray.__version__": _Name(
        "dasktune",
        "__version__",
        note="ray.__version__ became dasktune's version (dasktune.__version__), not Ray's",
    ),
    **{
        f"ray.{name}": _Unportable(_RUNTIME)
        for name in (
            "cluster_resources",
            "available_resources",
            "nodes",
            "get_runtime_context",
            "timeline",
        )
    },
}
#: Ray's environment variables that dasktune reads too (a test checks this against dasktune).
_HONOURED_VARIABLES = {
    "RAY_CHDIR_TO_TRIAL_DIR": "dasktune honours it as Ray does (so does "
    "TuneConfig(chdir_to_trial_dir=False))",
    "TUNE_DISABLE_STRICT_METRIC_CHECKING": "dasktune honours it as Ray does: results "
    "without the metric pass",
}
_SEARCH_LIBRARIES = (
    "dasktune has HyperOptSearch and OptunaSearch (dasktune.search.hyperopt, "
    "dasktune.search.optuna); this searcher is not supported."
)


def _resolve(path: str) -> tuple[_Target, str]:
    """What a dotted Ray path is in dasktune, and the part of the path that was resolved.

    Example:
        >>> target, resolved = _resolve("ray.tune.schedulers.ASHAScheduler")
        >>> target
        _Name(module='dasktune.schedulers', expression='ASHAScheduler')
        >>> resolved
        'ray.tune.schedulers.ASHAScheduler'
    """
    parts = path.split(".")
    for end in range(len(parts), 0, -1):
        prefix = ".".join(parts[:end])
        if prefix in _SPECIAL:
            return _SPECIAL[prefix], prefix
        if prefix.startswith("ray.tune.examples.") and end == 4:
            return _Sibling(parts[3]), prefix
        if prefix in _MODULES:
            module = _MODULES[prefix]
            if end == len(parts):
                return module, prefix
            name = parts[end]
            full = f"{prefix}.{name}"
            if name in AVAILABLE.get(module.target, ()) or not module.target.startswith(
                "dasktune"
            ):  # another package (cloudpickle) keeps all of its names
                return _Name(module.target, name), full
            if full in _MODULES:  # a submodule such as ray.tune.schedulers
                return _MODULES[full], full
            if prefix == "ray.tune.search" and name not in AVAILABLE["dasktune.search"]:
                return _Unportable(_SEARCH_LIBRARIES), full
            return _Unportable(f"dasktune has no {full}."), full
    return _Unportable(f"dasktune has no {path}."), path


# -- reading the script --------------------------------------------------------------------


def _comment(text: str) -> list[str]:
    """``text`` as comment lines of the ported script."""
    return textwrap.wrap(
        text,
        88,
        initial_indent=f"{COMMENT} ",
        subsequent_indent="#   ",
        break_long_words=False,
        break_on_hyphens=False,
    )


def _dotted(node: ast.expr) -> list[str] | None:
    """``a.b.c`` as ``["a", "b", "c"]``; None for anything but names and attributes."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return parts[::-1]


def _parents(tree: ast.AST) -> dict[int, list[ast.stmt]]:
    """For each statement (by id), the statement list that holds it."""
    holders: dict[int, list[ast.stmt]] = {}
    for node in ast.walk(tree):
        for name in ("body", "orelse", "finalbody"):
            block = getattr(node, name, None)
            if isinstance(block, list):
                for statement in block:
                    if isinstance(statement, ast.stmt):
                        holders[id(statement)] = block
    return holders


#: The statements that open a scope of their own.
_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
_TRIES = (ast.Try, getattr(ast, "TryStar", ast.Try))  # try/except* is Python 3.11's


def _scope_statements(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """The statements of a scope, those of its blocks (if, try, with...) included, and not
    those in the functions and classes it defines."""
    for statement in body:
        yield statement
        if isinstance(statement, _SCOPES):
            continue
        for name in ("body", "orelse", "finalbody"):
            yield from _scope_statements(getattr(statement, name, []))
        for part in (*getattr(statement, "handlers", ()), *getattr(statement, "cases", ())):
            yield from _scope_statements(part.body)


def _branches(statement: ast.stmt) -> list[list[ast.stmt]]:
    """The blocks of ``statement`` of which only one runs: an if and its else, a try and
    its handlers."""
    if isinstance(statement, ast.If):
        return [statement.body, statement.orelse]
    if isinstance(statement, _TRIES):
        return [statement.body, *(handler.body for handler in statement.handlers)]
    return []


def _target_names(target: ast.expr) -> Iterator[str]:
    if isinstance(target, ast.Name):
        yield target.id
    elif isinstance(target, (ast.Tuple, ast.List)):
        for element in target.elts:
            yield from _target_names(element)
    elif isinstance(target, ast.Starred):
        yield from _target_names(target.value)


def _bound_names(statement: ast.stmt) -> Iterator[str]:
    """The names ``statement`` itself binds (not the statements in its blocks)."""
    if isinstance(statement, _SCOPES):
        yield statement.name
    elif isinstance(statement, ast.Assign):
        for target in statement.targets:
            yield from _target_names(target)
    elif isinstance(statement, ast.AnnAssign) and statement.value is not None:
        yield from _target_names(statement.target)
    elif isinstance(statement, (ast.For, ast.AsyncFor)):
        yield from _target_names(statement.target)
    elif isinstance(statement, (ast.With, ast.AsyncWith)):
        for item in statement.items:
            if item.optional_vars is not None:
                yield from _target_names(item.optional_vars)
    elif isinstance(statement, (ast.Import, ast.ImportFrom)):
        for alias in statement.names:
            yield alias.asname or alias.name.split(".")[0]


def _executed(node: ast.AST) -> Iterator[ast.AST]:
    """``node`` and the nodes evaluated with it: not the bodies of the functions and lambdas
    it defines, which run later."""
    yield node
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        later = {id(statement) for statement in node.body}
    elif isinstance(node, ast.Lambda):
        later = {id(node.body)}
    else:
        later = set()
    for child in ast.iter_child_nodes(node):
        if id(child) not in later:
            yield from _executed(child)


def _position(node: ast.stmt | ast.expr) -> tuple[int, int]:
    return node.lineno, node.col_offset


#: The nodes that know where they stand in the source.
_Located = ast.expr | ast.stmt | ast.keyword | ast.alias


def _end(node: _Located) -> tuple[int, int]:
    """Where ``node`` ends: (line, column); always known for a parsed node."""
    assert node.end_lineno is not None and node.end_col_offset is not None
    return node.end_lineno, node.end_col_offset


class _Text:
    """The script's text, addressed by AST positions, and the edits to make to it."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.lines = source.splitlines(keepends=True)
        self._starts = [0]
        for line in self.lines:
            self._starts.append(self._starts[-1] + len(line))
        self.edits: list[tuple[int, int, str]] = []

    def offset(self, line: int, col_bytes: int) -> int:
        """The character offset of an AST position (columns are UTF-8 bytes)."""
        text = self.lines[line - 1] if line - 1 < len(self.lines) else ""
        return self._starts[line - 1] + len(text.encode()[:col_bytes].decode(errors="replace"))

    def span(self, node: _Located) -> tuple[int, int]:
        end_line, end_col = _end(node)
        return self.offset(node.lineno, node.col_offset), self.offset(end_line, end_col)

    def segment(self, node: _Located) -> str:
        start, end = self.span(node)
        return self.source[start:end]

    def indent(self, node: ast.stmt) -> str:
        line = self.lines[node.lineno - 1]
        return line[: len(line) - len(line.lstrip())]

    def replace(self, start: int, end: int, text: str) -> None:
        self.edits.append((start, end, text))

    def whole_lines(self, node: ast.stmt) -> tuple[int, int] | None:
        """The span of the lines ``node`` fills alone (comments after it included), if so."""
        start, end = self.span(node)
        line_start = self._starts[node.lineno - 1]
        line_end = self._starts[_end(node)[0]]
        before = self.source[line_start:start]
        after = self.source[end:line_end]
        if before.strip() or (after.strip() and not after.strip().startswith("#")):
            return None
        return line_start, line_end

    def result(self) -> str:
        text = self.source
        for start, end, new in sorted(self.edits, key=lambda e: (e[0], e[1]), reverse=True):
            text = text[:start] + new + text[end:]
        return text


@dataclass
class _Binding:
    """A name the script binds to something of Ray's."""

    ray_path: str
    statement: ast.stmt
    module_level: bool


class _Porter:
    def __init__(self, source: str) -> None:
        self.tree = ast.parse(source)
        self.text = _Text(source)
        self.problems: list[Problem] = []
        self.notes: list[tuple[int, str]] = []
        self.holders = _parents(self.tree)
        self.bindings: dict[str, _Binding] = {}
        self.ray_imports: list[ast.Import | ast.ImportFrom] = []
        self.used_names = {n.id for n in ast.walk(self.tree) if isinstance(n, ast.Name)} | {
            n.name
            for n in ast.walk(self.tree)
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
        }
        self.handle = ""  # the name dasktune is imported as, once decided
        self.handle_imported = False
        self.new_imports: dict[str, None] = {}  # import statements the rewritten code needs
        self.removed: dict[int, list[ast.stmt]] = {}  # id(block) -> its statements removed
        self.kept_ray_uses: dict[str, int] = {}  # binding name -> unportable uses left
        self.dead: set[int] = set()  # ids of the import aliases the script rebinds, dropped
        self.ported_uses: set[int] = set()  # ids of the Names whose use was ported away
        self._statements: dict[int, ast.stmt] = {}  # id(node) -> the innermost statement
        self._around: dict[int, tuple[ast.AST, ...]] = {}  # id(node) -> functions around it
        self._scope_locals: dict[int, set[str]] = {}  # id(function) -> its local names

    # -- the steps ------------------------------------------------------------
    def run(self) -> PortResult:
        self._collect_imports()
        if not self.ray_imports:
            return PortResult(self.text.source, self.text.source)
        self._drop_rebound_imports()
        self._choose_handle()
        self._rewrite_uses()
        self._rewrite_imports()
        self._fill_emptied_blocks()
        self._offline_datasets()
        self._environment_notes()
        self._dotted_column_notes()
        self.problems.sort(key=lambda p: p.line)
        self.notes.sort()
        return PortResult(self.text.source, self.text.result(), self.problems, self.notes)

    def _collect_imports(self) -> None:
        module_level = set(map(id, self.tree.body))
        for node in ast.walk(self.tree):
            top = id(node) in module_level
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name == "ray" or alias.name.startswith("ray."):
                        self.ray_imports.append(node)
                        if alias.asname:
                            self.bindings[alias.asname] = _Binding(alias.name, node, top)
                        else:
                            self.bindings["ray"] = _Binding("ray", node, top)
            elif (
                isinstance(node, ast.ImportFrom)
                and node.level == 0
                and node.module
                and (node.module == "ray" or node.module.startswith("ray."))
            ):
                self.ray_imports.append(node)
                for alias in node.names:
                    self.bindings[alias.asname or alias.name] = _Binding(
                        f"{node.module}.{alias.name}", node, top
                    )
        self.ray_imports = list(dict.fromkeys(self.ray_imports))

    def _drop_rebound_imports(self) -> None:
        """A Ray name the script binds again in the same scope (``def train(config)`` after
        ``from ray import train``) is the script's own from there on, under Ray too: its
        import is dead, and dropped, rather than ported."""
        imports = {id(statement) for statement in self.ray_imports}
        scopes = [self.tree, *(n for n in ast.walk(self.tree) if isinstance(n, _SCOPES))]
        for scope in scopes:
            statements = list(_scope_statements(scope.body))
            for statement in statements:
                if not isinstance(statement, (ast.Import, ast.ImportFrom)):
                    continue
                if id(statement) not in imports:
                    continue
                for alias in statement.names:
                    name = alias.asname or alias.name.split(".")[0]
                    rebinding = next(
                        (
                            other
                            for other in statements
                            if id(other) not in imports
                            and _position(other) > _position(statement)
                            and name in set(_bound_names(other))
                            and not self._alternatives(statements, statement, other)
                        ),
                        None,
                    )
                    if rebinding is not None:
                        self._drop_rebound(scope.body, statement, alias, name, rebinding)

    @staticmethod
    def _alternatives(statements: list[ast.stmt], a: ast.stmt, b: ast.stmt) -> bool:
        """Whether ``a`` and ``b`` are in blocks of which only one runs (try: import,
        except ImportError: define a fallback)."""
        for statement in statements:
            branches = [{id(s) for s in _scope_statements(block)} for block in _branches(statement)]
            holding = [i for i, ids in enumerate(branches) if id(a) in ids or id(b) in ids]
            if len(holding) == 2:
                return True
        return False

    def _drop_rebound(
        self,
        body: list[ast.stmt],
        statement: ast.Import | ast.ImportFrom,
        alias: ast.alias,
        name: str,
        rebinding: ast.stmt,
    ) -> None:
        imported = (
            f"from {statement.module} import {self.text.segment(alias)}"
            if isinstance(statement, ast.ImportFrom)
            else f"import {self.text.segment(alias)}"
        )
        early = next(
            (
                node
                for top in body
                for node in _executed(top)
                if isinstance(node, ast.Name)
                and node.id == name
                and isinstance(node.ctx, ast.Load)
                and _position(statement) < _position(node) < _position(rebinding)
            ),
            None,
        )
        if early is not None:
            self._problem(
                early.lineno,
                name,
                f"the script uses {name} of {imported} here, then binds {name} itself "
                f"(line {rebinding.lineno}): rename its own {name}, so that each use "
                "says which it means.",
            )
            return
        self.dead.add(id(alias))
        binding = self.bindings.get(name)
        if binding is not None and binding.statement is statement:
            del self.bindings[name]
        self._note(
            statement.lineno,
            f"{imported} dropped: the script binds {name} itself (line {rebinding.lineno}), "
            f"and its uses are of that {name}, as under Ray",
        )

    def _choose_handle(self) -> None:
        """Use the script's own alias of ray.tune where it has one at module level."""
        for name, binding in self.bindings.items():
            if binding.ray_path == "ray.tune" and binding.module_level:
                self.handle, self.handle_imported = name, True
                return
        taken = self.used_names - {n for n, b in self.bindings.items()}
        self.handle = "tune" if "tune" not in taken and "tune" not in self.bindings else "dasktune"

    def _need_handle(self) -> str:
        if not self.handle_imported:
            statement = (
                "import dasktune"
                if self.handle == "dasktune"
                else f"import dasktune as {self.handle}"
            )
            self.new_imports.setdefault(statement)
        return self.handle

    def _aliased(self, name: str) -> bool:
        """Whether the binding ``name`` stays a module alias (``import dasktune as tune``)."""
        module = _MODULES.get(self.bindings[name].ray_path)
        return module is not None and module.aliased

    # -- uses -------------------------------------------------------------------
    def _rewrite_uses(self) -> None:
        consumed: set[int] = set()
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Call):
                self._runtime_call(node, consumed)
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Call) and id(node.func) not in consumed:
                self._old_report(node)
            if not isinstance(node, (ast.Attribute, ast.Name)) or id(node) in consumed:
                continue
            parts = self._ray_chain(node)
            if parts is None:
                continue
            for child in ast.walk(node):
                consumed.add(id(child))
            if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
                continue
            self._rewrite_chain(node, parts)

    def _ray_chain(self, node: ast.expr) -> list[str] | None:
        """``node`` as a chain of names (``["tune", "report"]``) whose first is bound to
        Ray's, there: not a local of a function around it (``def load(train=True)``)."""
        parts = _dotted(node)
        if parts is None or parts[0] not in self.bindings:
            return None
        if not self._around:
            stack: list[tuple[ast.AST, tuple[ast.AST, ...]]] = [(self.tree, ())]
            while stack:
                parent, around = stack.pop()
                self._around[id(parent)] = around
                if isinstance(parent, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                    around = (parent, *around)
                stack.extend((child, around) for child in ast.iter_child_nodes(parent))
        if any(parts[0] in self._locals(scope) for scope in self._around[id(node)]):
            return None
        return parts

    def _locals(self, scope: ast.AST) -> set[str]:
        """The names a function or lambda binds itself (its arguments included), but for
        those of its Ray imports."""
        if id(scope) not in self._scope_locals:
            assert isinstance(scope, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            arguments = scope.args
            names = {
                a.arg
                for a in (
                    *arguments.posonlyargs,
                    *arguments.args,
                    *arguments.kwonlyargs,
                    arguments.vararg,
                    arguments.kwarg,
                )
                if a is not None
            }
            if not isinstance(scope, ast.Lambda):
                statements = list(_scope_statements(scope.body))
                ray_imports = {id(s) for s in self.ray_imports}
                names.update(
                    n for s in statements if id(s) not in ray_imports for n in _bound_names(s)
                )
                names.difference_update(
                    n
                    for s in statements
                    if isinstance(s, (ast.Global, ast.Nonlocal))
                    for n in s.names
                )
            self._scope_locals[id(scope)] = names
        return self._scope_locals[id(scope)]

    def _chain_target(self, parts: list[str]) -> tuple[_Target, int]:
        """The target of a chain of names, and how many of its parts it covers."""
        binding = self.bindings[parts[0]]
        path = ".".join([binding.ray_path, *parts[1:]])
        target, resolved = _resolve(path)
        covered = len(resolved.split(".")) - len(binding.ray_path.split(".")) + 1
        return target, max(1, covered)

    def _rewrite_chain(self, node: ast.expr, parts: list[str]) -> None:
        target, covered = self._chain_target(parts)
        line = node.lineno
        shown = ".".join(parts[:covered])
        if covered == 1 and not isinstance(target, _Module):
            return  # a name imported on its own: its import statement is ported or reported
        if isinstance(target, _Unportable):
            self._problem(line, shown, target.reason, parts[0])
            return
        if isinstance(target, _Sibling):
            self.new_imports.setdefault(f"import {target.module}")
            self._sibling_note(line, shown, target.module)
        if isinstance(target, _Literal) and target.caveat:
            self._problem(line, shown, target.caveat)
        if isinstance(target, _Module) and not target.aliased and not self._aliased(parts[0]):
            self._problem(
                line,
                shown,
                f"{shown} is used as an object, and dasktune has no "
                "module of that name: use the names in it instead "
                f"({self.handle}.report, {self.handle}.RunConfig...).",
                parts[0],
            )
            return
        if isinstance(target, _Name) and target.note:
            self._note(line, target.note)
        new = self._expression(parts[0], target)
        if new is None:
            return
        # Replace the covered prefix of the chain: the innermost Attribute/Name spanning it.
        prefix = node
        for _ in range(len(parts) - covered):
            assert isinstance(prefix, ast.Attribute)  # the chain a.b.c is Attributes down to a
            prefix = prefix.value
        start, end = self.text.span(prefix)
        if self.text.source[start:end] != new:
            self.text.replace(start, end, new)

    def _expression(self, root: str, target: _Module | _Name | _Literal | _Sibling) -> str | None:
        """The dasktune expression for ``target`` used through the binding ``root``."""
        if isinstance(target, _Literal):
            return repr(target.value)
        if isinstance(target, _Sibling):
            return target.module
        binding = self.bindings[root]
        if self._aliased(root):
            own = _MODULES[binding.ray_path].target
            if isinstance(target, _Module):
                return None if target.target == own else self._qualified(target.target, None)
            if target.module == own:
                return f"{root}.{target.expression}"
            return self._qualified(target.module, target.expression)
        if isinstance(target, _Module):  # ray.tune through import ray, say
            return self._qualified(target.target, None)
        return self._qualified(target.module, target.expression)

    def _qualified(self, module: str, expression: str | None) -> str:
        if module == "dasktune":
            handle = self._need_handle()
            return f"{handle}.{expression}" if expression else handle
        self.new_imports.setdefault(f"import {module}")
        return f"{module}.{expression}" if expression else module

    def _note(self, line: int, *text: str) -> None:
        note = (line, "".join(text))
        if note not in self.notes:
            self.notes.append(note)

    def _sibling_note(self, line: int, path: str, module: str) -> None:
        self._note(
            line,
            f"{path} is one of Ray's example modules: port "
            f"ray/tune/examples/{module}.py too and save it as {module}.py beside "
            "this script",
        )

    def _problem(self, line: int, construct: str, reason: str, root: str | None = None) -> None:
        self.problems.append(Problem(line, construct, reason))
        if root is not None:
            self.kept_ray_uses[root] = self.kept_ray_uses.get(root, 0) + 1

    def _old_report(self, call: ast.Call) -> None:
        """Ray 1's ``tune.report(loss=1.0)``: metrics as keywords become a dict.

        ``metrics=`` and ``checkpoint=`` are report's own parameters (Ray 2's
        ``train.report(metrics={...}, checkpoint=...)``), in dasktune too: they stay.
        """
        parts = self._ray_chain(call.func)
        if parts is None or call.args or not call.keywords:
            return
        target, covered = self._chain_target(parts)
        if not (
            isinstance(target, _Name) and target.expression == "report" and covered == len(parts)
        ):
            return
        keywords = call.keywords
        metrics = [k for k in keywords if k.arg != "checkpoint"]
        if not metrics or any(k.arg in (None, "metrics") for k in metrics):
            return  # report(metrics=..., checkpoint=...) is dasktune's own; ** is unknown
        if any(
            isinstance(n, ast.Name) and n.id in self.bindings
            for k in metrics
            for n in ast.walk(k.value)
        ):
            return  # Ray names inside: their own rewrites would overlap this one
        items = ", ".join(f"{k.arg!r}: {self.text.segment(k.value)}" for k in metrics)
        # The dict goes first, a positional argument; the metrics' keywords go, each with
        # the comma before it; checkpoint= stays where it is, its value rewritten as usual.
        first = keywords[0]
        if first is metrics[0]:
            self.text.replace(*self.text.span(first), "{" + items + "}")
        else:
            start = self.text.span(first)[0]
            self.text.replace(start, start, "{" + items + "}, ")
        for previous, keyword in zip(keywords, keywords[1:], strict=False):
            if keyword in metrics:
                self.text.replace(self.text.span(previous)[1], self.text.span(keyword)[1], "")
        self._note(
            call.lineno,
            "report(name=value) became report({'name': value}), as dasktune's report takes a dict",
        )

    # -- ray.init, ray.shutdown, ray.is_initialized -----------------------------------
    def _runtime_call(self, call: ast.Call, consumed: set[int]) -> None:
        """A call of Ray's runtime that dasktune does without: as a statement it goes (or
        becomes a distributed.Client); as an expression it becomes a value that works."""
        parts = self._ray_chain(call.func)
        if parts is None:
            return
        path = ".".join([self.bindings[parts[0]].ray_path, *parts[1:]])
        if path not in {f"ray.{name}" for name in _RUNTIME_CALLS}:
            return
        for child in ast.walk(call):
            consumed.add(id(child))
            if isinstance(child, ast.Name) and child.id == parts[0]:
                self.ported_uses.add(id(child))
        statement = self._statement_of(call)
        alone = isinstance(statement, ast.Expr) and statement.value is call
        original = " ".join(self.text.segment(call).split())
        if path == "ray.init":
            self._ray_init(call, statement, original, alone)
        elif path in ("ray.put", "ray.get"):
            self._object_store(call, original, path, parts[0])
        elif alone and path == "ray.shutdown":
            self._remove(statement, [])
        else:
            value = "False" if path == "ray.is_initialized" else "None"
            self.text.replace(*self.text.span(call), value)
            self._own_cluster_note(call.lineno, original, value)

    def _object_store(self, call: ast.Call, original: str, path: str, root: str) -> None:
        """``ray.put(x)`` is ``x`` and ``ray.get(ref)`` is ``ref``: with no object store, the
        value itself travels (in a config, or bound once with tune.with_parameters)."""
        if len(call.args) != 1 or call.keywords:
            self._problem(
                call.lineno,
                path,
                "only ray.put(value) and ray.get(ref) of one value are ported (to the value "
                "itself); pass large objects to trials with tune.with_parameters(train, "
                "data=...).",
                root,
            )
            return
        inner = self.text.segment(call.args[0])
        self.text.replace(*self.text.span(call), f"({inner})")
        self._note(
            call.lineno,
            f"{original} became ({inner}): Dask has no object store to put it in; a large "
            "object is better bound once with tune.with_parameters(train, data=...)",
        )

    def _own_cluster_note(self, line: int, original: str, value: str) -> None:
        self._note(
            line,
            f"{original} became {value}: dasktune starts its Dask cluster itself, in "
            "Tuner.fit() and tune.run() (or uses your distributed.Client)",
        )

    def _statement_of(self, node: ast.expr) -> ast.stmt:
        """The innermost statement that holds ``node``."""
        if not self._statements:
            # ast.walk goes breadth first: an inner statement comes after the outer one.
            for statement in ast.walk(self.tree):
                if isinstance(statement, ast.stmt):
                    for child in ast.walk(statement):
                        self._statements[id(child)] = statement
        return self._statements[id(node)]

    def _ray_init(self, call: ast.Call, statement: ast.stmt, original: str, alone: bool) -> None:
        address = (
            call.args[0]
            if call.args
            else next((k.value for k in call.keywords if k.arg == "address"), None)
        )
        if isinstance(address, ast.Constant) and address.value is None:
            address = None
        resources = [
            k.arg
            for k in call.keywords
            if k.arg in ("num_cpus", "num_gpus", "resources", "memory", "object_store_memory")
        ]
        comments = []
        if resources:
            comments.extend(
                _comment(
                    f"{original} removed: dasktune starts one single-threaded worker per core "
                    "(the setting dasktune.cluster.n-workers), or uses your distributed.Client; "
                    "GPUs are worker resources, see the README."
                )
            )
            self._note(
                statement.lineno,
                f"{original}: its {', '.join(resources)} are the Dask "
                "cluster's to set, not the script's (see the comment left there)",
            )
        value = address.value if isinstance(address, ast.Constant) else None
        if isinstance(value, str) and (value in ("auto", "local") or value.startswith("ray://")):
            comments.extend(
                _comment(
                    f"{original} removed: connect to your Dask cluster with "
                    "dask_client = distributed.Client('tcp://<scheduler>:8786')."
                )
            )
            self._note(
                statement.lineno,
                f"{original}: a Ray cluster's address; pass "
                "your Dask scheduler's address to distributed.Client",
            )
            address = None
        elif address is None and not resources and alone:
            self._note(
                statement.lineno,
                f"{original} removed: dasktune starts a "
                "local Dask cluster, or uses your distributed.Client",
            )
        if address is not None:
            self.new_imports.setdefault("import distributed")
            self._note(
                statement.lineno,
                f"{original} became distributed.Client(...): give "
                "it your Dask scheduler's address (tcp://host:8786), not Ray's",
            )
        if alone:
            if address is None:
                self._remove(statement, comments)
            else:
                self._connect(statement, address, original, comments)
        else:
            self._init_value(call, statement, address, original, comments)

    def _connect(
        self, statement: ast.stmt, address: ast.expr, original: str, comments: list[str]
    ) -> None:
        """The statement ``ray.init(address=...)``: connect a distributed.Client instead."""
        name = "dask_client"
        while name in self.used_names:
            name = f"_{name}"
        indent = self.text.indent(statement)
        expr = self.text.segment(address)
        if isinstance(address, ast.Constant):
            lines = [f"{name} = distributed.Client({expr})  {COMMENT} was {original}"]
        else:  # None there meant a local cluster, which dasktune starts itself
            lines = [
                f"if {expr}:  {COMMENT} was {original}",
                f"    {name} = distributed.Client({expr})",
            ]
        start, end = self.text.span(statement)
        self.text.replace(start, end, f"\n{indent}".join([*comments, *lines]))

    def _init_value(
        self,
        call: ast.Call,
        statement: ast.stmt,
        address: ast.expr | None,
        original: str,
        comments: list[str],
    ) -> None:
        """``context = ray.init(...)``: the call becomes None, or a distributed.Client where
        it had an address (None there meant a local cluster, which dasktune starts)."""
        whole_value = isinstance(statement, (ast.Assign, ast.AnnAssign)) and (
            statement.value is call
        )
        if address is None:
            value = "None"
        elif isinstance(address, ast.Constant):
            value = f"distributed.Client({self.text.segment(address)})"
        else:
            expr = self.text.segment(address)
            value = f"distributed.Client({expr}) if {expr} else None"
            value = value if whole_value else f"({value})"
        self.text.replace(*self.text.span(call), value)
        line_start = self.text.offset(statement.lineno, 0)
        indent = self.text.indent(statement)
        self.text.replace(line_start, line_start, "".join(f"{indent}{c}\n" for c in comments))
        end = self.text.span(statement)[1]
        if whole_value and not self.text.source[end:].split("\n", 1)[0].strip():
            self.text.replace(end, end, f"  {COMMENT} was {original}")
        if address is None:
            self._own_cluster_note(call.lineno, original, value)
        if isinstance(statement, ast.Assign) and whole_value:
            self._context_uses(statement.targets, statement, original, value)
        elif isinstance(statement, ast.AnnAssign) and whole_value:
            self._context_uses([statement.target], statement, original, value)

    def _context_uses(
        self, targets: list[ast.expr], statement: ast.stmt, original: str, value: str
    ) -> None:
        """Report the uses of what ray.init() returned (Ray's context), which is gone."""
        names = {name for target in targets for name in _target_names(target)}
        for use in ast.walk(self.tree):
            if (
                isinstance(use, (ast.Attribute, ast.Subscript))
                and isinstance(use.value, ast.Name)
                and use.value.id in names
                and _position(use) > _position(statement)
            ):
                self._problem(
                    use.lineno,
                    " ".join(self.text.segment(use).split()),
                    f"{use.value.id} held what {original} returns, Ray's context; after the "
                    f"port it is {value}, which has no such field (a distributed.Client's "
                    "dashboard_link gives the Dask dashboard's address).",
                )

    def _remove(self, statement: ast.stmt, comments: list[str]) -> None:
        """Remove a statement; leave ``comments`` in its place, ``pass`` if the block empties."""
        block = self.holders.get(id(statement))
        if block is not None:
            self.removed.setdefault(id(block), []).append(statement)
        indent = self.text.indent(statement)
        whole = self.text.whole_lines(statement)
        text = "".join(f"{indent}{c}\n" for c in comments)
        if whole is not None:
            self.text.replace(whole[0], whole[1], text)
        else:
            start, end = self.text.span(statement)
            self.text.replace(start, end, "pass")
            if block is not None:
                self.removed[id(block)].remove(statement)  # "pass" keeps the block whole

    def _fill_emptied_blocks(self) -> None:
        for node in ast.walk(self.tree):
            for name in ("body", "orelse", "finalbody"):
                block = getattr(node, name, None)
                if not isinstance(block, list) or not block or id(block) not in self.removed:
                    continue
                if len(self.removed[id(block)]) == len(block):
                    first = block[0]
                    start = self.text.whole_lines(first)
                    if start is not None:
                        self.text.replace(start[0], start[0], f"{self.text.indent(first)}pass\n")

    def _offline_datasets(self) -> None:
        """torchvision's MNIST -> dasktune's (``from dasktune import datasets``).

        Where the script uses nothing of ``torchvision.datasets`` but MNIST, which
        dasktune's module offers as torchvision's own, with an offline fallback; the other
        names of the import (``transforms``) stay torchvision's.
        """
        for node in ast.walk(self.tree):
            if isinstance(node, ast.ImportFrom) and node.level == 0:
                modules = {"torchvision": "datasets", "torchvision.datasets": "MNIST"}
                wanted = modules.get(node.module or "", "")
            elif isinstance(node, ast.Import):  # import torchvision.datasets as datasets
                wanted = "torchvision.datasets"
            else:
                continue
            alias = next(
                (a for a in node.names if a.name == wanted and (a.asname or "." not in a.name)),
                None,
            )
            if alias is None or not self._mnist_only(alias.asname or alias.name, wanted):
                continue
            target, name = (
                ("dasktune.datasets", "MNIST") if wanted == "MNIST" else ("dasktune", "datasets")
            )
            new = f"from {target} import {name}"
            new += f" as {alias.asname}" if alias.asname not in (None, name) else ""
            others = ", ".join(self.text.segment(a) for a in node.names if a is not alias)
            if isinstance(node, ast.ImportFrom) and not others:
                self._rename_module(node, target)  # keeps the statement's own layout
            elif not others:
                self._put(node, [new])
            else:
                kind = (
                    f"from {node.module} import" if isinstance(node, ast.ImportFrom) else "import"
                )
                self._put(node, [new, f"{kind} {others}"])
            self._note(
                node.lineno,
                "torchvision's MNIST became dasktune.datasets.MNIST: torchvision's own, with "
                "a fallback to a real 5,000-image subset (said loudly) where MNIST cannot be "
                "downloaded",
            )

    def _mnist_only(self, name: str, imported: str) -> bool:
        """Whether the script uses ``name`` for MNIST alone: ``name.MNIST`` where it is
        torchvision's datasets module, calls ``name(...)`` where ``imported`` is MNIST."""
        names = [n for n in ast.walk(self.tree) if isinstance(n, ast.Name) and n.id == name]
        if imported == "MNIST":
            calls = {id(n.func) for n in ast.walk(self.tree) if isinstance(n, ast.Call)}
            return bool(names) and all(id(n) in calls for n in names)
        uses = [
            n
            for n in ast.walk(self.tree)
            if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == name
        ]
        return bool(uses) and len(names) == len(uses) and all(u.attr == "MNIST" for u in uses)

    def _dotted_column_notes(self) -> None:
        """Ray 1.x named the nested columns of ``results_df`` with dots (``config.lr``);
        Ray 2.x, and dasktune, with slashes (``config/lr``)."""
        for node in ast.walk(self.tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and _RAY1_COLUMN.match(node.value)
                and node.value.rsplit(".", 1)[-1].lower() not in _FILE_SUFFIXES
            ):
                slashed = node.value.replace(".", "/")
                self._note(
                    node.lineno,
                    f"{node.value!r}: Ray 1.x's results_df named nested columns with dots; "
                    f"Ray 2.x and dasktune write {slashed!r} (results_df, dataframe(), "
                    "get_dataframe())",
                )

    def _environment_notes(self) -> None:
        """``os.environ["RAY_..."] = ...``: Ray's settings stay; a note says which dasktune
        reads."""
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Assign):
                keys = [
                    target.slice
                    for target in node.targets
                    if isinstance(target, ast.Subscript)
                    and _dotted(target.value) in (["os", "environ"], ["environ"])
                ]
            elif isinstance(node, ast.Call) and _dotted(node.func) in (
                ["os", "environ", "setdefault"],
                ["os", "putenv"],
            ):
                keys = node.args[:1]
            else:
                continue
            for key in keys:
                if not (isinstance(key, ast.Constant) and isinstance(key.value, str)):
                    continue
                variable = key.value
                if variable in _HONOURED_VARIABLES:
                    self._note(node.lineno, f"{variable}: {_HONOURED_VARIABLES[variable]}")
                elif variable.startswith(("RAY_", "TUNE_")):
                    self._note(
                        node.lineno,
                        f"{variable} is a setting of Ray's that dasktune does not read: "
                        "setting it does nothing here",
                    )

    # -- imports ----------------------------------------------------------------
    def _rewrite_imports(self) -> None:
        rewritten = [
            (
                statement,
                self._rewrite_import(statement)
                if isinstance(statement, ast.Import)
                else self._rewrite_import_from(statement),
            )
            for statement in self.ray_imports
        ]
        for statement, lines in rewritten:
            self._put(statement, lines)
        # The imports the rewritten uses need go where the first module-level ray import was.
        added = [
            line
            for line in self.new_imports
            if not any(line in (lines or ()) for _, lines in rewritten)
        ]
        if not added:
            return
        first = next((s for s in self.ray_imports if s in self.tree.body), None)
        if first is None:  # no module-level ray import to put them in place of
            self._insert_at_top(added)
            return
        line_start = self.text.offset(first.lineno, 0)
        self.text.replace(line_start, line_start, "".join(f"{line}\n" for line in added))

    def _put(self, statement: ast.stmt, lines: list[str] | None) -> None:
        """Replace an import statement by ``lines`` (None: leave it as it is)."""
        if lines is None:
            return
        if not lines:
            self._remove(statement, [])
            return
        start, end = self.text.span(statement)
        self.text.replace(start, end, f"\n{self.text.indent(statement)}".join(lines))

    def _rewrite_import(self, statement: ast.Import) -> list[str] | None:
        kept, lines, changed = [], [], False
        for alias in statement.names:
            name = alias.asname or alias.name.split(".")[0]
            if not (alias.name == "ray" or alias.name.startswith("ray.")):
                kept.append(self.text.segment(alias))
                continue
            if id(alias) in self.dead:
                changed = True
                continue
            if self.kept_ray_uses.get(name):
                kept.append(self.text.segment(alias))  # still needed by what was not ported
                continue
            changed = True
            module = _MODULES.get(alias.name)
            if alias.asname and module is not None and module.aliased:
                lines.append(f"import {module.target} as {alias.asname}")
            elif alias.asname and module is None:
                target, _ = _resolve(alias.name)
                if isinstance(target, _Unportable) and not self._unused(
                    statement, f"import {self.text.segment(alias)}", name
                ):
                    self._problem(statement.lineno, alias.name, target.reason, name)
                    kept.append(self.text.segment(alias))
        if not changed:
            return None
        if kept:
            lines.insert(0, f"import {', '.join(kept)}")
        return lines

    def _rewrite_import_from(self, statement: ast.ImportFrom) -> list[str] | None:
        assert statement.module is not None
        grouped: dict[str, list[str]] = {}
        extra: list[str] = []
        kept: list[str] = []
        for alias in statement.names:
            if id(alias) in self.dead:
                continue
            bound = alias.asname or alias.name
            path = f"{statement.module}.{alias.name}"
            target, _ = _resolve(path)
            spelled = alias.name if not alias.asname else f"{alias.name} as {alias.asname}"
            if alias.name == "*":
                self._problem(
                    statement.lineno,
                    f"from {statement.module} import *",
                    "name what you import, so that it can be ported.",
                )
                return None
            if isinstance(target, _Module):
                if target.aliased:
                    parent, _, last = target.target.rpartition(".")
                    extra.append(
                        f"import {target.target}" + (f" as {bound}" if bound != last else "")
                        if not parent
                        else f"from {parent} import {last}"
                        + (f" as {bound}" if bound != last else "")
                    )
                elif self.kept_ray_uses.get(bound):
                    kept.append(spelled)
                continue  # a namespace: its uses were rewritten
            failing = isinstance(target, _Unportable) or (
                isinstance(target, _Name) and "(" in target.expression
            )
            if failing and self._unused(
                statement, f"from {statement.module} import {spelled}", bound
            ):
                continue
            if isinstance(target, _Name):
                if target.note:
                    self._note(statement.lineno, target.note)
                if "(" in target.expression:
                    self._problem(
                        statement.lineno,
                        path,
                        f"call {self.handle}.{target.expression}() instead.",
                        bound,
                    )
                    kept.append(spelled)
                    continue
                name = target.expression
                grouped.setdefault(target.module, []).append(
                    name if bound == name else f"{name} as {bound}"
                )
            elif isinstance(target, _Literal):
                extra.append(f"{bound} = {target.value!r}  {COMMENT} was {path}")
                if target.caveat:
                    self._problem(statement.lineno, path, target.caveat)
            elif isinstance(target, _Sibling):
                grouped.setdefault(target.module, []).append(spelled)
                self._sibling_note(
                    statement.lineno, f"ray.tune.examples.{target.module}", target.module
                )
            else:
                # A stand-in that raises, with the reason, where the script uses it: a script
                # that uses it only on a path it does not take (`if not MOCK:`) runs.
                self._problem(statement.lineno, path, target.reason, bound)
                self.new_imports.setdefault("from dasktune.porting import unported")
                extra.append(f"{bound} = unported({path!r})  {COMMENT} not in dasktune")
        if len(grouped) == 1 and not extra and not kept:
            module, names = next(iter(grouped.items()))
            if names == [
                a.name if not a.asname else f"{a.name} as {a.asname}" for a in statement.names
            ]:
                self._rename_module(statement, module)  # keeps the statement's own layout
                return None
        lines = [f"from {m} import {', '.join(names)}" for m, names in grouped.items()]
        if kept:
            lines.append(f"from {statement.module} import {', '.join(kept)}")
        return extra + lines

    def _unused(self, statement: ast.stmt, imported: str, name: str) -> bool:
        """Whether the script has no use of ``name`` left (unported); if so, a note says
        that ``imported`` is dropped, which the caller does."""
        uses = [n for n in ast.walk(self.tree) if isinstance(n, ast.Name) and n.id == name]
        if any(id(n) not in self.ported_uses for n in uses):
            return False
        self._note(
            statement.lineno,
            f"{imported} dropped: "
            + (
                f"each use of {name} was ported"
                if uses
                else f"it cannot be ported, and the script never uses {name}"
            ),
        )
        return True

    def _rename_module(self, statement: ast.ImportFrom, module: str) -> None:
        start = self.text.offset(statement.lineno, statement.col_offset)
        match = re.match(r"from\s+([\w.]+)", self.text.source[start:])
        if match is None:  # unusual layout: write the statement anew
            names = ", ".join(self.text.segment(a) for a in statement.names)
            self._put(statement, [f"from {module} import {names}"])
            return
        self.text.replace(start + match.start(1), start + match.end(1), module)

    def _insert_at_top(self, lines: list[str]) -> None:
        """Add imports after the module's docstring and its first imports."""
        body = self.tree.body
        position = 0
        while position < len(body) and (
            isinstance(body[position], (ast.Import, ast.ImportFrom))
            or (
                position == 0
                and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
            )
        ):
            position += 1
        if position:
            end = self.text._starts[_end(body[position - 1])[0]]
        else:
            end = 0
        self.text.replace(end, end, "".join(f"{line}\n" for line in lines))


#: A Ray 1.x column name of ``results_df``: ``config.lr``, ``config.model.width``, or the
#: prefix ``config.`` a script filters columns by (not a file such as ``config.yaml``).
_RAY1_COLUMN = re.compile(r"^config\.(?:[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)?$")
_FILE_SUFFIXES = ("json", "yaml", "yml", "toml", "ini", "py", "cfg", "txt", "csv", "pkl")


def port_source(source: str) -> PortResult:
    """Port the text of a Ray Tune script to dasktune.

    Raises:
        SyntaxError: The text is not valid Python.

    Example:
        >>> print(port_source("from ray import tune\\ntune.run(f)\\n").ported, end="")
        import dasktune as tune
        tune.run(f)
    """
    return _Porter(source).run()


class _Unported:
    """What ``dasktune port`` puts where a script imported a Ray name dasktune lacks."""

    def __init__(self, name: str) -> None:
        self._name = name

    def _refuse(self) -> NotImplementedError:
        target, _ = _resolve(self._name)
        reason = target.reason if isinstance(target, _Unportable) else "dasktune lacks it."
        return NotImplementedError(
            f"{self._name} is not in dasktune, and the script used it: {reason} "
            "(dasktune port left this stand-in where the script imported it.)"
        )

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise self._refuse()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)  # Python's own protocols (copy, pickle, inspect)
        raise self._refuse()

    def __mro_entries__(self, bases: tuple[Any, ...]) -> tuple[type, ...]:
        raise self._refuse()  # a class derived from it

    def __repr__(self) -> str:
        return f"<{self._name}, not ported to dasktune>"


def unported(name: str) -> Any:
    """A stand-in for the Ray name ``name`` that dasktune lacks: using it (calling it,
    reading its attributes, deriving a class from it) raises NotImplementedError with the
    reason and the way out.  ``dasktune port`` writes ``X = unported("ray....X")`` where
    a script imported it, so that a script that uses it only on a path it does not take
    still runs."""
    return _Unported(name)


def problems_text(result: PortResult, path: str) -> Iterator[str]:
    """Lines saying what could not be ported, and the notes, for a person to read."""
    for problem in result.problems:
        yield f"{path}:{problem.line}: cannot port {problem.construct}: {problem.reason}"
    for line, note in result.notes:
        yield f"{path}:{line}: note: {note}"
