"""The getting-started tutorial, timed stage by stage.

Runs the three stages of examples/getting_started.py (one trial; 20 samples
under ASHA; 10 HyperOpt samples) as one process, cluster start included, and
prints per stage: wall time, trials, epochs trained, best accuracy, and

    cost       = (wall time x workers) / (pure compute of those epochs, measured
                  in this process on one thread, in blocks of ten epochs after each
                  stage): 1.0 is every core computing epochs all the time
    efficiency = 1 / cost
    busy       = (time the workers spent inside trials, from the trials' own
                  time_total_s) / (wall time x workers)

and where the rest went: the workers' time inside trials that was not epochs
(data loaders, checkpoints, waiting for decisions), and the worker time outside
trials (cluster start, the gaps between trials, the tail of each stage).  It also
replays the trials' own durations, in the order they started, on the workers with
nothing between them: the cost that remains there (a lone trial on two workers, a
stage's tail) belongs to the workload, and the stages' wall against it to the engine.

Two variants of the training code:

* ``as-written``: Ray Tune's tutorial exactly as Ray users write it, imports
  changed only: ``from torchvision import datasets``, so every epoch runs
  torchvision's per-image PIL transforms. MNIST cannot be downloaded here, so the
  run gets a home directory of its own whose ``~/data/MNIST/raw`` holds the
  5,000-image subset that ``dasktune.datasets`` falls back to.
* ``example``: the project's examples/getting_started.py, whose
  ``dasktune.datasets`` keeps the transformed images per worker.

The training code is the example's own: this script executes the example's
imports, constants, classes and functions, then runs the stages itself.

    python benchmarks/tutorial.py                        # both variants, dasktune
    python benchmarks/tutorial.py --variant as-written   # one of them
    python benchmarks/tutorial.py --vs-ray               # the same stages with Ray Tune too
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


def load_example(engine: str, variant: str = "example") -> dict:
    """The example's definitions (not its stages), with ``tune`` bound to the engine;
    ``as-written`` imports torchvision's ``datasets`` as Ray's tutorial does."""
    tree = ast.parse(open(EXAMPLE).read())
    if variant == "as-written":
        for node in tree.body:
            if (
                isinstance(node, ast.ImportFrom)
                and node.module == "dasktune"
                and [a.name for a in node.names] == ["datasets"]
            ):
                node.module = "torchvision"

    def assigns(*names: str) -> list[ast.stmt]:
        return [
            node
            for node in tree.body
            if isinstance(node, ast.Assign)
            and isinstance(node.targets[0], ast.Name)
            and node.targets[0].id in names
        ]

    definitions = [
        node
        for node in tree.body
        if isinstance(node, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef))
    ]
    namespace: dict = {"__name__": "tutorial_definitions"}
    body = definitions + assigns("EPOCH_SIZE", "TEST_SIZE")
    exec(compile(ast.Module(body=body, type_ignores=[]), EXAMPLE, "exec"), namespace)
    if engine == "ray":
        from ray import tune as ray_tune
        from ray.tune.schedulers import ASHAScheduler
        from ray.tune.search.hyperopt import HyperOptSearch

        namespace.update(tune=ray_tune, ASHAScheduler=ASHAScheduler, HyperOptSearch=HyperOptSearch)
    # The search space is built with the engine's own domains.
    exec(
        compile(ast.Module(body=assigns("search_space"), type_ignores=[]), EXAMPLE, "exec"),
        namespace,
    )
    return namespace


class Baseline:
    """The pure compute: one epoch (train_func + test_func) in this process, on one
    thread, timed in blocks between the stages. The machine's speed drifts from minute to
    minute (see BENCHMARKS.md); blocks spread over the run sample the speed of the
    minutes the stages ran in, not only of the minute after them."""

    def __init__(self, ns: dict) -> None:
        self.ns = ns
        self.times: list[float] = []
        self.blocks: list[float] = []
        self.elapsed = 0.0  # seconds spent here: not part of the tutorial's own time
        self._state: tuple | None = None

    def _setup(self) -> tuple:
        import torch
        from torch.utils.data import DataLoader
        from torchvision import transforms

        ns = self.ns
        torch.set_num_threads(1)
        tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
        train = DataLoader(
            ns["datasets"].MNIST("~/data", train=True, download=True, transform=tf),
            batch_size=64,
            shuffle=True,
        )
        test = DataLoader(
            ns["datasets"].MNIST("~/data", train=False, transform=tf), batch_size=64, shuffle=True
        )
        model = ns["ConvNet"]()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.5)
        train_func, test_func = ns.get("untimed", (ns["train_func"], ns["test_func"]))
        for _ in range(len(train.dataset) // ns["EPOCH_SIZE"] + 2):  # warm the data caches
            train_func(model, optimizer, train)
            test_func(model, test)
        return train_func, test_func, model, optimizer, train, test

    def measure(self, repeat: int = 10) -> None:
        """Time ``repeat`` epochs now."""
        start = time.perf_counter()
        if self._state is None:
            self._state = self._setup()
        train_func, test_func, model, optimizer, train, test = self._state
        block = []
        for _ in range(repeat):
            begin = time.perf_counter()
            train_func(model, optimizer, train)
            test_func(model, test)
            block.append(time.perf_counter() - begin)
        self.times += block
        self.blocks.append(statistics.median(block))
        self.elapsed += time.perf_counter() - start

    @property
    def epoch_s(self) -> float:
        """The median epoch over all blocks."""
        return statistics.median(self.times)


def timed(fn, path: str):
    """``fn``, logging how long each call took to ``path`` (on whichever process runs it)."""

    def wrapper(*args, **kwargs):
        start, cpu = time.perf_counter(), time.thread_time()
        try:
            return fn(*args, **kwargs)
        finally:
            with open(path, "a") as f:
                f.write(f"{time.perf_counter() - start} {time.thread_time() - cpu}\n")

    return wrapper


def time_epochs(ns: dict, path: str) -> None:
    """Have the trials log how long each train_func and test_func call took, to ``path``:
    the epochs' own time inside the trials, whatever else ran on the machine then."""
    train, test = ns.setdefault("untimed", (ns["train_func"], ns["test_func"]))
    ns["train_func"], ns["test_func"] = timed(train, path), timed(test, path)


def logged_seconds(path: str) -> tuple[float, float]:
    """The wall and CPU seconds that :func:`timed` logged to ``path``."""
    try:
        with open(path) as f:
            pairs = [line.split() for line in f if line.strip()]
    except FileNotFoundError:
        return 0.0, 0.0
    return sum(float(w) for w, _ in pairs), sum(float(c) for _, c in pairs)


def packed_wall(durations: list[float], workers: int) -> float:
    """The wall time of trials lasting ``durations`` (in the order they were started) on
    ``workers`` workers with nothing between them: each starts as soon as a worker is
    free. What a stage would take if the engine cost nothing and made the same decisions;
    what it cannot remove (one trial on two workers, the tail of a stage) stays in it."""
    import heapq

    free = [0.0] * workers
    for duration in durations:
        heapq.heappush(free, heapq.heappop(free) + duration)
    return max(free)


def run_stages(ns: dict, engine: str, storage: str, baseline: Baseline) -> list[dict]:
    import tempfile

    tune = ns["tune"]
    run_config = tune.RunConfig(storage_path=storage, verbose=0)
    ns["datasets"].MNIST("~/data", train=True, download=True)  # as the tutorial does first
    logs = tempfile.mkdtemp(prefix="dasktune-tutorial-epochs-")
    stages = [
        ("single trial", dict(param_space=ns["search_space"])),
        (
            "ASHA, 20 samples",
            dict(
                param_space=ns["search_space"],
                tune_config=tune.TuneConfig(
                    num_samples=20,
                    scheduler=ns["ASHAScheduler"](metric="mean_accuracy", mode="max"),
                ),
            ),
        ),
        (
            "HyperOpt, 10 samples",
            dict(
                tune_config=tune.TuneConfig(
                    num_samples=10,
                    search_alg=ns["HyperOptSearch"](
                        {
                            "lr": ns["hp"].loguniform("lr", -10, -1),
                            "momentum": ns["hp"].uniform("momentum", 0.1, 0.9),
                        },
                        metric="mean_accuracy",
                        mode="max",
                    ),
                )
            ),
        ),
    ]
    rows = []
    for number, (name, kwargs) in enumerate(stages):
        log = os.path.join(logs, f"stage-{number}.txt")
        time_epochs(ns, log)
        start = time.perf_counter()
        results = tune.Tuner(ns["train_mnist"], run_config=run_config, **kwargs).fit()
        wall = time.perf_counter() - start
        epochs = sum(len(r.metrics_dataframe) for r in results)
        best = max(r.metrics.get("mean_accuracy", 0.0) for r in results)
        # Time the workers spent inside trials (from each trial's first to last report,
        # plus its first epoch), whatever the engine.
        frames = [r.metrics_dataframe for r in results]
        durations = [float(df["time_total_s"].iloc[-1]) for df in frames if len(df)]
        busy = sum(durations)
        epochs_per_trial = [len(df) for df in frames if len(df)]
        baseline.measure()  # after the stage: not part of its wall time
        rows.append(
            dict(
                stage=name,
                wall=wall,
                trials=len(results),
                epochs=epochs,
                best=best,
                busy=busy,
                packed=packed_wall(durations, os.cpu_count() or 1),
                epochs_per_trial=epochs_per_trial,
                in_trials=logged_seconds(log)[0],
                in_trials_cpu=logged_seconds(log)[1],
            )
        )
    return rows


def report(label: str, rows: list[dict], total: float, epoch_s: float, workers: int) -> float:
    """Print the stages' table; return the cost of the three stages together."""
    print(
        f"\n{label}: whole tutorial as one process (imports and cluster start included): "
        f"{total:.1f} s"
    )
    print(
        f"{'stage':22s} {'wall s':>7s} {'packed':>6s} {'trials':>6s} {'epochs':>6s} "
        f"{'best acc':>8s} {'cost':>5s} {'cost*':>5s} {'busy':>5s} {'epochs in trials':>16s} "
        f"{'rest of trials':>14s} {'outside trials':>14s}"
    )
    for r in rows:
        compute = r["epochs"] * epoch_s
        slots = r["wall"] * workers
        own = r["in_trials"] or float("nan")
        print(
            f"{r['stage']:22s} {r['wall']:7.2f} {r['packed']:6.2f} {r['trials']:6d} "
            f"{r['epochs']:6d} {r['best']:8.3f} {slots / compute:4.2f}x {slots / own:4.2f}x "
            f"{r['busy'] / slots:5.0%} {own:14.1f} s {r['busy'] - own:12.1f} s "
            f"{slots - r['busy']:12.1f} s"
        )
    compute = sum(r["epochs"] for r in rows) * epoch_s
    own = sum(r["in_trials"] for r in rows) or float("nan")
    stages = sum(r["wall"] for r in rows)
    cost = stages * workers / compute
    print(
        f"pure compute of all epochs: {compute:.1f} s on one thread ({epoch_s * 1000:.0f} ms "
        f"per epoch); the three stages took {stages:.1f} s on {workers} workers: "
        f"cost {cost:.2f}x the pure compute (efficiency {1 / cost:.0%}); with the script's "
        f"imports: {total * workers / compute:.2f}x"
    )
    packed = sum(r["packed"] for r in rows)
    print(
        f"the same trials packed with nothing between them (each started when a worker was "
        f"free): {packed:.1f} s, cost {packed * workers / compute:.2f}x; the stages took "
        f"{stages / packed:.2f}x that"
    )
    # The same trials' epochs at the pure epoch time, packed: what the stages' structure
    # (a lone trial on two workers, a stage's tail) costs before anything else does.
    shape = sum(packed_wall([n * epoch_s for n in r["epochs_per_trial"]], workers) for r in rows)
    print(
        f"the same epochs at the pure time, packed (the stages' shape alone): {shape:.1f} s, "
        f"cost {shape * workers / compute:.2f}x"
    )
    own_cpu = sum(r["in_trials_cpu"] for r in rows)
    print(
        f"cost* = against the epochs' own time in the trials ({own:.1f} s, of which "
        f"{own_cpu:.1f} s CPU: the same epochs under the load of the moment): "
        f"{stages * workers / own:.2f}x"
    )
    return cost


def mnist_home() -> str:
    """A home directory whose ~/data/MNIST/raw holds the MNIST subset (no download here)."""
    import shutil
    import tempfile

    from dasktune import datasets

    home = tempfile.mkdtemp(prefix="dasktune-tutorial-home-")
    raw = datasets.MNIST(os.path.join(home, "empty"), download=False).raw_folder
    shutil.copytree(raw, os.path.join(home, "data", "MNIST", "raw"))
    shutil.rmtree(os.path.join(home, "empty"), ignore_errors=True)
    return home


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--vs-ray", action="store_true")
    parser.add_argument("--variant", choices=("as-written", "example", "both"), default="both")
    parser.add_argument("--storage", default=None)
    args = parser.parse_args()
    import tempfile

    storage = args.storage or tempfile.mkdtemp(prefix="dasktune-tutorial-")
    variants = ["as-written", "example"] if args.variant == "both" else [args.variant]
    if "as-written" in variants:
        # Before any cluster starts: workers inherit it, and torchvision reads ~/data.
        os.environ["HOME"] = mnist_home()
    engines = ["dasktune"] + (["ray"] if args.vs_ray else [])
    if "ray" in engines:
        try:
            import ray  # noqa: F401 - only whether it imports
        except ImportError:
            print("\nray is not installed: pip install 'ray[tune]' hyperopt to compare")
            engines = ["dasktune"]
    totals = {}
    baselines = {variant: Baseline(load_example("dasktune", variant)) for variant in variants}
    for variant in variants:
        for engine in engines:
            first = not totals
            start = T0 if first else time.perf_counter()
            ns = load_example(engine, variant)
            baseline = baselines[variant]
            spent = baseline.elapsed
            rows = run_stages(ns, engine, storage, baseline)
            total = time.perf_counter() - start - (baseline.elapsed - spent)
            totals[(variant, engine)] = (total, rows)
    workers = os.cpu_count() or 1
    costs = {}
    for variant in variants:
        baseline = baselines[variant]
        blocks = ", ".join(f"{b * 1000:.0f}" for b in baseline.blocks)
        print(
            f"\n{variant}: one epoch on one thread in this process, timed in blocks of 10 after "
            f"each stage: {blocks} ms (median {baseline.epoch_s * 1000:.0f} ms)"
        )
        for engine in engines:
            total, rows = totals[(variant, engine)]
            costs[(variant, engine)] = report(
                f"{engine}, tutorial {variant}", rows, total, baseline.epoch_s, workers
            )
    for variant in variants:
        if "ray" in engines:
            ours, theirs = totals[(variant, "dasktune")], totals[(variant, "ray")]
            for a, b in zip(ours[1], theirs[1], strict=True):
                print(f"{variant}: Ray Tune / dasktune, {a['stage']}: {b['wall'] / a['wall']:.1f}x")
            print(
                f"{variant}: Ray Tune / dasktune, the three stages: "
                f"{sum(b['wall'] for b in theirs[1]) / sum(a['wall'] for a in ours[1]):.1f}x; "
                f"cost: dasktune {costs[(variant, 'dasktune')]:.2f}x, Ray Tune "
                f"{costs[(variant, 'ray')]:.2f}x the pure compute"
            )
        print(
            f"tutorial {variant}: dasktune's three stages cost "
            f"{costs[(variant, 'dasktune')]:.2f}x the pure compute of their epochs"
        )


if __name__ == "__main__":
    sys.exit(main())
