"""Sample efficiency on the Branin function: HyperOpt's TPE, Optuna's TPE and random search.

Each searcher gets the same budget of sequential evaluations (concurrency 1:
suggest, evaluate, report) for every seed, in this process; no cluster is
involved.  Branin is minimised over x1 in [-5, 10], x2 in [0, 15]; its global
minimum is 0.397887.  Prints the best value found per seed and the median::

    python benchmarks/branin.py --evals 40 --seeds 0 1 2 3 4
    python benchmarks/branin.py --hyperopt-initial-points 20 10
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from dasktune.search.sample import uniform  # noqa: E402 - after the checkout is on sys.path
from dasktune.search.searcher import Searcher  # noqa: E402 - likewise

BRANIN_MIN = 0.397887
SPACE = {"x1": uniform(-5.0, 10.0), "x2": uniform(0.0, 15.0)}


def branin(x1: float, x2: float) -> float:
    """The Branin-Hoo function with its usual constants."""
    b, c, t = 5.1 / (4 * math.pi**2), 5 / math.pi, 1 / (8 * math.pi)
    return (x2 - b * x1**2 + c * x1 - 6) ** 2 + 10 * (1 - t) * math.cos(x1) + 10


def best_of_run(searcher: Searcher, evals: int, seed: int) -> float:
    """Run ``evals`` sequential trials and return the lowest Branin value found."""
    searcher.set_search_properties("value", "min", dict(SPACE), num_samples=evals, seed=seed)
    best = math.inf
    for i in range(evals):
        trial_id = f"t{i}"
        config = searcher.suggest(trial_id)
        if not isinstance(config, dict):
            raise RuntimeError(
                f"{type(searcher).__name__}.suggest returned {config!r} at trial {i}"
            )
        value = branin(config["x1"], config["x2"])
        searcher.on_trial_complete(trial_id, {"value": value})
        best = min(best, value)
    return best


def searchers(initial_points: list[int]) -> dict[str, Callable[[int], Searcher]]:
    """Factories (seed -> searcher) of the searchers whose packages are installed."""
    made: dict[str, Callable[[int], Searcher]] = {}
    try:
        from dasktune.search.hyperopt import HyperOptSearch
    except ImportError as error:
        print(f"skipping HyperOptSearch: {error}")
    else:
        for n in initial_points:
            made[f"HyperOptSearch(n_initial_points={n})"] = lambda seed, n=n: HyperOptSearch(
                n_initial_points=n, random_state_seed=seed
            )
    try:
        from dasktune.search.optuna import OptunaSearch
    except ImportError as error:
        print(f"skipping OptunaSearch: {error}")
    else:
        made["OptunaSearch(TPESampler)"] = lambda seed: OptunaSearch(seed=seed)
    made["random (BasicVariantGenerator)"] = _random_search
    return made


def _random_search(seed: int) -> Searcher:
    from dasktune.search.variant_generator import BasicVariantGenerator

    return BasicVariantGenerator(random_state=seed)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--evals", type=int, default=40, help="evaluations per run (default 40)")
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="seeds (default 0-4)"
    )
    parser.add_argument(
        "--hyperopt-initial-points",
        type=int,
        nargs="+",
        default=[10, 20],
        help="n_initial_points of HyperOptSearch; several values run several variants "
        "(default: 10 and 20)",
    )
    args = parser.parse_args(argv)
    if args.evals < 1:
        parser.error(f"--evals is {args.evals}, but it must be at least 1")

    print(
        f"Branin, {args.evals} sequential evaluations, seeds {args.seeds}; "
        f"global minimum {BRANIN_MIN}"
    )
    summary: dict[str, Any] = {}
    for name, factory in searchers(args.hyperopt_initial_points).items():
        start = time.perf_counter()
        bests = [best_of_run(factory(seed), args.evals, seed) for seed in args.seeds]
        elapsed = time.perf_counter() - start
        median = statistics.median(bests)
        summary[name] = {"bests": bests, "median": median}
        shown = "  ".join(f"{b:.4f}" for b in bests)
        print(f"{name:40s} best per seed: {shown}   median {median:.4f}   ({elapsed:.1f} s)")
    return summary


if __name__ == "__main__":
    main()
