"""Scale: N trivial trials x R reports, against bare Dask in the same command.

    python benchmarks/scale.py --trials 10000 --reports 3
    python benchmarks/scale.py --trials 200 --reports 10 --repeat 5
    python benchmarks/scale.py --trials 2000 --reports 3 --cluster processes --workers 4
    python benchmarks/scale.py --trials 200 --reports 10 --vs-ray
    python benchmarks/scale.py --trials 2000 --reports 3 --profile /tmp/prof   # py-spy the driver

Each run is a fresh Python process timed from its start to its exit (imports,
cluster start and shutdown count); ``--repeat`` runs alternate between the
engines so that the machine's drift hits both alike, and medians are printed.

For each engine: wall time, trials/s, results/s and the driver's peak RSS.  For
dasktune also, per tenth of the trials (by completion): the wall time, the
coordinator thread's CPU time and the whole driver's CPU time (scheduler and
client threads too, on the embedded cluster), each per 1,000 trials, and the
ratio of the last tenth to the first.  Then, in separate runs: the driver's
ingest rate (few trials, many fast reports: results/s ingested, recorded and
decided, every one checked on disk) and ASHA's stop latency (from the report
that triggers a stop to the end of the trial's Dask task, which frees its
worker slot).

The floor, bare Dask, runs the same workload with no tuner: one future per
trial, each publishing R events with ``Worker.log_event`` that the driver
receives through ``Client.subscribe_topic``, all submitted at once.

``--cluster processes`` runs both engines against a cluster started with the
``dask scheduler`` and ``dask worker`` commands (W separate worker processes,
one thread each), started afresh for each run and not timed.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.abspath(__file__)
RAY_PYTHON = "/work/ray-venv/bin/python"


# -- the workloads, each run in a child process ------------------------------------------
def child_dask(n: int, r: int, workers: int, scheduler_file: str | None) -> dict:
    import resource

    from distributed import Client, LocalCluster, get_worker

    def trial(x: float) -> None:
        w = get_worker()
        for i in range(r):
            w.log_event("bench", {"score": x * i})

    cluster = None
    t0 = time.perf_counter()
    if scheduler_file:
        client = Client(scheduler_file=scheduler_file)
    else:
        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address="127.0.0.1:0",
            host="127.0.0.1",
        )
        client = Client(cluster)
    got: list = []
    client.subscribe_topic("bench", got.append)
    stamps: list[tuple[float, float, float]] = []
    workers_before = _workers_cpu(client)
    start = _now()
    futures = [client.submit(trial, i / n, pure=False) for i in range(n)]
    for f in futures:
        f.add_done_callback(lambda _f: stamps.append(_now()))
    client.gather(futures)
    while len(got) < n * r:
        time.sleep(0.001)
    t1, t2 = start[0], time.perf_counter()
    cpu = {
        "driver": time.process_time() - start[2],
        **_cpu_by_thread(),
        "workers": _workers_cpu(client) - workers_before,
    }
    client.close()
    if cluster is not None:
        cluster.close()
    stamps.sort()
    tenth = max(1, n // 10)
    marks = [start] + [
        (stamps[i - 1][0], 0.0, stamps[i - 1][2]) for i in range(tenth, n + 1, tenth)
    ]
    marks[0] = (start[0], 0.0, start[2])
    return {
        "fit_s": t2 - t1,
        "start_s": t1 - t0,
        "tenths": marks,
        "tenth": tenth,
        "cpu": cpu,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def child_tune(
    engine: str,
    n: int,
    r: int,
    workers: int,
    storage: str,
    scheduler_file: str | None,
    sleep: float = 0.0,
) -> dict:
    """dasktune or Ray Tune: N trials of R reports (``sleep`` seconds before each)."""
    import resource

    if engine == "dasktune":
        import dask

        import dasktune as tune
        from dasktune.callback import Callback

        dask.config.set({"dasktune.cluster.n-workers": workers})
        if scheduler_file:
            from distributed import Client

            Client(scheduler_file=scheduler_file)  # the default client: the Tuner uses it
    else:
        from ray import tune
        from ray.tune import Callback

    tenth = max(1, n // 10)

    class Tenths(Callback):
        """Times every tenth of the trials, on the driver, as they complete."""

        def __init__(self) -> None:
            self.marks: list[tuple[float, float, float]] = []
            self.done = 0
            self.first_result = self.last_result = 0.0

        def setup(self, **info) -> None:
            self.marks = [_now()]

        def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
            self.last_result = time.perf_counter()
            self.first_result = self.first_result or self.last_result

        def on_trial_complete(self, iteration, trials, trial, **info) -> None:
            self.done += 1
            if self.done % tenth == 0:
                self.marks.append(_now())

    def trivial(config):
        for i in range(r):
            if sleep:
                time.sleep(sleep)
            tune.report({"score": config["x"] * i})

    class Cpu(Callback):
        """The CPU the cluster's workers and the driver's threads used during the run."""

        def setup(self, **info) -> None:
            self.client = _client_of(engine)
            self.workers = _workers_cpu(self.client) if self.client is not None else 0.0
            self.driver = time.process_time()
            self.threads = _cpu_by_thread()

        def on_experiment_end(self, trials, **info) -> None:
            threads = _cpu_by_thread()
            self.cpu = {
                "driver": time.process_time() - self.driver,
                **{k: v - self.threads.get(k, 0.0) for k, v in threads.items()},
            }
            if self.client is not None:
                self.cpu["workers"] = _workers_cpu(self.client) - self.workers

    tenths, cpu = Tenths(), Cpu()
    tuner = tune.Tuner(
        trivial,
        param_space={"x": tune.uniform(0, 1)},
        tune_config=tune.TuneConfig(num_samples=n),
        run_config=tune.RunConfig(
            storage_path=storage, name="scale", verbose=0, callbacks=[tenths, cpu]
        ),
    )
    t1 = time.perf_counter()
    grid = tuner.fit()
    t2 = time.perf_counter()
    iterations = sorted(res.metrics.get("training_iteration", 0) for res in grid)
    if len(grid) != n or iterations[0] != r or iterations[-1] != r:
        raise SystemExit(f"lost results: {len(grid)} trials, iterations {iterations[:3]}...")
    results_s = tenths.last_result - tenths.first_result
    return {
        "fit_s": t2 - t1,
        "tenths": tenths.marks,
        "tenth": tenth,
        "start_s": tenths.marks[0][0] - t1 if tenths.marks else 0.0,
        "results_per_s": (n * r - 1) / results_s if results_s > 0 else 0.0,
        "cpu": getattr(cpu, "cpu", {}),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _client_of(engine: str):
    """The Dask client the experiment runs on (None for Ray)."""
    if engine != "dasktune":
        return None
    from distributed import default_client

    from dasktune.execution.cluster import embedded

    if embedded.client is not None:
        return embedded.client
    try:
        return default_client()
    except ValueError:
        return None


def child_stop_latency(n: int, workers: int, storage: str, scheduler_file: str | None) -> dict:
    """ASHA stops trials; for each stopped one, the seconds from the report that stopped
    it (stamped on the worker) to the end of its Dask task (from Dask's task stream)."""
    import dask
    from distributed import Client, get_task_stream

    import dasktune as tune
    from dasktune.execution.cluster import start_local_cluster
    from dasktune.schedulers import ASHAScheduler

    max_t = 16
    dask.config.set({"dasktune.cluster.n-workers": workers})
    cluster = None
    if scheduler_file:
        client = Client(scheduler_file=scheduler_file)
    else:
        cluster = start_local_cluster(workers)
        client = Client(cluster)

    def steps(config):
        for i in range(max_t):
            time.sleep(0.005)
            tune.report({"score": config["x"] * (i + 1), "t": time.time()})

    tuner = tune.Tuner(
        steps,
        param_space={"x": tune.uniform(0, 1)},
        tune_config=tune.TuneConfig(
            num_samples=n,
            scheduler=ASHAScheduler(
                metric="score", mode="max", max_t=max_t, grace_period=1, reduction_factor=2
            ),
        ),
        run_config=tune.RunConfig(storage_path=storage, name="stops", verbose=0),
        client=client,
    )
    with get_task_stream(client=client) as stream:
        grid = tuner.fit()
    ended = {}
    for task in stream.data:
        stops = [s["stop"] for s in task.get("startstops", ()) if s.get("action") == "compute"]
        if stops:
            ended[task["key"]] = max(stops)
    latencies = []
    for result in grid:
        if result.metrics["training_iteration"] >= max_t:
            continue  # ran to max_t: not stopped
        trial_id = result.metrics["trial_id"]
        keys = [k for k in ended if isinstance(k, str) and k.startswith(f"dasktune-{trial_id}-")]
        if keys:
            latencies.append(ended[sorted(keys)[-1]] - result.metrics["t"])
    client.close()
    if cluster is not None:
        cluster.close()
    return {"latencies": latencies}


def _now() -> tuple[float, float, float]:
    return time.perf_counter(), time.thread_time(), time.process_time()


def _cpu_by_thread() -> dict[str, float]:
    """CPU seconds of this process's live threads, by name (Linux: /proc)."""
    import threading

    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for thread in threading.enumerate():
        try:
            with open(f"/proc/self/task/{thread.native_id}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, TypeError):
            continue
        name = "IO loop" if thread.name.startswith("IO loop") else thread.name.split("_")[0]
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


def _workers_cpu(client) -> float:
    """CPU seconds the cluster's worker processes used so far."""

    def used() -> float:
        import resource

        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    return sum(client.run(used).values())


# -- the parent: processes, clusters, tables ---------------------------------------------
class ProcessCluster:
    """``dask scheduler`` and W ``dask worker`` processes, one thread each."""

    def __init__(self, workers: int) -> None:
        self.dir = tempfile.mkdtemp(prefix="dasktune-scale-cluster-")
        self.file = os.path.join(self.dir, "scheduler.json")
        dask = [sys.executable, "-m", "dask"]
        quiet = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        self.procs = [
            subprocess.Popen(
                dask
                + [
                    "scheduler",
                    "--scheduler-file",
                    self.file,
                    "--host",
                    "127.0.0.1",
                    "--port",
                    "0",
                    "--dashboard-address",
                    "127.0.0.1:0",
                ],
                **quiet,
            )
        ]
        deadline = time.monotonic() + 60
        while not os.path.exists(self.file) and time.monotonic() < deadline:
            time.sleep(0.05)
        for _ in range(workers):
            self.procs.append(
                subprocess.Popen(
                    dask
                    + [
                        "worker",
                        "--scheduler-file",
                        self.file,
                        "--nthreads",
                        "1",
                        "--host",
                        "127.0.0.1",
                        "--no-dashboard",
                    ],
                    **quiet,
                )
            )
        from distributed import Client

        with Client(scheduler_file=self.file, timeout=60) as client:
            client.wait_for_workers(workers, timeout=120)

    def scheduler_cpu(self) -> float:
        """CPU seconds the scheduler process used so far."""
        import psutil

        times = psutil.Process(self.procs[0].pid).cpu_times()
        return times.user + times.system

    def close(self) -> None:
        for proc in reversed(self.procs):
            with _ignored():
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with _ignored():
                    os.killpg(proc.pid, signal.SIGKILL)
        shutil.rmtree(self.dir, ignore_errors=True)


class _ignored:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc) -> bool:
        return exc[0] is not None and issubclass(exc[0], ProcessLookupError)


def run_child(
    args: argparse.Namespace,
    engine: str,
    *,
    trials: int,
    reports: int,
    sleep: float = 0.0,
    profile: str | None = None,
) -> dict:
    """Run one workload in a fresh process; returns its figures and wall time."""
    storage = tempfile.mkdtemp(prefix="dasktune-scale-")
    cluster = ProcessCluster(args.workers) if args.cluster == "processes" else None
    python = args.ray_python if engine == "ray" else sys.executable
    cmd = [
        python,
        HERE,
        "--child",
        engine,
        "--trials",
        str(trials),
        "--reports",
        str(reports),
        "--workers",
        str(args.workers),
        "--storage",
        storage,
        "--sleep",
        str(sleep),
    ]
    if cluster is not None:
        cmd += ["--scheduler-file", cluster.file]
    if profile:
        os.makedirs(profile, exist_ok=True)
        out = os.path.join(profile, f"{engine}-{trials}x{reports}-{int(time.time())}.txt")
        cmd = [
            "py-spy",
            "record",
            "--format",
            "raw",
            "--rate",
            "200",
            "--threads",
            "--subprocesses",
            "--output",
            out,
            "--",
        ] + cmd
    try:
        scheduler_cpu = cluster.scheduler_cpu() if cluster is not None else 0.0
        start = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - start
        if done.returncode != 0:
            raise RuntimeError(f"{engine} run failed:\n{done.stderr[-4000:]}")
        stats = json.loads([line for line in done.stdout.splitlines() if line.startswith("{")][-1])
        stats["wall_s"] = wall
        if cluster is not None and "cpu" in stats:
            stats["cpu"]["scheduler process"] = cluster.scheduler_cpu() - scheduler_cpu
        if engine == "dasktune" and "tenths" in stats:
            stats["on_disk"] = count_on_disk(os.path.join(storage, "scale"), trials, reports)
        return stats
    finally:
        if cluster is not None:
            cluster.close()
        shutil.rmtree(storage, ignore_errors=True)


def count_on_disk(experiment: str, trials: int, reports: int) -> str:
    """Every trial's result.json holds exactly ``reports`` lines, iterations 1..R once."""
    dirs = [d for d in os.listdir(experiment) if os.path.isdir(os.path.join(experiment, d))]
    bad = 0
    for d in dirs:
        with open(os.path.join(experiment, d, "result.json"), "rb") as f:
            its = [json.loads(line)["training_iteration"] for line in f.read().splitlines()]
        bad += its != list(range(1, reports + 1))
    if len(dirs) != trials or bad:
        raise RuntimeError(
            f"results lost or doubled on disk: {len(dirs)} trial directories "
            f"of {trials}, {bad} with other rows than 1..{reports}"
        )
    return f"all {trials * reports} results on disk exactly once"


def tenth_table(stats: dict, trials: int) -> list[str]:
    marks, tenth = stats["tenths"], stats["tenth"]
    per = 1000 / tenth
    rows = []
    for (w0, c0, p0), (w1, c1, p1) in itertools.pairwise(marks):
        rows.append(((w1 - w0) * per, (c1 - c0) * per, (p1 - p0) * per))
    if len(rows) < 2:
        return []
    lines = ["  tenth  wall s/1000 trials  coordinator CPU s/1000  driver CPU s/1000"]
    for i, (w, c, p) in enumerate(rows, 1):
        lines.append(f"  {i:5d}  {w:18.2f}  {c:22.2f}  {p:17.2f}")
    first, last = rows[0], rows[-1]
    coordinator = f"{last[1] / first[1]:.2f}x" if first[1] else "-"
    driver = f"{last[2] / first[2]:.2f}x" if first[2] else "-"
    lines.append(
        f"  last/first: wall {last[0] / first[0]:.2f}x, coordinator CPU {coordinator}, "
        f"driver CPU {driver}"
    )
    return lines


def cpu_line(label: str, stats: dict, trials: int) -> str:
    """CPU per trial, in ms, by part: the driver's threads and the workers."""
    cpu = stats.get("cpu") or {}
    parts = [
        f"{name} {1000 * seconds / trials:.2f}"
        for name, seconds in sorted(cpu.items(), key=lambda kv: -kv[1])
        if seconds >= 0.005 * trials / 1000
    ]
    return f"{label} CPU ms per trial: " + ", ".join(parts)


def median_of(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def describe(label: str, runs: list[dict], trials: int, reports: int) -> str:
    wall = median_of(runs, "wall_s")
    start = median_of(runs, "start_s")
    return (
        f"{label:9s} {trials} x {reports}, median of {len(runs)}: wall {wall:.2f} s "
        f"(cluster start {start:.2f} s, then the trials "
        f"{median_of(runs, 'fit_s') - (start if label != 'bare Dask' else 0):.2f} s), "
        f"{trials / wall:.0f} trials/s, "
        f"{trials * reports / wall:.0f} results/s, driver peak RSS "
        f"{median_of(runs, 'peak_rss_mb'):.0f} MB; walls: "
        + ", ".join(f"{r['wall_s']:.2f}" for r in runs)
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--reports", type=int, default=3)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument(
        "--cluster",
        choices=("local", "processes"),
        default="local",
        help="local: the embedded cluster (LocalCluster for bare Dask); "
        "processes: dask scheduler + dask worker commands",
    )
    parser.add_argument("--vs-ray", action="store_true", help="also run Ray Tune")
    parser.add_argument(
        "--ray-python", default=RAY_PYTHON if os.path.exists(RAY_PYTHON) else sys.executable
    )
    parser.add_argument(
        "--ingest-trials", type=int, default=20, help="trials of the ingest-rate run (0: skip it)"
    )
    parser.add_argument("--ingest-reports", type=int, default=1000)
    parser.add_argument(
        "--stop-trials",
        type=int,
        default=64,
        help="trials of the ASHA stop-latency run (0: skip it)",
    )
    parser.add_argument("--profile", metavar="DIR", help="record the dasktune driver with py-spy")
    parser.add_argument("--only", choices=("dasktune", "dask"), help="run one engine only")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--storage", help=argparse.SUPPRESS)
    parser.add_argument("--scheduler-file", help=argparse.SUPPRESS)
    parser.add_argument("--sleep", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        if args.child == "dask":
            stats = child_dask(args.trials, args.reports, args.workers, args.scheduler_file)
        elif args.child == "stops":
            stats = child_stop_latency(args.trials, args.workers, args.storage, args.scheduler_file)
        else:
            stats = child_tune(
                args.child,
                args.trials,
                args.reports,
                args.workers,
                args.storage,
                args.scheduler_file,
                args.sleep,
            )
        print(json.dumps(stats))
        return

    n, r = args.trials, args.reports
    print(
        f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}; "
        f"{args.workers} workers ({args.cluster}); {n} trials x {r} reports"
    )
    engines = [e for e in ("dask", "dasktune") if args.only in (None, e)]
    runs: dict[str, list[dict]] = {e: [] for e in engines}
    for _ in range(args.repeat):  # interleaved: drift hits both engines alike
        for engine in engines:
            runs[engine].append(
                run_child(
                    args,
                    engine,
                    trials=n,
                    reports=r,
                    profile=args.profile if engine == "dasktune" else None,
                )
            )
    if args.vs_ray:
        runs["ray"] = [run_child(args, "ray", trials=n, reports=r)]
    for engine, label in (("dask", "bare Dask"), ("dasktune", "dasktune"), ("ray", "Ray Tune")):
        if runs.get(engine):
            print(describe(label, runs[engine], n, r))
    if "dask" in runs:
        floor = sorted(runs["dask"], key=lambda s: s["wall_s"])[len(runs["dask"]) // 2]
        print(cpu_line("bare Dask", floor, n))
        print("bare Dask, per tenth of the futures (median run):")
        print("\n".join(tenth_table(floor, n)))
    if "dasktune" in runs:
        best = sorted(runs["dasktune"], key=lambda s: s["wall_s"])[len(runs["dasktune"]) // 2]
        print(cpu_line("dasktune", best, n))
        print(f"dasktune, {best['on_disk']}; per tenth of the trials (median run):")
        print("\n".join(tenth_table(best, n)))
    if "dask" in runs and "dasktune" in runs:
        ratio = median_of(runs["dasktune"], "wall_s") / median_of(runs["dask"], "wall_s")
        print(f"dasktune / bare Dask wall time: {ratio:.2f}x")
    if "ray" in runs and "dasktune" in runs:
        ratio = median_of(runs["ray"], "wall_s") / median_of(runs["dasktune"], "wall_s")
        print(f"Ray Tune / dasktune wall time: {ratio:.1f}x")
    if args.ingest_trials and "dasktune" in runs:
        ingest = run_child(args, "dasktune", trials=args.ingest_trials, reports=args.ingest_reports)
        results = args.ingest_trials * args.ingest_reports
        print(
            f"ingest: {args.ingest_trials} trials x {args.ingest_reports} reports: "
            f"{ingest['results_per_s']:.0f} results/s from the first result to the last, "
            f"{results / ingest['fit_s']:.0f} results/s over the whole fit "
            f"({ingest['fit_s']:.2f} s, cluster start included); {ingest['on_disk']}"
        )
    if args.stop_trials and "dasktune" in runs:
        stops = run_child(args, "stops", trials=args.stop_trials, reports=0)["latencies"]
        if stops:
            ms = sorted(1000 * s for s in stops)
            print(
                f"ASHA stop latency, report to free worker slot, {len(ms)} stopped trials: "
                f"median {statistics.median(ms):.1f} ms, p90 {ms[int(0.9 * (len(ms) - 1))]:.1f} "
                f"ms, max {ms[-1]:.1f} ms"
            )


if __name__ == "__main__":
    main()
