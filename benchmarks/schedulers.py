"""Trial schedulers at equal budget on synthetic learning curves with late bloomers.

Each seed draws a pool of configs whose learning curves follow
``final * (1 - exp(-t / tau)) + noise`` (noise sd 0.01).  Two families:

* ``late-bloomers`` (the default): three quarters are fast starters (``tau`` in
  [0.7, 3], ``final`` in [0.55, 0.82]), a quarter are late bloomers (``tau`` in
  [4, 10], ``final`` in [0.78, 0.97]) that trail at every rung below ``max_t``
  and win at ``max_t``: early ranks mislead;
* ``mixed``: ``final`` in [0.5, 0.95] and ``tau`` log-uniform in [0.5, 8],
  independent: some late bloomers win, but early ranks mostly hold.

Every scheduler gets the same
pool, in the same order, and the same budget of training iterations, run by
:class:`dasktune.testing.Simulator` (the real coordinator on a fake clock, no
Dask) with ``--workers`` concurrent trials, each config at its own speed.  When
the budget is spent the experiment winds down as the loop does: each other
running trial stops at its next report, so with several workers a run may use
a few iterations more than the budget.  Prints, per
scheduler and worker count, the mean over seeds (and standard deviation) of the
best score reached, the iterations used, the trials started and the trials
trained to ``max_t``::

    python benchmarks/schedulers.py
    python benchmarks/schedulers.py --family mixed --workers 1 4 --seeds 10 --budget 540
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from dasktune.schedulers import (  # noqa: E402 - after the checkout is on sys.path
    AsyncHyperBandScheduler,
    FIFOScheduler,
    HyperBandScheduler,
    MedianStoppingRule,
    TrialScheduler,
)
from dasktune.testing import Outcome, Simulator, curve_step  # noqa: E402 - likewise

LATE_BLOOMER_SHARE = 0.25


def curve_pool(seed: int, size: int, max_t: int, family: str) -> tuple[np.ndarray, np.ndarray]:
    """``size`` seeded learning curves of ``max_t`` steps and each config's seconds per step."""
    rng = np.random.default_rng(seed)
    if family == "late-bloomers":
        late = rng.random(size) < LATE_BLOOMER_SHARE
        tau = np.where(late, rng.uniform(4.0, 10.0, size), rng.uniform(0.7, 3.0, size))
        final = np.where(late, rng.uniform(0.78, 0.97, size), rng.uniform(0.55, 0.82, size))
    else:
        final = rng.uniform(0.5, 0.95, size)
        tau = np.exp(rng.uniform(math.log(0.5), math.log(8.0), size))
    t = np.arange(1, max_t + 1)
    curves = final[:, None] * (1 - np.exp(-t[None, :] / tau[:, None]))
    curves += rng.normal(0.0, 0.01, curves.shape)
    return curves, rng.uniform(0.5, 1.5, size)


def schedulers(max_t: int, rf: int) -> dict[str, Callable[[], TrialScheduler]]:
    common = {"metric": "score", "mode": "max"}
    return {
        "FIFO": FIFOScheduler,
        "ASHA stopping": lambda: AsyncHyperBandScheduler(
            max_t=max_t, grace_period=1, reduction_factor=rf, **common
        ),
        "ASHA promotion": lambda: AsyncHyperBandScheduler(
            max_t=max_t,
            grace_period=1,
            reduction_factor=rf,
            mode_of_operation="promotion",
            **common,
        ),
        "HyperBand": lambda: HyperBandScheduler(max_t=max_t, reduction_factor=rf, **common),
        # Ray's defaults but for the time unit; with min_time_slice=inf no trial yields,
        # as under max_concurrent_trials=1 (see MedianStoppingRule's docstring).
        "Median stopping": lambda: MedianStoppingRule(
            "training_iteration", grace_period=3, min_time_slice=math.inf, **common
        ),
        # The same rule yielding to waiting trials (min_time_slice=0, Ray's default).
        "Median, yielding": lambda: MedianStoppingRule(
            "training_iteration", grace_period=3, **common
        ),
    }


def simulate(
    scheduler: TrialScheduler, curves: np.ndarray, speeds: np.ndarray, workers: int, budget: int
) -> Outcome:
    """One experiment: trial ``i`` reports ``curves[i][k - 1]`` every ``speeds[i]`` seconds."""
    configs, step, length = curve_step(curves)
    return Simulator(
        scheduler,
        configs,
        step,
        length,
        concurrency=workers,
        budget=budget,
        speed=lambda config: float(speeds[config["curve"]]),
    ).run()


def summary(values: list[float]) -> str:
    mean = statistics.fmean(values)
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:7.4f} ± {sd:.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", choices=["late-bloomers", "mixed"], default="late-bloomers")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--seeds", type=int, default=10, help="seeds 0 .. N-1")
    parser.add_argument("--budget", type=int, default=540, help="training iterations per run")
    parser.add_argument("--max-t", type=int, default=27)
    parser.add_argument("--reduction-factor", type=int, default=3)
    parser.add_argument("--pool", type=int, default=1000, help="configs available per seed")
    args = parser.parse_args()

    pools = [curve_pool(seed, args.pool, args.max_t, args.family) for seed in range(args.seeds)]
    first = np.array([curves[: args.budget // args.max_t, -1].max() for curves, _ in pools])
    oracle = np.array([curves[:, -1].max() for curves, _ in pools])
    print(
        f"family {args.family}: {args.seeds} seeds, budget {args.budget} iterations, "
        f"max_t {args.max_t}, reduction factor {args.reduction_factor}, pool {args.pool} configs"
    )
    print(
        f"reference: best final score of the first {args.budget // args.max_t} configs "
        f"{first.mean():.4f}; of the whole pool {oracle.mean():.4f}"
    )
    header = f"{'scheduler':<18} {'workers':>7}  {'best score':>17}  {'iterations':>10}  "
    header += f"{'trials':>7}  {'to max_t':>8}  {'seconds':>7}"
    print(header)
    print("-" * len(header))
    for workers in args.workers:
        for name, make in schedulers(args.max_t, args.reduction_factor).items():
            started = time.perf_counter()
            outcomes = [
                simulate(make(), curves, speeds, workers, args.budget) for curves, speeds in pools
            ]
            elapsed = time.perf_counter() - started
            full = [sum(r.iteration == args.max_t for r in o.reports) for o in outcomes]
            print(
                f"{name:<18} {workers:>7}  {summary([o.best() for o in outcomes]):>17}  "
                f"{statistics.fmean(o.iterations for o in outcomes):>10.1f}  "
                f"{statistics.fmean(len(o.trials) for o in outcomes):>7.1f}  "
                f"{statistics.fmean(full):>8.1f}  {elapsed:>7.2f}"
            )
        print()


if __name__ == "__main__":
    main()
