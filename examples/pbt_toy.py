"""Population Based Training on a toy problem whose best learning rate changes.

A "model" climbs towards an accuracy of 1.0.  How much one step gains depends
on how close the learning rate is to the best rate *for that stage of
training*, and that best rate falls as training goes on (high early, low
late).  A fixed learning rate is only right for a while, so random search over
fixed rates cannot do well; PBT copies the best trials and perturbs their rate
as it goes, following the moving target.

    python examples/pbt_toy.py            # compare PBT with random search
    python examples/pbt_toy.py --smoke    # a smaller run

Both searches get the same budget: the same number of trials, each trained to
the same step. PBT runs synchronously here (``synch=True``): every trial pauses at
each perturbation step until all have reached it, and then the bottom quarter copy
the top quarter's checkpoints and perturb their rates. Ray Tune's default, and
dasktune's, is asynchronous PBT, where each trial decides when it gets there; it
uses the workers without waiting, but what it copies depends on which trials
happen to be ahead, so its result varies from run to run. Synchronous, this script
gives the same result every time.
"""

import json
import math
import os
import sys
import tempfile

import dasktune as tune
from dasktune.schedulers import PopulationBasedTraining

SMOKE = "--smoke" in sys.argv
POPULATION = 8
STEPS = 24 if SMOKE else 40


def best_lr(step):
    """The learning rate that helps most at this step: 0.1 falling to 0.0001."""
    return 0.1 * 10 ** (-3 * step / STEPS)


def train(config):
    accuracy, step = 0.0, 0
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with open(os.path.join(checkpoint.path, "state.json")) as f:
            state = json.load(f)
        accuracy, step = state["accuracy"], state["step"]
    while step < STEPS:
        # The gain falls off fast with the distance, in decades, from today's best rate.
        distance = math.log10(config["lr"]) - math.log10(best_lr(step))
        accuracy += (1 - accuracy) * 0.1 * math.exp(-((distance / 0.5) ** 2))
        step += 1
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "state.json"), "w") as f:
                json.dump({"accuracy": accuracy, "step": step}, f)
            tune.report(
                {"accuracy": accuracy, "lr": config["lr"]},
                checkpoint=tune.Checkpoint.from_directory(d),
            )


space = {"lr": tune.loguniform(1e-4, 1e-1)}

random_search = tune.Tuner(
    train,
    param_space=space,
    tune_config=tune.TuneConfig(metric="accuracy", mode="max", num_samples=POPULATION, seed=0),
    run_config=tune.RunConfig(name="pbt_toy_random", verbose=0),
).fit()

pbt = tune.Tuner(
    train,
    param_space=space,
    tune_config=tune.TuneConfig(
        metric="accuracy",
        mode="max",
        num_samples=POPULATION,
        seed=0,
        scheduler=PopulationBasedTraining(
            time_attr="training_iteration",
            perturbation_interval=2,
            hyperparam_mutations={"lr": tune.loguniform(1e-4, 1e-1)},
            perturbation_factors=(2.0, 0.5),
            seed=0,
            synch=True,
        ),
    ),
    run_config=tune.RunConfig(name="pbt_toy_pbt", verbose=0),
).fit()

random_best = random_search.get_best_result()
pbt_best = pbt.get_best_result()
print(
    f"random search: best accuracy {random_best.metrics['accuracy']:.4f} "
    f"(lr fixed at {random_best.config['lr']:.2g})"
)
print(
    f"PBT:           best accuracy {pbt_best.metrics['accuracy']:.4f} "
    f"(lr at the end {pbt_best.metrics['lr']:.2g})"
)
iterations = [sum(len(r.metrics_dataframe) for r in grid) for grid in (random_search, pbt)]
print(f"iterations trained: random search {iterations[0]}, PBT {iterations[1]}")
changes = os.path.join(pbt_best.path, "config_changes.jsonl")
if os.path.exists(changes):
    with open(changes) as f:
        print(f"the best PBT trial changed its config {len(f.readlines())} times (see {changes})")
