"""Tune a scikit-learn HistGradientBoostingClassifier with ASHA early stopping.

The data is scikit-learn's handwritten digits (``load_digits``: 1,797 8x8
images, shipped with scikit-learn, no download).  A quarter of it is set aside
as a test set that no trial sees; the rest goes to the trials once, through
``tune.with_parameters``, instead of being copied into every trial.

Each trial grows its boosted ensemble in steps: with ``warm_start=True`` a
larger ``max_iter`` adds trees to the fitted model instead of starting over.
After every step the trial reports its accuracy on a validation split, so ASHA
can stop the poor configurations after a few trees and give the time to the
promising ones.  At the end the best configuration is refitted on all the
training data and scored on the held-out test set.

    python examples/sklearn_example.py           # 24 trials
    python examples/sklearn_example.py --smoke   # 6 small trials (DASKTUNE_SMOKE=1 too)
"""

import os
import sys

from sklearn.datasets import load_digits
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.model_selection import train_test_split

import dasktune as tune
from dasktune.schedulers import ASHAScheduler

SMOKE = "--smoke" in sys.argv or os.environ.get("DASKTUNE_SMOKE") == "1"

TREES_PER_STEP = 10  # boosting iterations added between two reports
STEPS = 4 if SMOKE else 15  # reports per trial: at most STEPS * TREES_PER_STEP iterations


def make_model(config, max_iter, warm_start=False):
    return HistGradientBoostingClassifier(
        learning_rate=config["learning_rate"],
        max_leaf_nodes=config["max_leaf_nodes"],
        min_samples_leaf=config["min_samples_leaf"],
        l2_regularization=config["l2_regularization"],
        max_iter=max_iter,
        warm_start=warm_start,
        early_stopping=False,  # ASHA decides when to stop
        random_state=0,
    )


def train_hgb(config, X, y):
    """Add TREES_PER_STEP boosting iterations at a time; report validation accuracy after each."""
    X_fit, X_val, y_fit, y_val = train_test_split(X, y, test_size=0.25, stratify=y, random_state=0)
    model = make_model(config, max_iter=TREES_PER_STEP, warm_start=True)
    for step in range(1, STEPS + 1):
        model.set_params(max_iter=step * TREES_PER_STEP)
        model.fit(X_fit, y_fit)  # warm start: only the new iterations are fitted
        tune.report({"accuracy": model.score(X_val, y_val), "n_iter": model.n_iter_})


X, y = load_digits(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.25, stratify=y, random_state=0
)

tuner = tune.Tuner(
    tune.with_parameters(train_hgb, X=X_train, y=y_train),
    param_space={
        "learning_rate": tune.loguniform(0.01, 0.5),
        "max_leaf_nodes": tune.choice([7, 15, 31, 63]),
        "min_samples_leaf": tune.choice([5, 10, 20, 40]),
        "l2_regularization": tune.loguniform(1e-3, 10.0),
    },
    tune_config=tune.TuneConfig(
        num_samples=6 if SMOKE else 24,
        scheduler=ASHAScheduler(
            metric="accuracy", mode="max", max_t=STEPS, grace_period=1, reduction_factor=2
        ),
        seed=0,
    ),
)
results = tuner.fit()

best = results.get_best_result(metric="accuracy", mode="max")
print(f"Best config: {best.config}")
print(
    f"Best validation accuracy: {best.metrics['accuracy']:.3f} "
    f"with {best.metrics['n_iter']} boosting iterations"
)
print(
    f"Boosting iterations fitted: {sum(r.metrics.get('n_iter', 0) for r in results)} "
    f"(of {len(results) * STEPS * TREES_PER_STEP} without early stopping)"
)

final = make_model(best.config, max_iter=best.metrics["n_iter"]).fit(X_train, y_train)
print(
    f"Test accuracy of the best config, refitted on all training data: "
    f"{final.score(X_test, y_test):.3f}"
)
