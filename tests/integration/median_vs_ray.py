"""MedianStoppingRule under ``max_concurrent_trials``: experiments run under Ray Tune and dasktune.

Each scenario is a grid over fixed learning curves (one config per curve, reported at
``training_iteration`` 1, 2, ...), run with ``MedianStoppingRule(time_attr="training_iteration")``
and ``TuneConfig(max_concurrent_trials=...)``. An outcome says, for each trial, the iteration it
ended at and the iterations after which it paused (to resume later). ``RAY_OUTCOME`` holds Ray
Tune 2.60's; ``test_schedulers.py`` runs the same scenarios under dasktune on a real cluster and
expects it, and ``tests/schedulers/test_median_stopping_rule.py`` replays them in the simulator.

Regenerate the expectations with a Python that has Ray Tune (it runs each scenario under Ray,
prints the outcomes, and says whether they differ from the recorded ones)::

    /work/ray-venv/bin/python tests/integration/median_vs_ray.py

``test_schedulers.py`` checks the one-at-a-time scenarios so where Ray Tune is installed beside
dasktune, and is skipped otherwise.

Under a concurrency limit Ray never creates a trial that would have to wait: a trial short of
samples has no trial to yield to and continues, and a soft-stopped (paused) trial still counts
against the limit, so it resumes before any new trial starts. Where two trials run at once, Ray
has one race: a trial whose actor is still starting is PENDING, and a trial short of samples
yields to it. In 6 of 22 runs of "two_at_a_time" (more often with both cores busy) its first
two trials so yielded to each other in turn, at 2 to 7 (a paused trial resumes as PENDING
too); the trials ended as recorded in all but one run, where "rise" ended at 4 (that run's
files were not kept). The recorded outcome is Ray's when trials start before others report,
as dasktune's do; for scenarios with more than one trial at a time only the ends are compared
(:func:`comparable`), and the curves are made so that the order in which concurrent trials
report does not change them (see the scenario).
"""

from __future__ import annotations

import importlib
import os
import sys
import tempfile
import time
from typing import Any

#: Metric values at iterations 1, 2, ... ("score", higher is better).
CURVES: dict[str, list[float]] = {
    "rise": [1, 2, 3, 4, 5, 6, 7, 8],
    "flat": [3, 3, 3, 3, 3, 3, 3, 3],
    "late": [0, 0, 1, 2, 6, 9, 9, 9],
    "fade": [6, 5, 4, 3, 2, 1, 0, 0],
    "step": [2, 2, 2, 5, 5, 5, 5, 5],
    "poor": [0, 1, 1, 1, 1, 1, 1, 1],
    "twin": [1, 2, 3, 4, 5, 6, 7, 8],  # "rise" again
    "shelf": [2.6, 2.6, 2.6, 5, 5, 5, 5, 5],
}

#: name -> (curves in grid order, max_concurrent_trials, MedianStoppingRule arguments).
SCENARIOS: dict[str, tuple[list[str], int, dict[str, Any]]] = {
    "one_at_a_time": (
        ["rise", "flat", "late", "fade", "step", "poor"],
        1,
        {"grace_period": 2, "min_samples_required": 1},
    ),
    "one_at_a_time_soft": (
        ["rise", "flat", "late", "fade", "step", "poor"],
        1,
        {"grace_period": 2, "min_samples_required": 1, "hard_stop": False},
    ),
    # "rise" and "twin" run together first and never stop each other: each one's best at t is
    # its value at t, no lower than the other's mean up to t. Once they have finished, every
    # trial has both as samples, so never too few, and the other curves lie far enough from
    # their mean that which other trials have reached t does not change a decision (the
    # simulator checks this with trials running up to 50% faster or slower than others).
    "two_at_a_time": (
        ["rise", "twin", "fade", "flat", "late", "shelf"],
        2,
        {"grace_period": 2, "min_samples_required": 1},
    ),
}

#: Ray Tune 2.60's outcome: scenario -> curve -> (the training_iteration the trial ended at,
#: the iterations after which it paused and later resumed). Printed by this script under
#: /work/ray-venv/bin/python (Ray 2.60.0, 4 CPUs) on 2026-11-29: the one-at-a-time scenarios
#: the same in all seven runs of this script, "two_at_a_time" in most (see the module docstring).
RAY_OUTCOME: dict[str, dict[str, tuple[int, list[int]]]] = {
    "one_at_a_time": {
        "rise": (8, []),
        "flat": (5, []),
        "late": (2, []),
        "fade": (8, []),
        "step": (2, []),
        "poor": (2, []),
    },
    "one_at_a_time_soft": {
        "rise": (8, []),
        "flat": (8, [5]),
        "late": (8, [2]),
        "fade": (8, []),
        "step": (8, [2]),
        "poor": (8, [2]),
    },
    "two_at_a_time": {
        "rise": (8, []),
        "twin": (8, []),
        "fade": (8, []),
        "flat": (5, []),
        "late": (2, []),
        "shelf": (3, []),
    },
}

SECONDS_PER_ITERATION = 0.2


def make_trainable(engine: str, seconds: float = SECONDS_PER_ITERATION):
    """A function trainable reporting its curve, checkpointing every iteration.

    ``engine`` is ``"ray.tune"`` or ``"dasktune"``; both have ``report``, ``get_checkpoint``
    and ``Checkpoint`` as Ray Tune defines them. Each iteration sleeps ``seconds``.
    """
    curves = dict(CURVES)

    def median_curve(config: dict[str, Any]) -> None:
        tune = importlib.import_module(engine)
        curve = curves[config["curve"]]
        done = 0
        checkpoint = tune.get_checkpoint()
        if checkpoint is not None:
            with open(os.path.join(checkpoint.path, "done")) as f:
                done = int(f.read())
        for value in curve[done:]:
            done += 1
            time.sleep(seconds)
            with tempfile.TemporaryDirectory() as d:
                with open(os.path.join(d, "done"), "w") as f:
                    f.write(str(done))
                tune.report({"score": value}, checkpoint=tune.Checkpoint.from_directory(d))

    return median_curve


Outcome = dict[str, tuple[int, list[int]]]


def ray_outcomes(storage: str, names: list[str] | None = None) -> dict[str, Outcome]:
    """The scenarios' outcomes under Ray Tune (all by default), in a Ray started here (4 CPUs)."""
    import ray

    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    try:
        return {name: run_under_ray(name, storage) for name in names or SCENARIOS}
    finally:
        ray.shutdown()


def differences(outcomes: dict[str, Outcome]) -> list[str]:
    """The scenarios whose outcome differs from RAY_OUTCOME where timing cannot change it."""
    return [
        name
        for name, outcome in outcomes.items()
        if comparable(name, outcome) != comparable(name, RAY_OUTCOME[name])
    ]


def run_under_ray(name: str, storage: str) -> Outcome:
    """Run one scenario under Ray Tune (``ray.init`` must have been called)."""
    from ray import tune
    from ray.tune.schedulers import MedianStoppingRule

    curves, limit, rule = SCENARIOS[name]
    grid = tune.Tuner(
        make_trainable("ray.tune"),
        param_space={"curve": tune.grid_search(curves)},
        tune_config=tune.TuneConfig(
            metric="score",
            mode="max",
            max_concurrent_trials=limit,
            scheduler=MedianStoppingRule(time_attr="training_iteration", **rule),
        ),
        run_config=tune.RunConfig(name=name, storage_path=storage, verbose=0),
    ).fit()
    return outcome_of(grid)


def outcome_of(grid: Any) -> Outcome:
    """Curve -> (last training_iteration, iterations after which the trial paused).

    A run that resumes from the checkpoint of iteration k reports k + 1 with
    ``iterations_since_restore`` 1. (Ray's progress file sometimes lacks the row of the
    result that paused a trial, so the rows before a resume are not used.)
    """
    outcome = {}
    for result in grid:
        rows = result.metrics_dataframe
        resumed = rows[rows["iterations_since_restore"] == 1]["training_iteration"]
        paused = [int(k) - 1 for k in resumed if k > 1]
        outcome[result.config["curve"]] = (int(rows["training_iteration"].max()), paused)
    return outcome


def comparable(name: str, outcome: Outcome) -> dict[str, Any]:
    """What of an outcome does not depend on timing: the pauses only one trial at a time."""
    if SCENARIOS[name][1] == 1:
        return outcome
    return {curve: end for curve, (end, _) in outcome.items()}


def main() -> int:
    with tempfile.TemporaryDirectory() as storage:
        outcomes = ray_outcomes(storage)
    print("RAY_OUTCOME = {")
    for name, outcome in outcomes.items():
        print(f"    {name!r}: {outcome!r},")
    print("}")
    differ = differences(outcomes)
    print(
        f"DIFFERS from the recorded RAY_OUTCOME: {differ}"
        if differ
        else "same as recorded (where timing cannot change it)"
    )
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
