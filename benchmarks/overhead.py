"""Engine overhead: N trivial trials x R reports on the embedded cluster.

Each measurement is a fresh Python process, timed from its start to its exit,
so imports and cluster start-up count.  Prints the median of --repeat runs::

    python benchmarks/overhead.py --trials 200 --reports 10 --repeat 3
    python benchmarks/overhead.py --vs-ray     # the same workload with Ray Tune, if installed
    python benchmarks/overhead.py --tensorboard --repeat 5   # TensorBoard files on against off
    python benchmarks/overhead.py --also /path/to/other/checkout  # another dasktune version

It also runs the floor: the same futures and events on bare Dask with no tuner,
and prints dasktune's ratio to it, measured in the same command, the engines taking
turns run by run so that the machine's drift falls on both alike.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

WORKLOAD = r"""
import json, resource, sys, tempfile, time
t0 = time.perf_counter()
ENGINE, N, R, STORAGE = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
if ENGINE == "dask":
    # The floor: bare Dask, no tuner. Same cluster shape, one future per trial,
    # each publishing R events that the driver receives.
    from distributed import Client, LocalCluster, get_worker
    import __main__
    __main__.__dict__.pop("__file__", None)  # let spawned workers skip re-running this script

    def trial(x):
        w = get_worker()
        for i in range(R):
            w.log_event("bench", {"score": x * i})

    with LocalCluster(threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        got = []
        client.subscribe_topic("bench", got.append)
        t1 = time.perf_counter()
        client.gather([client.submit(trial, i, pure=False) for i in range(N)])
        while len(got) < N * R:
            time.sleep(0.001)
        t2 = time.perf_counter()
    print(json.dumps({"fit_s": t2 - t1, "import_s": 0.0,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
    sys.exit(0)
if ENGINE == "dasktune":
    import dasktune as tune
else:
    from ray import tune

def trivial(config):
    for i in range(R):
        tune.report({"score": config["x"] * i})

kwargs = {}
if ENGINE == "dasktune":
    kwargs["run_config"] = tune.RunConfig(storage_path=STORAGE, verbose=0)
else:
    kwargs["run_config"] = tune.RunConfig(storage_path=STORAGE, verbose=0)
tuner = tune.Tuner(trivial, param_space={"x": tune.uniform(0, 1)},
                   tune_config=tune.TuneConfig(num_samples=N), **kwargs)
t1 = time.perf_counter()
grid = tuner.fit()
t2 = time.perf_counter()
assert len(grid) == N and all(len(r.metrics_dataframe) == R for r in grid), "lost results"
print(json.dumps({"fit_s": t2 - t1, "import_s": t1 - t0,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run_once(
    engine: str, trials: int, reports: int, env: dict[str, str] | None = None
) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as storage:
        start = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-c", WORKLOAD, engine, str(trials), str(reports), storage],
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, **(env or {})},
        )
        wall = time.perf_counter() - start
    if out.returncode != 0:
        raise RuntimeError(f"{engine} run failed:\n{out.stderr[-3000:]}")
    stats = json.loads(out.stdout.strip().splitlines()[-1])
    stats["wall_s"] = wall
    return stats


def measure(
    engine: str, trials: int, reports: int, repeat: int, runs: list[dict[str, float]] | None = None
) -> dict[str, float]:
    runs = runs or [run_once(engine, trials, reports) for _ in range(repeat)]
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    wall = med["wall_s"]
    print(
        f"{engine:9s} {trials} trials x {reports} reports, median of {repeat}: "
        f"wall {wall:.2f} s (fit {med['fit_s']:.2f} s), "
        f"{trials / wall:.1f} trials/s, {trials * reports / wall:.0f} results/s, "
        f"driver peak RSS {med['peak_rss_mb']:.0f} MB; "
        f"all walls: {', '.join(format(r['wall_s'], '.2f') for r in runs)}"
    )
    return med


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--reports", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--vs-ray", action="store_true", help="also run Ray Tune and print the ratio"
    )
    parser.add_argument(
        "--tensorboard",
        action="store_true",
        help="only dasktune, with TensorBoard files off and on, runs interleaved",
    )
    parser.add_argument(
        "--also",
        metavar="CHECKOUT",
        help="also time the dasktune in this checkout (another commit), "
        "interleaved with this one, and print the ratio",
    )
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    if args.tensorboard:
        compare_tensorboard(args.trials, args.reports, args.repeat)
        return
    # Run by run, bare Dask, this dasktune and (--also) the other one take turns, so that
    # the machine's drift falls on all of them alike.
    engines = {"dask": {}, "dasktune": {}}
    if args.also:
        engines["also"] = {"PYTHONPATH": args.also}
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in engines}
    for _ in range(args.repeat):
        for name, env in engines.items():
            engine = "dask" if name == "dask" else "dasktune"
            runs[name].append(run_once(engine, args.trials, args.reports, env=env))
    floor = measure("dask", args.trials, args.reports, args.repeat, runs["dask"])
    ours = measure("dasktune", args.trials, args.reports, args.repeat, runs["dasktune"])
    print(f"dasktune / bare Dask wall-time ratio: {ours['wall_s'] / floor['wall_s']:.2f}x")
    if args.also:
        other = measure("also", args.trials, args.reports, args.repeat, runs["also"])
        print(
            f"dasktune ({args.also}) / bare Dask: {other['wall_s'] / floor['wall_s']:.2f}x; "
            f"this checkout / {args.also}: {ours['wall_s'] / other['wall_s']:.2f}x"
        )
        return
    if args.vs_ray:
        try:
            import ray  # noqa: F401 - only whether it imports
        except ImportError:
            print("ray is not installed: pip install 'ray[tune]' to compare")
            return
        theirs = measure("ray", args.trials, args.reports, args.repeat)
        print(f"Ray Tune / dasktune wall-time ratio: {theirs['wall_s'] / ours['wall_s']:.1f}x")


def compare_tensorboard(trials: int, reports: int, repeat: int) -> None:
    """dasktune.tensorboard false against true (the default), alternating run by run so that
    the machine's drift falls on both alike."""
    runs: dict[str, list[dict[str, float]]] = {"false": [], "true": []}
    for _ in range(repeat):
        for setting, done in runs.items():
            done.append(
                run_once("dasktune", trials, reports, env={"DASK_DASKTUNE__TENSORBOARD": setting})
            )
    off = measure("no TB", trials, reports, repeat, runs["false"])
    on = measure("TB", trials, reports, repeat, runs["true"])
    print(f"TensorBoard on / off wall-time ratio: {on['wall_s'] / off['wall_s']:.2f}x")


if __name__ == "__main__":
    main()
