"""Ray Tune's own example scripts, ported with ``dasktune port`` and run under dasktune.

Takes the examples shipped in the ray package (``ray/tune/examples``), keeps
those whose imports need nothing beyond dasktune's extras (torch, torchvision,
hyperopt, optuna, scikit-learn, and what those bring: numpy, scipy, pandas,
filelock) and says why the others do not qualify. Each qualifying example is
copied to a temporary directory (with the example modules it imports from
``ray.tune.examples``), ported in place, and run as ``python EXAMPLE.py
--smoke-test`` with this Python (dasktune's), its own HOME, timed from start to
exit. With ``--ray-python`` the unported copy also runs under Ray Tune, in the
same command. Nothing of Ray's examples is kept: the copies live in a
temporary directory.

MNIST cannot be downloaded here; both engines get the same 5,000-image subset
(the one ``dasktune.datasets`` falls back to) in ``~/data/MNIST/raw``, where the
examples look for MNIST.

    python benchmarks/ray_examples.py --ray-python /work/ray-venv/bin/python
    python benchmarks/ray_examples.py --examples-dir .../ray/tune/examples --only pbt_example
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: What dasktune's extras install (torch, hyperopt, optuna, sklearn) and what they bring.
ALLOWED = {
    "torch",
    "torchvision",
    "hyperopt",
    "optuna",
    "sklearn",
    "numpy",
    "scipy",
    "pandas",
    "filelock",
}
NOT_EXAMPLES = {"__init__.py", "utils.py"}  # utils.py is a helper of the Keras examples
#: Ray modules that import an optional library of their own (read in Ray's sources).
RAY_NEEDS = {
    "ray.tune.search.ax": "ax-platform",
    "ray.tune.search.bayesopt": "bayesian-optimization",
    "ray.tune.search.bohb": "hpbandster, ConfigSpace",
    "ray.tune.search.hebo": "HEBO",
    "ray.tune.search.nevergrad": "nevergrad",
    "ray.tune.search.zoopt": "zoopt",
    "ray.rllib": "RLlib",
}
#: What an example needs that its imports do not show (read in the scripts).
HIDDEN_NEEDS = {"pb2_ppo_example.py": "RLlib (it tunes the trainable Ray registers as 'PPO')"}
_ERROR = re.compile(r"^(\w+\.)*\w*(Error|Exception|Interrupt|Warning|Exit)\b.*")


@dataclass
class Run:
    ok: bool
    seconds: float
    error: str = ""


def imports_of(path: str) -> set[str]:
    """Every module a script imports, anywhere in it (dotted names for ray's)."""
    found: set[str] = set()
    with open(path) as f:
        tree = ast.parse(f.read())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return found


def helpers_of(path: str) -> list[str]:
    """The ``ray.tune.examples`` modules a script imports."""
    return sorted(
        {
            m.split(".")[3]
            for m in imports_of(path)
            if m.startswith("ray.tune.examples.") and len(m.split(".")) >= 4
        }
    )


def why_not(name: str, examples_dir: str, seen: frozenset[str] = frozenset()) -> str | None:
    """Why an example does not qualify, or None if it does."""
    path = os.path.join(examples_dir, name)
    needs = {HIDDEN_NEEDS[name]} if name in HIDDEN_NEEDS else set()
    for module in imports_of(path):
        top = module.split(".")[0]
        ray_needs = [
            need
            for prefix, need in RAY_NEEDS.items()
            if module == prefix or module.startswith(prefix + ".")
        ]
        if ray_needs:
            needs.update(ray_needs)
        elif (
            top != "ray"
            and top not in sys.stdlib_module_names
            and top not in ALLOWED
            and top != "__future__"
        ):
            needs.add(top)
    for helper in helpers_of(path):
        if helper + ".py" not in seen:
            reason = why_not(helper + ".py", examples_dir, seen | {name})
            if reason:
                needs.add(f"{helper}.py, which {reason}")
    return f"needs {', '.join(sorted(needs))}" if needs else None


def error_line(output: str) -> str:
    """The exception a failed run ended with, or its last line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if _ERROR.match(line)]
    return (errors[-1] if errors else lines[-1] if lines else "no output")[:160]


def timed(command: list[str], cwd: str, env: dict[str, str], timeout: float) -> Run:
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        output = (
            (exc.stdout or b"").decode(errors="replace")
            if isinstance(exc.stdout, bytes)
            else exc.stdout or ""
        )
        return Run(
            False,
            time.perf_counter() - start,
            f"timed out after {timeout:.0f} s; last: {error_line(output)}",
        )
    seconds = time.perf_counter() - start
    output = proc.stdout + proc.stderr
    with open(os.path.join(cwd, "output.txt"), "w") as f:
        f.write(output)
    if proc.returncode != 0:
        return Run(False, seconds, error_line(output))
    return Run(True, seconds)


def mnist_subset(workdir: str) -> str:
    """The raw IDX files of the MNIST subset that dasktune.datasets falls back to."""
    code = (
        "import sys; from dasktune import datasets; "
        "print(datasets.MNIST(sys.argv[1], download=False).raw_folder)"
    )
    env = dict(os.environ, DASK_DASKTUNE__CACHE_DIR=os.path.join(workdir, "cache"), PYTHONPATH=ROOT)
    out = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", code, os.path.join(workdir, "empty")],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip().splitlines()[-1]


def home_with_mnist(home: str, raw: str) -> None:
    os.makedirs(home, exist_ok=True)
    shutil.copytree(raw, os.path.join(home, "data", "MNIST", "raw"))


def environment(home: str, python_path: str | None) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DASKTUNE_", "DASK_", "RAY_", "PYTHONPATH"))
    }
    env.update(HOME=home, PYTHONUNBUFFERED="1", MPLBACKEND="Agg")
    if python_path:
        env["PYTHONPATH"] = python_path
    return env


def port(directory: str, names: list[str]) -> list[str]:
    """Port the scripts in place; return what could not be ported."""
    problems = []
    for name in names:
        proc = subprocess.run(
            [sys.executable, "-m", "dasktune", "port", name, "-o", name],
            cwd=directory,
            env=environment(directory, ROOT),
            capture_output=True,
            text=True,
            check=True,
        )
        problems += [
            line.split("cannot port ", 1)[1].split(":")[0]
            for line in proc.stderr.splitlines()
            if "cannot port " in line
        ]
    return problems


def run_example(
    name: str, examples_dir: str, raw: str, workdir: str, args: argparse.Namespace
) -> tuple[list[str], Run, Run | None]:
    stem = name[:-3]
    files = [name] + [h + ".py" for h in helpers_of(os.path.join(examples_dir, name))]
    ported_dir = os.path.join(workdir, stem, "dasktune")
    os.makedirs(ported_dir)
    for file in files:
        shutil.copy(os.path.join(examples_dir, file), ported_dir)
    problems = port(ported_dir, files)
    home = os.path.join(workdir, stem, "dasktune-home")
    home_with_mnist(home, raw)
    ours = timed(
        [sys.executable, name, "--smoke-test"], ported_dir, environment(home, ROOT), args.timeout
    )
    theirs = None
    if args.ray_python:
        ray_dir = os.path.join(workdir, stem, "ray")
        os.makedirs(ray_dir)
        shutil.copy(os.path.join(examples_dir, name), ray_dir)
        ray_home = os.path.join(workdir, stem, "ray-home")
        home_with_mnist(ray_home, raw)
        theirs = timed(
            [args.ray_python, name, "--smoke-test"],
            ray_dir,
            environment(ray_home, None),
            args.timeout,
        )
    return problems, ours, theirs


def cell(run: Run | None) -> tuple[str, str]:
    if run is None:
        return "", ""
    outcome = "ok" if run.ok else f"fail: `{run.error}`"
    return outcome, f"{run.seconds:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--ray-python",
        help="a Python with Ray Tune installed: also time the "
        "unported examples with it (and find the examples there)",
    )
    parser.add_argument("--examples-dir", help="ray/tune/examples (default: the --ray-python's)")
    parser.add_argument("--only", default="", help="comma-separated example names to run")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per run")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    examples_dir = args.examples_dir
    if examples_dir is None and args.ray_python:
        examples_dir = subprocess.run(
            [
                args.ray_python,
                "-c",
                "import os, ray.tune.examples as e; print(os.path.dirname(e.__file__))",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    if not examples_dir:
        parser.error("pass --ray-python (a Python with Ray Tune) or --examples-dir")

    names = sorted(
        n for n in os.listdir(examples_dir) if n.endswith(".py") and n not in NOT_EXAMPLES
    )
    reasons = {n: why_not(n, examples_dir) for n in names}
    qualifying = [n for n in names if reasons[n] is None]
    only = {n if n.endswith(".py") else n + ".py" for n in args.only.split(",") if n}
    print(
        f"{len(names)} examples in {examples_dir}; {len(qualifying)} need nothing beyond "
        "dasktune's extras.\n\nNot run:"
    )
    for name in names:
        if reasons[name]:
            print(f"- {name}: {reasons[name]}")

    workdir = tempfile.mkdtemp(prefix="dasktune-ray-examples-")
    raw = mnist_subset(workdir)
    print(f"\nRun with `--smoke-test`, one at a time, in {workdir}:\n")
    header = "| example | ported by `dasktune port` | dasktune | s |"
    header += " Ray Tune | s |" if args.ray_python else ""
    print(header)
    print("|---" * (header.count("|") - 1) + "|")
    try:
        for name in qualifying:
            if only and name not in only:
                continue
            problems, ours, theirs = run_example(name, examples_dir, raw, workdir, args)
            ported = "yes" if not problems else "no: " + ", ".join(f"`{p}`" for p in problems)
            row = [name, ported, *cell(ours)]
            if args.ray_python:
                row += cell(theirs)
            print("| " + " | ".join(row) + " |", flush=True)
    finally:
        if args.keep:
            print(f"\n(kept {workdir})")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
