"""The ``dasktune`` command as a user runs it (``python -m dasktune``), and ported Ray Tune
scripts running under dasktune in fresh processes."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

import dasktune
from dasktune.cli import build_parser, main

ROOT = str(Path(dasktune.__file__).resolve().parents[1])


def environment(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DASKTUNE_", "DASK_"))}
    env.update(
        HOME=str(home),
        PYTHONPATH=os.pathsep.join([ROOT, env.get("PYTHONPATH", "")]),
        DASK_DASKTUNE__CLUSTER__KEEP_ALIVE="0",
        DASK_DASKTUNE__CLUSTER__N_WORKERS="2",
        PYTHONUNBUFFERED="1",
    )
    return env


def dasktune_command(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dasktune", *args],
        cwd=cwd,
        env=environment(cwd),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


RAY_SCRIPT = '''\
"""A Ray Tune script as Ray's docs write them."""
import ray
from ray import train, tune
from ray.air import session


def objective(config):  # the trainable
    for step in range(3):
        session.report({"score": config["x"] * (step + 1), "trial": session.get_trial_id()})


if __name__ == "__main__":
    ray.init(num_cpus=2)
    tuner = tune.Tuner(
        objective,
        param_space={"x": tune.grid_search([1, 2, 3])},
        tune_config=tune.TuneConfig(metric="score", mode="max"),
        run_config=train.RunConfig(name="ported", verbose=0),
    )
    best = tuner.fit().get_best_result()
    print("BEST", best.config["x"], best.metrics["score"], best.metrics["trial"][:6])
    ray.shutdown()
'''


def test_help_for_the_command_and_for_port(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert "port" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["port", "--help"])
    text = capsys.readouterr().out
    assert "--check" in text and "-o OUT.py" in text and "Exit status" in text
    assert build_parser().prog == "dasktune"


def test_port_prints_a_diff_and_writes_only_with_output(tmp_path):
    (tmp_path / "train.py").write_text(RAY_SCRIPT)
    proc = dasktune_command("port", "train.py", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("--- train.py\n+++ train.py (ported to dasktune)\n")
    assert "+import dasktune as tune\n" in proc.stdout
    assert "note: ray.init(num_cpus=2)" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.py"], "wrote nothing"

    proc = dasktune_command("port", "train.py", "-o", "ported.py", cwd=tmp_path)
    assert proc.returncode == 0 and "+++ ported.py\n" in proc.stdout
    assert "from ray" not in (tmp_path / "ported.py").read_text()

    proc = dasktune_command("port", "train.py", "-o", "-", cwd=tmp_path)
    assert proc.stdout == (tmp_path / "ported.py").read_text(), "the script itself on stdout"
    assert "note:" in proc.stderr


def test_check_reports_and_says_so_in_its_exit_status(tmp_path):
    (tmp_path / "good.py").write_text(RAY_SCRIPT)
    (tmp_path / "bad.py").write_text("import ray\n\n@ray.remote\ndef f():\n    return 1\n")
    good = dasktune_command("port", "--check", "good.py", cwd=tmp_path)
    assert good.returncode == 0 and "everything can be ported" in good.stdout
    assert "+++" not in good.stdout
    bad = dasktune_command("port", "--check", "bad.py", cwd=tmp_path)
    assert bad.returncode == 1
    assert "bad.py:3: cannot port ray.remote" in bad.stdout
    assert "1 construct(s) cannot be ported" in bad.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.py", "good.py"]


def test_unreadable_and_invalid_scripts_exit_2(tmp_path, capsys):
    assert main(["port", str(tmp_path / "missing.py")]) == 2
    assert "cannot read" in capsys.readouterr().err
    (tmp_path / "broken.py").write_text("from ray import tune\nif x\n")
    assert main(["port", str(tmp_path / "broken.py")]) == 2
    assert "is not valid Python (line 2" in capsys.readouterr().err


RUN_SCRIPT = """\
import ray
from ray import tune
from ray.tune.schedulers import AsyncHyperBandScheduler


class Climb(tune.Trainable):
    def setup(self, config):
        self.value = 0.0

    def step(self):
        self.value += self.config["rate"]
        return {"mean_accuracy": self.value}


ray.init()
analysis = tune.run(
    Climb,
    config={"rate": tune.grid_search([0.1, 0.2])},
    stop={"training_iteration": 4},
    scheduler=AsyncHyperBandScheduler(grace_period=1, max_t=4),
    metric="mean_accuracy",
    mode="max",
    name="tune_run_ported",
    verbose=0,
)
print("BEST", analysis.best_config["rate"], round(analysis.best_result["mean_accuracy"], 3))
"""


@pytest.mark.parametrize(
    "script, expected",
    [
        (RAY_SCRIPT, "BEST 3 9 "),
        (RUN_SCRIPT, "BEST 0.2 0.8"),
    ],
)
def test_a_ported_script_runs_under_dasktune(tmp_path, script, expected):
    (tmp_path / "ray_script.py").write_text(script)
    proc = dasktune_command("port", "ray_script.py", "-o", "ported.py", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    run = subprocess.run(
        [sys.executable, "ported.py"],
        cwd=tmp_path,
        env=environment(tmp_path),
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-4000:]
    assert expected in run.stdout, output[-4000:]
    assert "Traceback" not in output, output[-4000:]


def test_the_console_script_points_at_main():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11 and later
    with open(Path(ROOT) / "pyproject.toml", "rb") as f:
        entry = tomllib.load(f)["project"]["scripts"]["dasktune"]
    module, _, function = entry.partition(":")
    assert getattr(importlib.import_module(module), function) is main


# -- reading experiments: summary, plot, dashboard ------------------------------------------


def ramp(config):
    for step in range(1, 5):
        dasktune.report({"acc": config["lr"] * step, "loss": 1 / (config["lr"] * step)})


@pytest.fixture(scope="module")
def experiment(client, tmp_path_factory):
    storage = str(tmp_path_factory.mktemp("cli"))
    grid = dasktune.Tuner(
        ramp,
        param_space={"lr": dasktune.grid_search([0.1, 0.3, 0.2]), "opt": "sgd"},
        tune_config=dasktune.TuneConfig(metric="acc", mode="max"),
        run_config=dasktune.RunConfig(name="ramp", storage_path=storage, verbose=0),
        client=client,
    ).fit()
    return grid.experiment_path


def test_summary_ranks_the_best_trials(experiment, capsys):
    assert main(["summary", experiment, "--top", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("3 trials, best by acc (max):")
    assert lines[2].split()[0] == "ramp_00001" and lines[3].split()[0] == "ramp_00002"
    assert len(lines) == 4


def test_summary_as_csv_and_json_with_another_metric(experiment, capsys):
    import io
    import json

    import pandas as pd

    assert (
        main(["summary", experiment, "--metric", "loss", "--mode", "min", "--format", "csv"]) == 0
    )
    table = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert list(table["trial"]) == ["ramp_00001", "ramp_00002", "ramp_00000"]
    assert table["config/lr"].tolist() == [0.3, 0.2, 0.1] and table["iter"].tolist() == [4] * 3
    assert main(["summary", experiment, "--format", "json", "--top", "1"]) == 0
    [best] = json.loads(capsys.readouterr().out)
    assert best["trial"] == "ramp_00001" and best["acc"] == pytest.approx(1.2)
    assert best["best acc"] == pytest.approx(1.2) and best["config/opt"] == "sgd"


def test_plot_saves_curves_and_parallel_coordinates(experiment, tmp_path, capsys):
    for kind in ("curves", "parallel"):
        target = tmp_path / f"{kind}.png"
        assert main(["plot", experiment, "-o", str(target), "--kind", kind]) == 0
        assert capsys.readouterr().out.strip() == str(target)
        assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and target.stat().st_size > 5000


def test_a_path_that_is_not_an_experiment_is_a_clear_error(experiment, tmp_path, capsys):
    storage = os.path.dirname(experiment)
    for command in (["summary"], ["plot", "-o", str(tmp_path / "x.png")], ["dashboard"]):
        assert main([*command[:1], storage, *command[1:]]) == 2
        err = capsys.readouterr().err
        assert f"dasktune {command[0]}: {storage} is not a dasktune experiment directory" in err
        assert f"holding 1 experiment(s): ramp. Pass one of them, e.g. {experiment}" in err
    assert main(["summary", str(tmp_path / "nowhere")]) == 2
    assert "It does not exist." in capsys.readouterr().err
    assert main(["summary", experiment, "--metric", "nope"]) == 0  # a metric nobody reported:
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split()[:5] == ["trial", "status", "iter", "nope", "best"]
    for line in lines[2:]:  # shown as missing in both its columns, not a crash or "None"
        assert line.split()[3:5] == ["-", "-"], line
    assert len(lines) == 5


def test_each_subcommand_has_help(capsys):
    for command in ("summary", "plot", "dashboard", "port"):
        with pytest.raises(SystemExit) as exit_:
            main([command, "--help"])
        assert exit_.value.code == 0
        out = capsys.readouterr().out
        assert out.startswith(f"usage: dasktune {command}") and "Exit status" in out


def test_the_dashboard_port_taken_is_a_clear_error(experiment, capsys):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["dashboard", experiment, "--port", str(port)]) == 2
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err


def test_an_experiment_in_its_first_seconds_is_read_from_its_journal(experiment, tmp_path):
    """Before experiment_state.json is first written (after 5 s), the journal says it all."""
    import shutil

    from dasktune.analysis import ExperimentAnalysis

    copy = tmp_path / "young"
    shutil.copytree(experiment, copy)
    os.remove(copy / "experiment_state.json")
    analysis = ExperimentAnalysis(copy)
    assert analysis.default_metric == "acc" and len(analysis.trials) == 3
    assert analysis.get_best_config() == {"lr": 0.3, "opt": "sgd"}
    assert analysis.best_result["acc"] == pytest.approx(1.2)
