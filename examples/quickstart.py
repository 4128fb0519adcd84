"""Quickstart: tune a plain function of its config with ASHA early stopping.

Runs on an embedded local Dask cluster (one worker process per core); no
set-up needed.  Like Ray Tune's tutorial it has no ``__main__`` guard.

    python examples/quickstart.py            # 40 trials
    python examples/quickstart.py --smoke    # 8 trials, for the test suite
"""

import math
import sys

import dasktune as tune
from dasktune.schedulers import ASHAScheduler

SMOKE = "--smoke" in sys.argv


def objective(config):
    """A noisy learning curve whose plateau depends on lr and width."""
    plateau = 1.0 - abs(math.log10(config["lr"]) + 2.5) / 4 - 0.05 * abs(config["width"] - 64) / 64
    for step in range(1, 21):
        accuracy = plateau * (1 - math.exp(-step * config["lr"] * 40))
        tune.report({"mean_accuracy": accuracy})


tuner = tune.Tuner(
    objective,
    param_space={
        "lr": tune.loguniform(1e-4, 1e-1),
        "width": tune.choice([16, 32, 64, 128]),
    },
    tune_config=tune.TuneConfig(
        num_samples=8 if SMOKE else 40,
        scheduler=ASHAScheduler(metric="mean_accuracy", mode="max", max_t=20, grace_period=2),
        seed=0,
    ),
    run_config=tune.RunConfig(name="quickstart"),
)
results = tuner.fit()

best = results.get_best_result(metric="mean_accuracy", mode="max")
print(f"Best config: {best.config}")
print(
    f"Best mean_accuracy: {best.metrics['mean_accuracy']:.3f} "
    f"after {best.metrics['training_iteration']} iterations"
)
print(
    f"Trials run: {len(results)}, iterations trained: "
    f"{sum(len(r.metrics_dataframe) for r in results)} "
    f"(of {len(results) * 20} without early stopping)"
)
