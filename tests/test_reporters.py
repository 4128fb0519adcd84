"""Progress reporters with Ray Tune's names: arguments, text, and how the console uses them."""

from __future__ import annotations

import io

import pytest

import dasktune as tune
from dasktune.execution.console import ConsoleReporter
from dasktune.reporters import CLIReporter, JupyterNotebookReporter, ProgressReporter
from dasktune.trial import Trial, TrialStatus


def trial(name: str, status=TrialStatus.TERMINATED, **last) -> Trial:
    return Trial(
        trial_id=name,
        config={"lr": 0.01, "net": {"width": 64, "depth": 2}, "opt": "sgd-with-a-long-name"},
        trial_name=name,
        status=status,
        local_path=f"/exp/{name}",
        last_result={"training_iteration": 3, **last},
    )


TRIALS = [
    trial("t_0", loss=0.5, accuracy=0.8),
    trial("t_1", loss=0.2, accuracy=0.9),
    trial("t_2", TrialStatus.ERROR, loss=0.9),
]


def rows(text: str) -> list[list[str]]:
    """The table's lines after its header and rule, split into cells."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("trial")) + 2
    return [line.split() for line in lines[start:] if line.startswith("t_")]


def test_the_chosen_columns_with_their_headers_in_the_chosen_order():
    reporter = CLIReporter(
        metric_columns={"accuracy": "acc", "loss": "Loss"},
        parameter_columns=["net/width", "lr"],
    )
    table = reporter.table(TRIALS)
    assert table.splitlines()[0].split() == [
        "trial",
        "status",
        "net/width",
        "lr",
        "iter",
        "acc",
        "Loss",
    ]
    assert rows(table)[1] == ["t_1", "TERMINATED", "64", "0.01", "3", "0.9", "0.2"]
    assert rows(table)[2] == ["t_2", "ERROR", "64", "0.01", "3", "0.9"], "no accuracy: blank"


def test_added_columns_and_a_column_twice():
    reporter = CLIReporter(metric_columns=["loss"])
    reporter.add_metric_column("accuracy", "acc")
    reporter.add_parameter_column("lr", "learning rate")
    header = reporter.table(TRIALS).splitlines()[0]
    assert header.split() == ["trial", "status", "learning", "rate", "iter", "loss", "acc"]
    with pytest.raises(ValueError, match="'loss' is shown already"):
        reporter.add_metric_column("loss")


def test_without_columns_the_metric_and_reported_numbers_are_inferred():
    reporter = CLIReporter(infer_limit=1)
    reporter.setup(metric="accuracy", mode="max")
    header = reporter.table(TRIALS).splitlines()[0].split()
    assert header[-1] == "accuracy" and "loss" not in header, "infer_limit caps the metrics"
    assert "net/depth" in header and "opt" in header, "nested config keys are flattened"


def test_rows_sorted_by_the_metric_cut_to_max_rows_and_long_values_cut():
    reporter = CLIReporter(
        metric_columns=["loss"],
        parameter_columns=["opt"],
        metric="loss",
        mode="min",
        sort_by_metric=True,
        max_progress_rows=2,
        max_column_length=8,
    )
    table = reporter.table(TRIALS)
    assert [r[0] for r in rows(table)] == ["t_1", "t_0"]
    assert rows(table)[0][2] == "sgd-w..."
    assert table.splitlines()[-1].startswith("... 1 more trials")


def test_reports_are_paced_and_the_end_always_reports():
    reporter = CLIReporter(max_report_frequency=3600)
    assert reporter.should_report(TRIALS)
    assert not reporter.should_report(TRIALS), "an hour has not passed"
    assert reporter.should_report(TRIALS, done=True)


def test_the_final_report_has_the_table_and_the_failed_trials(capsys):
    reporter = CLIReporter(metric_columns=["loss"])
    reporter.report(TRIALS, False, "status line")
    assert capsys.readouterr().out == "status line\n", "no intermediate tables at verbose 1"
    reporter.report(TRIALS, True, "status line -- finished")
    out = capsys.readouterr().out
    assert out.startswith("status line -- finished\ntrial")
    assert "1 trial(s) failed:\n  t_2: /exp/t_2/error.txt" in out
    tables = CLIReporter(metric_columns=["loss"], print_intermediate_tables=True)
    tables.report(TRIALS, False, "status line")
    assert len(rows(capsys.readouterr().out)) == 3


def test_the_notebook_reporter_prints_outside_a_notebook(capsys):
    reporter = JupyterNotebookReporter(True, ["loss"], max_report_frequency=1)
    reporter.report(TRIALS, True, "done")
    assert rows(capsys.readouterr().out)[0][:2] == ["t_0", "TERMINATED"]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"metric_columns": 3}, "metric_columns is 3; it must be a list of keys"),
        ({"max_report_frequency": 0}, "max_report_frequency is 0; it must be a number above 0"),
        ({"mode": "maximum"}, "mode is 'maximum'; it must be 'min', 'max' or None"),
    ],
)
def test_bad_arguments_are_clear_errors(kwargs, message):
    with pytest.raises((TypeError, ValueError), match=message):
        CLIReporter(**kwargs)


class Recorder(ProgressReporter):
    def __init__(self) -> None:
        self.calls: list[tuple[int, bool, tuple]] = []
        self.setup_with: dict = {}

    def setup(self, **kwargs):
        self.setup_with = kwargs

    def should_report(self, trials, done=False):
        return True

    def report(self, trials, done, *sys_info):
        self.calls.append((len(trials), done, sys_info))


class Controller:
    def __init__(self, trials):
        self.trials = trials

    def best_trial(self, metric, mode):
        return None


def test_the_console_hands_its_output_to_the_reporter():
    stream = io.StringIO()
    recorder = Recorder()
    console = ConsoleReporter(1, "loss", "min", stream=stream, num_samples=3, reporter=recorder)
    console.start()
    assert recorder.setup_with["total_samples"] == 3
    assert (recorder.setup_with["metric"], recorder.setup_with["mode"]) == ("loss", "min")
    console.update(Controller(TRIALS), active=0)
    console.summary(TRIALS)
    assert [(n, done) for n, done, _ in recorder.calls] == [(3, False), (3, True)]
    assert "3/3 trials done" in recorder.calls[-1][2][0]
    assert stream.getvalue() == "", "dasktune's own lines and table gave way"


def test_verbose_0_silences_the_reporter_too():
    recorder = Recorder()
    console = ConsoleReporter(0, "loss", "min", stream=io.StringIO(), reporter=recorder)
    console.start()
    console.update(Controller(TRIALS), active=0)
    console.summary(TRIALS)
    assert recorder.calls == [] and recorder.setup_with == {}


def squares(config):
    for step in range(1, 4):
        tune.report({"loss": config["x"] ** 2 / step, "accuracy": 1 / (1 + config["x"] ** 2)})


def test_a_tune_run_script_with_a_cli_reporter_and_one_of_its_own(client, storage, capsys):
    reporter = CLIReporter(metric_columns=["loss", "training_iteration"], parameter_columns=["x"])
    tune.run(
        squares,
        config={"x": tune.grid_search([1, 2, 3])},
        metric="loss",
        mode="min",
        progress_reporter=reporter,
        storage_path=storage,
        client=client,
    )
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if line.startswith("trial"))
    assert header.split() == ["trial", "status", "x", "loss", "training_iteration"]
    assert sorted(r[2] for r in rows(out.replace("squares_", "t_"))) == ["1", "2", "3"]
    assert "accuracy" not in out, "only the chosen metrics"

    recorder = Recorder()
    grid = tune.Tuner(
        squares,
        param_space={"x": tune.grid_search([1, 2])},
        run_config=tune.RunConfig(storage_path=storage, progress_reporter=recorder),
        client=client,
    ).fit()
    assert grid.num_errors == 0
    assert recorder.calls[-1][:2] == (2, True), "the end is reported once, last"
    assert [done for _, done, _ in recorder.calls].count(True) == 1
    assert all(n == 2 for n, _, _ in recorder.calls[1:])


NOTEBOOK_CELL = """
import dasktune as tune

def squares(config):
    for step in range(1, 4):
        tune.report({"loss": config["x"] ** 2 / step})

reporter = tune.JupyterNotebookReporter(overwrite=True, metric_columns=["loss"])
grid = tune.Tuner(
    squares,
    param_space={"x": tune.grid_search([1, 2, 3])},
    run_config=tune.RunConfig(storage_path=STORAGE, progress_reporter=reporter),
).fit()
print("errors", grid.num_errors)
"""


def test_the_notebook_reporter_updates_one_display_in_a_real_kernel(tmp_path, monkeypatch):
    for module in ("nbformat", "nbclient", "ipykernel"):
        pytest.importorskip(module)
    import json
    import sys

    import nbformat
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager
    from nbclient import NotebookClient

    kernels = tmp_path / "kernels" / "dasktune-tests"
    kernels.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (kernels / "kernel.json").write_text(json.dumps({"argv": argv, "language": "python"}))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    nb = nbformat.v4.new_notebook()
    source = f"STORAGE = {str(tmp_path / 'results')!r}\n" + NOTEBOOK_CELL
    nb.cells = [nbformat.v4.new_code_cell(source)]
    km = AsyncKernelManager(
        kernel_name="dasktune-tests",
        kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(tmp_path / "kernels")]),
    )
    NotebookClient(nb, km=km, timeout=240).execute(cleanup_kc=True)
    outputs = nb.cells[0].outputs
    assert not [o for o in outputs if o.output_type == "error"], outputs
    shown = [o for o in outputs if o.output_type == "display_data"]
    assert len(shown) == 1, "overwrite: one display, updated in place"
    page = shown[0].data["text/html"]
    assert page.startswith("<pre") and "3/3 trials done -- finished" in page
    assert "loss" in page and page.count("TERMINATED") == 3
    text = "".join(o.text for o in outputs if o.output_type == "stream")
    assert "errors 0" in text and "TERMINATED" not in text, "the table went to the display"
