"""The getting-started tutorial, timed stage by stage.

Runs the three stages of examples/getting_started.py (one trial; 20 samples
under ASHA; 10 HyperOpt samples) as one process, cluster start included, and
prints per stage: wall time, trials, epochs trained, best accuracy, and

    efficiency = (pure compute of those epochs, measured in this process on one
                  thread) / (wall time x workers)
    busy       = (time the workers spent inside trials, from the trials' own
                  time_total_s) / (wall time x workers)

The training code is the example's own: this script executes the example's
imports, constants, classes and functions, then runs the stages itself.

    python benchmarks/tutorial.py              # dasktune
    python benchmarks/tutorial.py --vs-ray     # the same stages with Ray Tune, if installed
"""

from __future__ import annotations

import argparse
import ast
import os
import statistics
import sys
import time

T0 = time.perf_counter()
EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "examples", "getting_started.py")


def load_example(engine: str) -> dict:
    """The example's definitions (not its stages), with ``tune`` bound to the engine."""
    tree = ast.parse(open(EXAMPLE).read())

    def assigns(*names: str) -> list[ast.stmt]:
        return [node for node in tree.body if isinstance(node, ast.Assign)
                and isinstance(node.targets[0], ast.Name) and node.targets[0].id in names]

    definitions = [node for node in tree.body if isinstance(
        node, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef))]
    namespace: dict = {"__name__": "tutorial_definitions"}
    body = definitions + assigns("EPOCH_SIZE", "TEST_SIZE")
    exec(compile(ast.Module(body=body, type_ignores=[]), EXAMPLE, "exec"), namespace)
    if engine == "ray":
        from ray import tune as ray_tune
        from ray.tune.schedulers import ASHAScheduler
        from ray.tune.search.hyperopt import HyperOptSearch

        namespace.update(tune=ray_tune, ASHAScheduler=ASHAScheduler, HyperOptSearch=HyperOptSearch)
    # The search space is built with the engine's own domains.
    exec(compile(ast.Module(body=assigns("search_space"), type_ignores=[]), EXAMPLE, "exec"),
         namespace)
    return namespace


def epoch_seconds(ns: dict, repeat: int = 30) -> float:
    """Median time of one epoch (train_func + test_func), in this process, one thread."""
    import torch
    from torch.utils.data import DataLoader
    from torchvision import transforms

    torch.set_num_threads(1)
    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
    train = DataLoader(ns["datasets"].MNIST("~/data", train=True, download=True, transform=tf),
                       batch_size=64, shuffle=True)
    test = DataLoader(ns["datasets"].MNIST("~/data", train=False, transform=tf),
                      batch_size=64, shuffle=True)
    model = ns["ConvNet"]()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.5)
    for _ in range(len(train.dataset) // ns["EPOCH_SIZE"] + 2):  # warm the data caches
        ns["train_func"](model, optimizer, train)
        ns["test_func"](model, test)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        ns["train_func"](model, optimizer, train)
        ns["test_func"](model, test)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run_stages(ns: dict, engine: str, storage: str) -> list[dict]:
    tune = ns["tune"]
    run_config = tune.RunConfig(storage_path=storage, verbose=0)
    stages = [
        ("single trial", dict(param_space=ns["search_space"])),
        ("ASHA, 20 samples", dict(param_space=ns["search_space"], tune_config=tune.TuneConfig(
            num_samples=20, scheduler=ns["ASHAScheduler"](metric="mean_accuracy", mode="max")))),
        ("HyperOpt, 10 samples", dict(tune_config=tune.TuneConfig(
            num_samples=10, search_alg=ns["HyperOptSearch"](
                {"lr": ns["hp"].loguniform("lr", -10, -1),
                 "momentum": ns["hp"].uniform("momentum", 0.1, 0.9)},
                metric="mean_accuracy", mode="max")))),
    ]
    rows = []
    for name, kwargs in stages:
        start = time.perf_counter()
        results = tune.Tuner(ns["train_mnist"], run_config=run_config, **kwargs).fit()
        wall = time.perf_counter() - start
        epochs = sum(len(r.metrics_dataframe) for r in results)
        best = max(r.metrics.get("mean_accuracy", 0.0) for r in results)
        # Time the workers spent inside trials (from each trial's first to last report,
        # plus its first epoch), whatever the engine.
        frames = [r.metrics_dataframe for r in results]
        busy = sum(float(df["time_total_s"].iloc[-1]) for df in frames if len(df))
        rows.append(dict(stage=name, wall=wall, trials=len(results), epochs=epochs, best=best,
                         busy=busy))
    return rows


def report(engine: str, rows: list[dict], total: float, epoch_s: float, workers: int) -> None:
    print(f"\n{engine}: whole tutorial as one process (imports and cluster start included): "
          f"{total:.1f} s")
    print(f"{'stage':22s} {'wall s':>7s} {'trials':>6s} {'epochs':>6s} {'best acc':>8s} "
          f"{'efficiency':>10s} {'busy':>5s}")
    for r in rows:
        efficiency = r["epochs"] * epoch_s / (r["wall"] * workers)
        busy = r["busy"] / (r["wall"] * workers)
        print(f"{r['stage']:22s} {r['wall']:7.2f} {r['trials']:6d} {r['epochs']:6d} "
              f"{r['best']:8.3f} {efficiency:10.0%} {busy:5.0%}")
    compute = sum(r["epochs"] for r in rows) * epoch_s
    print(f"pure compute of all epochs: {compute:.1f} s on one thread "
          f"({epoch_s * 1000:.0f} ms per epoch); overall efficiency "
          f"{compute / (total * workers):.0%} on {workers} workers")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--vs-ray", action="store_true")
    parser.add_argument("--storage", default=None)
    args = parser.parse_args()
    import tempfile

    storage = args.storage or tempfile.mkdtemp(prefix="dasktune-tutorial-")
    engines = ["dasktune"] + (["ray"] if args.vs_ray else [])
    totals = {}
    for engine in engines:
        if engine == "ray":
            try:
                import ray  # noqa: F401
            except ImportError:
                print("\nray is not installed: pip install 'ray[tune]' hyperopt to compare")
                break
        start = T0 if engine == "dasktune" else time.perf_counter()
        ns = load_example(engine)
        rows = run_stages(ns, engine, storage)
        totals[engine] = (time.perf_counter() - start, rows)
    workers = os.cpu_count() or 1
    epoch_s = epoch_seconds(load_example("dasktune"))  # after the runs: not part of their time
    for engine, (total, rows) in totals.items():
        report(engine, rows, total, epoch_s, workers)
    if "ray" in totals:
        ours, theirs = totals["dasktune"], totals["ray"]
        for a, b in zip(ours[1], theirs[1]):
            print(f"Ray Tune / dasktune, {a['stage']}: {b['wall'] / a['wall']:.1f}x")
        print(f"Ray Tune / dasktune, whole tutorial: {theirs[0] / ours[0]:.1f}x")


if __name__ == "__main__":
    sys.exit(main())
