"""``port_source``: Ray Tune scripts of several shapes, ported line by line (pure, no cluster)."""

from __future__ import annotations

import ast
import difflib
import importlib
import textwrap

import pytest

from dasktune.porting import AVAILABLE, port_source


def port(source: str):
    return port_source(textwrap.dedent(source).lstrip("\n"))


def ported(source: str) -> str:
    result = port(source)
    ast.parse(result.ported)  # whatever else, the output is Python
    return result.ported


def changed_lines(result) -> tuple[list[str], list[str]]:
    """The lines the port removed and those it added."""
    diff = list(difflib.ndiff(result.original.splitlines(), result.ported.splitlines()))
    return (
        [line[2:] for line in diff if line.startswith("- ")],
        [line[2:] for line in diff if line.startswith("+ ")],
    )


def constructs(result) -> list[str]:
    return [p.construct for p in result.problems]


def test_every_name_the_tables_promise_exists_in_dasktune():
    pytest.importorskip("hyperopt")
    pytest.importorskip("optuna")
    for module, names in AVAILABLE.items():
        loaded = importlib.import_module(module)
        missing = sorted(n for n in names if not hasattr(loaded, n))
        assert not missing, f"{module} lacks {missing}"


def test_function_trainable_with_train_report_and_tune_imports():
    source = """
        import os  # stays
        from ray import train, tune
        from ray.tune.schedulers import ASHAScheduler  # the scheduler


        def objective(config):
            for step in range(10):
                train.report({"loss": config["lr"] / (step + 1)})


        tuner = tune.Tuner(
            objective,
            tune_config=tune.TuneConfig(scheduler=ASHAScheduler(), metric="loss", mode="min"),
            run_config=train.RunConfig(stop={"training_iteration": 5}),  # keep me
        )
    """
    result = port(source)
    # Only the lines that had to change did; the comments on them stay.
    assert changed_lines(result) == (
        [
            "from ray import train, tune",
            "from ray.tune.schedulers import ASHAScheduler  # the scheduler",
            '        train.report({"loss": config["lr"] / (step + 1)})',
            '    run_config=train.RunConfig(stop={"training_iteration": 5}),  # keep me',
        ],
        [
            "import dasktune as tune",
            "from dasktune.schedulers import ASHAScheduler  # the scheduler",
            '        tune.report({"loss": config["lr"] / (step + 1)})',
            '    run_config=tune.RunConfig(stop={"training_iteration": 5}),  # keep me',
        ],
    )
    assert port(source).problems == []


def test_air_session_report_and_context_functions():
    source = """
        from ray import air, tune
        from ray.air import session


        def objective(config):
            session.report({"x": 1}, checkpoint=air.Checkpoint.from_directory("."))
            print(session.get_trial_id(), session.get_trial_dir())
            return session.get_checkpoint()


        run_config = air.RunConfig(failure_config=air.FailureConfig(max_failures=2))
    """
    text = ported(source)
    assert "import dasktune as tune\n" in text
    assert "ray" not in text.replace("from dasktune", "")
    assert 'tune.report({"x": 1}, checkpoint=tune.Checkpoint.from_directory("."))' in text
    assert "print(tune.get_context().get_trial_id(), tune.get_context().get_trial_dir())" in text
    assert "return tune.get_checkpoint()" in text
    assert "tune.RunConfig(failure_config=tune.FailureConfig(max_failures=2))" in text


def test_train_alone_brings_a_tune_import():
    text = ported("""
        from ray import train

        def f(config):
            train.report({"a": 1})
    """)
    assert text.startswith("import dasktune as tune\n")
    assert 'tune.report({"a": 1})' in text


def test_the_name_tune_taken_by_the_script_uses_dasktune():
    text = ported("""
        from ray import train
        tune = "my variable"

        def f(config):
            train.report({"a": tune})
    """)
    assert text.startswith("import dasktune\n")
    assert 'dasktune.report({"a": tune})' in text


def test_class_trainable_and_names_imported_from_ray_train():
    source = """
        import os
        from ray.train import Checkpoint, RunConfig, report
        from ray.tune import Trainable, Tuner, TuneConfig as TC


        class MyTrainable(Trainable):
            def step(self):
                return {"loss": 1.0}


        Tuner(MyTrainable, tune_config=TC(num_samples=2), run_config=RunConfig()).fit()
    """
    text = ported(source)
    assert "from dasktune import Checkpoint, RunConfig, report\n" in text
    assert "from dasktune import Trainable, Tuner, TuneConfig as TC\n" in text
    assert "class MyTrainable(Trainable):" in text
    assert text.count("\n") == textwrap.dedent(source).lstrip("\n").count("\n")


def test_tune_run_script_with_import_ray_and_ray_init_address():
    source = """
        import argparse
        import ray
        from ray import tune

        parser = argparse.ArgumentParser()
        parser.add_argument("--address")
        args = parser.parse_args()
        ray.init(address=args.address)
        analysis = tune.run(lambda config: None, config={"x": 1})
        print(analysis.best_config)
        ray.shutdown()
    """
    result = port(source)
    text = result.ported
    code = "\n".join(line.split("#")[0] for line in text.splitlines())
    assert "import ray" not in code and "ray." not in code
    assert "import distributed\nimport dasktune as tune\n" in text
    assert (
        "if args.address:  # dasktune port: was ray.init(address=args.address)\n"
        "    dask_client = distributed.Client(args.address)\n"
    ) in text
    assert "shutdown" not in text
    assert result.problems == []
    assert any("distributed.Client" in note for _, note in result.notes)


def test_ray_init_with_a_literal_address_and_with_auto():
    text = ported("""
        import ray
        ray.init("tcp://10.0.0.1:8786")
    """)
    assert (
        'dask_client = distributed.Client("tcp://10.0.0.1:8786")  '
        '# dasktune port: was ray.init("tcp://10.0.0.1:8786")'
    ) in text
    result = port("""
        import ray
        ray.init(address="auto")
    """)
    assert "distributed.Client('tcp://<scheduler>:8786')" in result.ported
    assert "ray.init(address=" not in result.ported.replace("# dasktune port: ray.init(", "")
    assert any("Ray cluster's address" in note for _, note in result.notes)


def test_ray_init_with_resources_leaves_a_comment_and_keeps_blocks_whole():
    source = """
        import ray
        from ray import tune

        if __name__ == "__main__":
            if smoke_test:
                ray.init(num_cpus=2, num_gpus=0)
            try:
                tune.run(f)
            finally:
                ray.shutdown()
    """
    text = ported(source)
    assert (
        textwrap.dedent("""\
        import dasktune as tune

        if __name__ == "__main__":
            if smoke_test:
                pass
                # dasktune port: ray.init(num_cpus=2, num_gpus=0) removed: dasktune starts one
        """)
        in text
    )
    assert "    finally:\n        pass\n" in text
    assert "import ray" not in text


def test_aliases_and_import_forms():
    assert ported("from ray import tune as rt\nrt.run(f)\n") == (
        "import dasktune as rt\nrt.run(f)\n"
    )
    assert ported("import ray.tune as tune\ntune.run(f)\n") == (
        "import dasktune as tune\ntune.run(f)\n"
    )
    text = ported("""
        import ray
        import ray.tune

        def f(config):
            ray.train.report({"a": 1})

        ray.tune.Tuner(f, tune_config=ray.tune.TuneConfig(
            scheduler=ray.tune.schedulers.ASHAScheduler())).fit()
    """)
    assert "import ray" not in text
    assert "import dasktune.schedulers" in text and "import dasktune as tune" in text
    assert 'tune.report({"a": 1})' in text
    assert "tune.Tuner(f, tune_config=tune.TuneConfig(\n" in text
    assert "scheduler=dasktune.schedulers.ASHAScheduler())).fit()" in text


@pytest.mark.parametrize(
    "source, expected",
    [
        # PyTorch's Ray Tune tutorial pickles its checkpoints with Ray's copy of cloudpickle
        ("import ray.cloudpickle as pickle\npickle.dumps(1)\n", "import cloudpickle as pickle\n"),
        ("from ray import cloudpickle\ncloudpickle.dumps(1)\n", "import cloudpickle\n"),
        ("from ray.cloudpickle import dumps, loads\n", "from cloudpickle import dumps, loads\n"),
    ],
)
def test_ray_s_cloudpickle_becomes_cloudpickle(source, expected):
    result = port(source)
    assert result.ported.startswith(expected) and not result.problems
    exec(compile(result.ported, "ported", "exec"), {})  # it imports and runs


def test_ray_1_module_paths_port_to_the_search_modules():
    """Ray 1.x scripts (still most of those on the web) import searchers from
    ray.tune.suggest, domains from ray.tune.sample and Trial from ray.tune.trial."""
    pytest.importorskip("hyperopt")
    pytest.importorskip("optuna")
    result = port("""
        from ray.tune.suggest import ConcurrencyLimiter
        from ray.tune.suggest.hyperopt import HyperOptSearch
        from ray.tune.suggest.optuna import OptunaSearch
        from ray.tune.suggest.basic_variant import BasicVariantGenerator
        from ray.tune.suggest.suggestion import Searcher
        from ray.tune.sample import Categorical, Domain
        from ray.tune.trial import Trial
        import ray.tune.suggest.hyperopt as hs
        searcher = ConcurrencyLimiter(hs.HyperOptSearch(), max_concurrent=2)
    """)
    assert not result.problems, result.problems
    text = result.ported
    assert "from dasktune.search import ConcurrencyLimiter\n" in text
    assert "from dasktune.search.hyperopt import HyperOptSearch\n" in text
    assert "from dasktune.search.optuna import OptunaSearch\n" in text
    assert "from dasktune.search import BasicVariantGenerator\n" in text
    assert "from dasktune.search import Searcher\n" in text
    assert "from dasktune.search import Categorical, Domain\n" in text
    assert "from dasktune.trial import Trial\n" in text
    namespace: dict = {}
    exec(compile(textwrap.dedent(text), "ported", "exec"), namespace)  # it imports and runs
    assert type(namespace["searcher"]).__name__ == "ConcurrencyLimiter"


def test_multi_name_imports_are_split_where_they_must_be():
    result = port("""
        from ray.tune import Tuner, register_trainable, with_resources
        from ray.tune.search import ConcurrencyLimiter, BasicVariantGenerator
        from ray.tune.search.hyperopt import HyperOptSearch
        from ray.tune.search.optuna import OptunaSearch
        from ray.tune.stopper import (
            MaximumIterationStopper,
            TrialPlateauStopper,
        )
        from ray.tune.logger import LoggerCallback
        from ray.tune.result import TRAINING_ITERATION
        register_trainable("f", f)
    """)
    text = result.ported
    assert (
        "from dasktune import Tuner, with_resources\nfrom ray.tune import register_trainable\n"
    ) in text
    assert "from dasktune.search import ConcurrencyLimiter, BasicVariantGenerator\n" in text
    assert "from dasktune.search.hyperopt import HyperOptSearch\n" in text
    assert "from dasktune.search.optuna import OptunaSearch\n" in text
    assert (
        "from dasktune.stopper import (\n    MaximumIterationStopper,\n"
        "    TrialPlateauStopper,\n)\n"
    ) in text, "a multi-line import keeps its layout"
    assert "from dasktune.logger import LoggerCallback\n" in text
    assert "TRAINING_ITERATION = 'training_iteration'  # dasktune port: was " in text
    assert constructs(result) == ["ray.tune.register_trainable"], "reported once, at its import"
    assert "no registry of trainables" in result.problems[0].reason


@pytest.mark.parametrize(
    "source, construct, reason",
    [
        ("import ray\nf = ray.remote(g)\n", "ray.remote", "distributed.Client.submit"),
        ("import ray\nx = ray.get(ref)\n", "ray.get", "distributed.Client.submit"),
        ("import ray\nds = ray.data.read_csv('x')\n", "ray.data", "tune.with_parameters"),
        (
            "from ray import tune\nt = tune.with_resources(f, tune.PlacementGroupFactory([{}]))\n",
            "tune.PlacementGroupFactory",
            "placement groups",
        ),
        (
            "from ray.train.torch import TorchTrainer\n",
            "ray.train.torch.TorchTrainer",
            "Ray Train's distributed trainers",
        ),
        ("from ray.train import ScalingConfig\n", "ray.train.ScalingConfig", "Ray Train"),
        (
            "from ray.tune.search.bayesopt import BayesOptSearch\n",
            "ray.tune.search.bayesopt.BayesOptSearch",
            "HyperOptSearch and OptunaSearch",
        ),
        (
            "from ray.tune.schedulers.hb_bohb import HyperBandForBOHB\n",
            "ray.tune.schedulers.hb_bohb.HyperBandForBOHB",
            "BOHB is not in dasktune",
        ),
        (
            "from ray.tune.integration.keras import TuneReportCallback\n",
            "ray.tune.integration.keras.TuneReportCallback",
            "callback of your own",
        ),
        (
            "from ray.tune import ResumeConfig\n",
            "ray.tune.ResumeConfig",
            "Tuner.restore(path, trainable",
        ),
        (
            "import ray\nif not ray.is_initialized():\n    ray.init()\n",
            "ray.is_initialized",
            "Ray runtime",
        ),
    ],
)
def test_unportable_constructs_are_listed_with_the_way_out(source, construct, reason):
    result = port(source)
    assert construct in constructs(result), result.problems
    problem = next(p for p in result.problems if p.construct == construct)
    assert reason in problem.reason
    ast.parse(result.ported)


def test_restoring_and_dict_checkpoints_port_as_they_are():
    result = port("""
        from ray import tune
        from ray.air import Checkpoint, session
        if tune.Tuner.can_restore("/x"):
            tuner = tune.Tuner.restore("/x", f, resume_errored=True)
        session.report({"a": 1}, checkpoint=Checkpoint.from_dict({"e": 1}))
        state = session.get_checkpoint().to_dict()
    """)
    assert not result.problems, result.problems
    assert 'tune.Tuner.restore("/x", f, resume_errored=True)' in result.ported
    assert 'tune.report({"a": 1}, checkpoint=Checkpoint.from_dict({"e": 1}))' in result.ported
    assert "state = tune.get_checkpoint().to_dict()" in result.ported


def test_unported_ray_uses_keep_import_ray():
    result = port("""
        import ray
        from ray import tune

        @ray.remote
        def helper():
            return 1

        tune.run(f)
    """)
    assert result.ported.startswith("import ray\nimport dasktune as tune\n")
    assert constructs(result) == ["ray.remote"] and result.problems[0].line == 4


def test_ray_1_report_keywords_become_a_dict():
    result = port("""
        from ray import tune

        def f(config):
            tune.report(mean_loss=loss(config), acc=0.5)
            tune.report(done=True)
    """)
    assert "tune.report({'mean_loss': loss(config), 'acc': 0.5})" in result.ported
    assert "tune.report({'done': True})" in result.ported
    assert result.notes


def test_example_helpers_come_from_beside_the_script():
    result = port("""
        import ray
        from ray.tune.examples.mnist_pytorch import (
            ConvNet,
            get_data_loaders,
        )

        def f(config):
            ray.tune.examples.mnist_pytorch.train_func(model)
    """)
    text = result.ported
    assert "from mnist_pytorch import (\n    ConvNet,\n    get_data_loaders,\n)" in text
    assert "import mnist_pytorch\n" in text and "    mnist_pytorch.train_func(model)" in text
    assert result.problems == []
    assert all("port ray/tune/examples/mnist_pytorch.py too" in n for _, n in result.notes)


def test_imports_inside_functions_and_main_blocks():
    text = ported("""
        def main():
            from ray import tune
            from ray.tune.schedulers import HyperBandScheduler
            import ray
            ray.init()
            return tune.run(f, scheduler=HyperBandScheduler())
    """)
    assert text == textwrap.dedent("""\
        def main():
            import dasktune as tune
            from dasktune.schedulers import HyperBandScheduler
            return tune.run(f, scheduler=HyperBandScheduler())
    """)


def test_pb2_is_ported_from_its_module_and_the_package():
    result = port("""
        from ray import tune
        from ray.tune.schedulers.pb2 import PB2
        from ray.tune.schedulers import PB2 as Bandits
        a = PB2(hyperparam_bounds={"lr": [1e-4, 1e-1]})
        b = tune.schedulers.PB2(hyperparam_bounds={"lr": [1e-4, 1e-1]})
    """)
    assert result.problems == []
    lines = result.ported.splitlines()
    assert "from dasktune.schedulers import PB2" in lines
    assert "from dasktune.schedulers import PB2 as Bandits" in lines
    assert 'b = dasktune.schedulers.PB2(hyperparam_bounds={"lr": [1e-4, 1e-1]})' in lines


def test_ray_s_mock_trainable_and_save_restore_check_come_from_dasktune_utils():
    result = port("""
        from ray.tune.utils.mock_trainable import MyTrainableClass, MOCK_ERROR_KEY
        from ray.tune.utils import validate_save_restore
        validate_save_restore(MyTrainableClass)
    """)
    assert result.problems == []
    lines = result.ported.splitlines()
    assert "from dasktune.utils.mock_trainable import MyTrainableClass, MOCK_ERROR_KEY" in lines
    assert "from dasktune.utils import validate_save_restore" in lines


def test_other_ray_tune_utils_names_are_listed_with_the_way_out():
    result = port("""
        from ray.tune.utils import flatten_dict
    """)
    assert constructs(result) == ["ray.tune.utils.flatten_dict"]
    assert "mock_trainable" in result.problems[0].reason


def test_a_script_without_ray_is_left_alone():
    result = port("import os\nprint(os.getcwd())\n")
    assert not result.changed and result.problems == [] and result.diff() == ""


def test_non_ascii_text_and_offsets():
    text = ported("""
        from ray import train
        msg = "ünïcödé €"; train.report({"é": 1, "msg": msg})
    """)
    assert 'msg = "ünïcödé €"; tune.report({"é": 1, "msg": msg})' in text


def test_the_diff_shows_only_the_changed_lines():
    result = port("""
        import os
        from ray import tune
        x = 1
    """)
    diff = result.diff("a.py")
    assert diff.startswith("--- a.py\n+++ a.py (ported to dasktune)\n")
    assert "-from ray import tune\n+import dasktune as tune\n" in diff
    assert "-import os" not in diff and "-x = 1" not in diff


def test_invalid_python_raises_syntax_error():
    with pytest.raises(SyntaxError):
        port_source("from ray import tune\nif x\n")


def test_torchvision_mnist_gets_the_offline_fallback_and_nothing_else_does():
    result = port("""
        from ray import tune
        from torchvision import datasets, transforms

        data = datasets.MNIST("~/data", train=True, download=True)
    """)
    assert "from torchvision import datasets, transforms" in result.ported, "two names: kept"
    result = port("""
        from ray import tune
        from torchvision import datasets

        data = datasets.MNIST("~/data", train=True, download=True)
    """)
    assert "from dasktune import datasets\n" in result.ported
    assert any("fallback" in note for _, note in result.notes)
    result = port("""
        from ray import tune
        from torchvision import datasets

        data = datasets.CIFAR10("~/data", download=True)
    """)
    assert "from torchvision import datasets\n" in result.ported


def test_imports_the_rewritten_code_needs_go_before_the_first_ray_import():
    text = ported("""
        import os
        from ray.tune.schedulers import (  # a comment
            ASHAScheduler,
        )
        from ray import train

        def f(config):
            train.report({"a": 1})
    """)
    assert text.startswith(
        "import os\nimport dasktune as tune\nfrom dasktune.schedulers import ("
        "  # a comment\n    ASHAScheduler,\n)\n\ndef f(config):\n"
    )
    assert 'tune.report({"a": 1})' in text


def test_modules_used_as_objects():
    text = ported("""
        import ray
        tuning = ray.tune
        tuning.run(f)
    """)
    assert "tuning = tune\n" in text and text.startswith("import dasktune as tune\n")
    result = port("""
        from ray import train
        helpers = [train]
    """)
    assert constructs(result) == ["train"]
    assert "dasktune has no module of that name" in result.problems[0].reason
