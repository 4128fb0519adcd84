"""``port_source``: Ray Tune scripts of several shapes, ported line by line (pure, no cluster)."""

from __future__ import annotations

import ast
import difflib
import importlib
import pathlib
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
    for library in ("hyperopt", "optuna", "xgboost", "lightgbm"):
        pytest.importorskip(library)
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


def test_ray_put_and_get_of_one_value_become_the_value():
    """A search space holding ray.put(data) and a trainable calling ray.get on it (found in
    a real PBT script): without an object store the value itself travels."""
    result = port("""
        import ray
        from ray import tune
        import numpy as np
        data = np.arange(5)
        def train(config):
            d = ray.get(config["data"])
            return float(d.sum()) * config["x"]
        space = {"x": 2, "data": ray.put(data)}
        answer = train(space)
    """)
    assert not result.problems, result.problems
    assert "import ray\n" not in result.ported
    assert 'd = (config["data"])' in result.ported and '"data": (data)' in result.ported
    namespace: dict = {}
    exec(compile(textwrap.dedent(result.ported), "ported", "exec"), namespace)
    assert namespace["answer"] == 20.0


def test_placement_group_factories_port_to_dasktune_s():
    result = port("""
        from ray import tune
        from ray.tune.execution.placement_groups import PlacementGroupFactory
        def f(config):
            pass
        a = tune.with_resources(f, tune.PlacementGroupFactory([{"CPU": 2, "GPU": 0}]))
        b = tune.with_resources(f, PlacementGroupFactory([{"CPU": 1}, {"CPU": 1}]))
    """)
    assert not result.problems, result.problems
    assert "from dasktune import PlacementGroupFactory\n" in result.ported
    namespace: dict = {}
    exec(compile(textwrap.dedent(result.ported), "ported", "exec"), namespace)
    assert namespace["a"]._dasktune_resources == {"CPU": 2.0}
    assert namespace["b"]._dasktune_resources == {"CPU": 2.0}, "bundles summed: one process"


def test_ray_1_checkpoint_dir_is_ported_as_it_is():
    result = port("""
        from ray import tune
        def train(config, checkpoint_dir=None):
            with tune.checkpoint_dir(step=1) as d:
                pass
    """)
    assert not result.problems, result.problems
    assert "import dasktune as tune\n" in result.ported
    assert "with tune.checkpoint_dir(step=1) as d:" in result.ported


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
    assert "from dasktune import Tuner, with_resources\n" in text
    assert "register_trainable = unported('ray.tune.register_trainable')" in text
    assert "from dasktune.porting import unported\n" in text
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
        ("import ray\nx = ray.get(ref, timeout=3)\n", "ray.get", "ray.get(ref) of one value"),
        ("import ray\nds = ray.data.read_csv('x')\n", "ray.data", "tune.with_parameters"),
        (
            "from ray.util.placement_group import placement_group\npg = placement_group([{}])\n",
            "ray.util.placement_group.placement_group",
            "placement groups",
        ),
        (
            "from ray.train.torch import TorchTrainer\ntrainer = TorchTrainer(f)\n",
            "ray.train.torch.TorchTrainer",
            "Ray Train's distributed trainers",
        ),
        (
            "from ray.train import ScalingConfig\nscaling = ScalingConfig(num_workers=2)\n",
            "ray.train.ScalingConfig",
            "Ray Train",
        ),
        (
            "from ray.tune.search.bayesopt import BayesOptSearch\nsearch = BayesOptSearch()\n",
            "ray.tune.search.bayesopt.BayesOptSearch",
            "HyperOptSearch and OptunaSearch",
        ),
        (
            "from ray.tune.schedulers.hb_bohb import HyperBandForBOHB\nHyperBandForBOHB()\n",
            "ray.tune.schedulers.hb_bohb.HyperBandForBOHB",
            "BOHB is not in dasktune",
        ),
        (
            "from ray.tune.integration.keras import TuneReportCallback\n"
            "callbacks = [TuneReportCallback()]\n",
            "ray.tune.integration.keras.TuneReportCallback",
            "callback of your own",
        ),
        (
            "from ray.tune import ResumeConfig\nresume = ResumeConfig()\n",
            "ray.tune.ResumeConfig",
            "Tuner.restore(path, trainable",
        ),
        ("import ray\nprint(ray.cluster_resources())\n", "ray.cluster_resources", "Ray runtime"),
        (
            "import ray, atexit\natexit.register(ray.shutdown)\n",
            "ray.shutdown",
            "ray.shutdown is ported only where it is called (ray.shutdown() is removed)",
        ),
        (
            "import ray\nstart = ray.init\n",
            "ray.init",
            "ported only where it is called (ray.init(...) is removed, or becomes "
            "distributed.Client(address))",
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
        flat = flatten_dict({"a": {"b": 1}})
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


@pytest.mark.parametrize(
    "imports, expected",
    [
        ("from torchvision import datasets\n", ["from dasktune import datasets"]),
        (  # Ray's own MNIST example
            "from torchvision import datasets, transforms\n",
            ["from dasktune import datasets", "from torchvision import transforms"],
        ),
        (
            "from torchvision import transforms, datasets as dsets, models\n",
            [
                "from dasktune import datasets as dsets",
                "from torchvision import transforms, models",
            ],
        ),
        (
            "from torchvision import (\n    datasets,  # the data\n    transforms,\n)\n",
            ["from dasktune import datasets", "from torchvision import transforms"],
        ),
        ("import torchvision.datasets as datasets\n", ["from dasktune import datasets"]),
        (
            "import torchvision.datasets as dsets, torchvision.transforms as transforms\n",
            [
                "from dasktune import datasets as dsets",
                "import torchvision.transforms as transforms",
            ],
        ),
        ("from torchvision.datasets import MNIST\n", ["from dasktune.datasets import MNIST"]),
    ],
)
def test_torchvision_mnist_imports_get_the_offline_fallback(imports, expected):
    pytest.importorskip("torchvision")
    name = "MNIST" if "import MNIST" in imports else "dsets" if "dsets" in imports else "datasets"
    use = "MNIST" if name == "MNIST" else f"{name}.MNIST"
    script = (
        f"from ray import tune\n{imports}\n"
        f'def load():\n    return {use}("~/data", train=True, download=True)\n'
    )
    result = port_source(script)
    lines = result.ported.splitlines()
    assert lines[1 : 1 + len(expected)] == expected
    assert not any("torchvision" in line and "datasets" in line for line in lines)
    assert result.problems == []
    assert any("fallback" in note for _, note in result.notes)
    namespace: dict = {}
    exec(compile(result.ported, "ported", "exec"), namespace)  # the imports work
    mnist = namespace[name] if name == "MNIST" else namespace[name].MNIST
    assert mnist.__module__ == "dasktune.datasets"


@pytest.mark.parametrize(
    "imports, use",
    [
        ("from torchvision import datasets\n", 'datasets.CIFAR10("~/data", download=True)'),
        ("from torchvision import datasets, transforms\n", "datasets.CIFAR10"),
        ("from torchvision import datasets\n", "datasets"),  # passed on: anything may be used
        ("from torchvision.datasets import MNIST\n", "issubclass(MNIST, object)"),
    ],
)
def test_torchvision_datasets_used_beyond_mnist_stay_torchvision_s(imports, use):
    result = port_source(f"from ray import tune\n{imports}data = {use}\n")
    assert imports in result.ported
    assert not any("fallback" in note for _, note in result.notes)


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


# -- a Ray name the script binds itself ------------------------------------------------------


@pytest.mark.parametrize(
    "rebinding",
    [
        "def train(config):\n    tune.report({'loss': config['x']})\n",
        "async def train(config):\n    pass\n",
        "class train(tune.Trainable):\n    def step(self):\n        return {'loss': 1}\n",
        "train = lambda config: tune.report({'loss': config['x']})\n",
        "train: object = lambda config: None\n",
        "from os.path import join as train\n",
        "if True:\n    def train(config):\n        pass\n",
        "for train in [print]:\n    pass\n",
    ],
)
def test_a_ray_name_the_script_binds_itself_is_dropped_from_the_import(rebinding):
    source = (
        "from ray import train, tune\n\n"
        f"{rebinding}\n"
        "def trainable(config):\n"
        "    return train\n\n"
        "tuner = tune.Tuner(trainable, param_space={'x': 1})\n"
    )
    result = port_source(source)
    assert result.problems == []
    assert result.ported.startswith("import dasktune as tune\n\n")
    assert "ray" not in result.ported
    line = 4 if rebinding.startswith("if") else 3
    assert [n for _, n in result.notes] == [
        f"from ray import train dropped: the script binds train itself (line {line}), "
        "and its uses are of that train, as under Ray"
    ]
    namespace: dict = {}
    exec(compile(result.ported, "ported", "exec"), namespace)
    assert namespace["tune"].__name__ == "dasktune"
    assert namespace["trainable"]({}) is namespace["train"]
    assert type(namespace["tuner"]).__name__ == "Tuner"


def test_a_rebound_ray_name_used_in_functions_is_the_script_s_as_under_ray():
    source = """
        from ray import train, tune

        def objective(config):
            return train  # called after the module ran: the script's train, under Ray too

        def train(config):
            tune.report({"loss": 1.0})
    """
    result = port(source)
    assert result.problems == []
    assert changed_lines(result) == (["from ray import train, tune"], ["import dasktune as tune"])
    namespace: dict = {}
    exec(compile(result.ported, "ported", "exec"), namespace)
    assert namespace["objective"]({}) is namespace["train"]


def test_a_ray_name_used_before_the_script_rebinds_it_is_reported():
    result = port("""
        from ray import train

        run_config = train.RunConfig(name="exp")

        def train(config):
            pass
    """)
    assert constructs(result) == ["train"] and result.problems[0].line == 3
    assert result.problems[0].reason == (
        "the script uses train of from ray import train here, then binds train itself "
        "(line 5): rename its own train, so that each use says which it means."
    )


def test_a_fallback_for_a_missing_ray_or_a_local_name_is_no_rebinding():
    source = """
        try:
            from ray import train
        except ImportError:
            train = None

        def helper():
            train = 1  # a local name
            return train

        def load_data(train=True):  # as in the MNIST examples
            return (lambda train: train)(train)

        def objective(config):
            train.report({"loss": 1.0})
    """
    result = port(source)
    assert result.problems == [] and result.notes == []
    assert result.ported.startswith("import dasktune as tune\ntry:\n    pass\n")
    assert '    tune.report({"loss": 1.0})\n' in result.ported
    assert "train = 1" in result.ported and "(lambda train: train)(train)" in result.ported
    namespace: dict = {}
    exec(compile(result.ported, "ported", "exec"), namespace)
    assert namespace["helper"]() == 1 and namespace["load_data"](False) is False


# -- ray.init, ray.shutdown and ray.is_initialized as values ---------------------------------


def test_ray_init_as_a_value_and_is_initialized_port_to_values_that_run():
    source = """
        import argparse
        import ray
        from ray import tune

        args = argparse.Namespace(address=None)
        cluster_info = ray.init()
        context = ray.init(num_cpus=4)
        on_ray: object = ray.init(address="auto")
        client = ray.init(address=args.address)
        print("Ray started:", ray.init(ignore_reinit_error=True))
        if ray.is_initialized():
            ray.shutdown()
        if not ray.is_initialized(): ray.init()
        started = ray.is_initialized()
        if __name__ == "__main__":
            if not ray.is_initialized():
                ray.init(num_cpus=2)
            else:
                ray.shutdown()
    """
    result = port(source)
    assert result.problems == []
    tree = ast.parse(result.ported)
    assert not [n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id == "ray"]
    assert "import ray" not in result.ported
    lines = result.ported.splitlines()
    assert "cluster_info = None  # dasktune port: was ray.init()" in lines
    at = lines.index("context = None  # dasktune port: was ray.init(num_cpus=4)")
    assert lines[at - 3].startswith(
        "# dasktune port: ray.init(num_cpus=4) removed: dasktune starts one"
    )
    assert 'on_ray: object = None  # dasktune port: was ray.init(address="auto")' in lines
    assert "distributed.Client('tcp://<scheduler>:8786')." in result.ported
    assert (
        "client = distributed.Client(args.address) if args.address else None  "
        "# dasktune port: was ray.init(address=args.address)"
    ) in lines
    assert 'print("Ray started:", None)' in lines
    assert "if False:\n    pass\nif not False: pass\nstarted = False\n" in result.ported
    assert "        pass\n        # dasktune port: ray.init(num_cpus=2) removed" in result.ported
    assert "    else:\n        pass\n" in result.ported
    assert (
        "ray.is_initialized() became False: dasktune starts its Dask cluster itself, in "
        "Tuner.fit() and tune.run() (or uses your distributed.Client)"
    ) in [n for _, n in result.notes]
    namespace: dict = {"__name__": "__main__"}
    exec(compile(result.ported, "ported", "exec"), namespace)  # starts no cluster
    assert [namespace[k] for k in ("cluster_info", "context", "on_ray", "client", "started")] == [
        None,
        None,
        None,
        None,
        False,
    ]


def test_ray_init_with_an_address_as_a_value_connects_a_client():
    result = port("""
        import ray
        client = ray.init("tcp://10.0.0.1:8786")
        print(ray.init(address=address))
    """)
    assert result.ported == (
        "import distributed\n"
        'client = distributed.Client("tcp://10.0.0.1:8786")  '
        '# dasktune port: was ray.init("tcp://10.0.0.1:8786")\n'
        "print((distributed.Client(address) if address else None))\n"
    )
    assert result.problems == []


def test_uses_of_ray_s_context_from_ray_init_are_reported():
    result = port("""
        import ray
        context = ray.init(num_cpus=2)
        print(context.dashboard_url, context["node_id"])
    """)
    assert constructs(result) == ["context.dashboard_url", 'context["node_id"]']
    assert all(p.line == 3 for p in result.problems)
    assert result.problems[0].reason.startswith(
        "context held what ray.init(num_cpus=2) returns, Ray's context; after the port it is "
        "None, which has no such field"
    )
    assert "import ray" not in result.ported


# -- imports that would fail, of names the script never uses ---------------------------------


def test_unused_imports_of_what_cannot_be_ported_are_dropped():
    source = """
        import ray
        import ray.tune.integration.keras as tk
        from ray import tune
        from ray.tune.integration.pytorch_lightning import TuneReportCallback
        from ray.tune.logger import DEFAULT_LOGGERS, CSVLoggerCallback
        from ray.air.session import get_trial_id
        from ray.train.torch import TorchTrainer

        print("Ray", ray.__version__)
        callbacks = [CSVLoggerCallback()]
    """
    result = port(source)
    assert result.problems == []
    assert result.ported.splitlines()[:3] == [
        "import dasktune as tune",
        "from dasktune.logger import CSVLoggerCallback",
        "",
    ]
    assert 'print("Ray", tune.__version__)' in result.ported
    notes = [n for _, n in result.notes]
    for imported, name in [
        ("import ray.tune.integration.keras as tk", "tk"),
        (
            "from ray.tune.integration.pytorch_lightning import TuneReportCallback",
            "TuneReportCallback",
        ),
        ("from ray.tune.logger import DEFAULT_LOGGERS", "DEFAULT_LOGGERS"),
        ("from ray.air.session import get_trial_id", "get_trial_id"),
        ("from ray.train.torch import TorchTrainer", "TorchTrainer"),
    ]:
        assert f"{imported} dropped: it cannot be ported, and the script never uses {name}" in notes
    assert "ray.__version__ became dasktune's version (dasktune.__version__), not Ray's" in notes
    namespace: dict = {}
    exec(compile(result.ported, "ported", "exec"), namespace)
    assert type(namespace["callbacks"][0]).__name__ == "CSVLoggerCallback"


def test_imports_whose_every_use_was_ported_are_dropped():
    result = port("""
        from ray import __version__, init, is_initialized, shutdown
        if not is_initialized():
            init()
        shutdown()
        version = __version__
    """)
    assert result.ported == (
        "from dasktune import __version__\nif not False:\n    pass\nversion = __version__\n"
    )
    assert result.problems == []
    assert "from ray import init dropped: each use of init was ported" in [
        n for _, n in result.notes
    ]
    namespace: dict = {}
    exec(compile(result.ported, "ported", "exec"), namespace)
    assert namespace["version"] == importlib.import_module("dasktune").__version__


def test_a_used_import_of_what_cannot_be_ported_is_still_reported():
    result = port("""
        from ray.tune.integration.pytorch_lightning import TuneReportCallback
        callbacks = [TuneReportCallback({"loss": "val_loss"})]
    """)
    assert constructs(result) == ["ray.tune.integration.pytorch_lightning.TuneReportCallback"]
    # A stand-in, not Ray's import: using it raises the reason, not "No module named 'ray'".
    assert "from ray" not in result.ported
    with pytest.raises(
        NotImplementedError,
        match=r"TuneReportCallback is not in dasktune.*"
        r"call tune.report from a callback of your own",
    ):
        exec(compile(result.ported, "ported.py", "exec"), {})


def test_what_cannot_be_ported_only_stops_a_script_that_uses_it():
    # Ray's FAQ builds a ScalingConfig only when not mocked; the rest of the script runs.
    result = port("""
        from ray import tune
        from ray.train import ScalingConfig
        from ray.tune.logger import Logger
        MOCK = True
        if not MOCK:
            scaling = ScalingConfig(num_workers=2)
        copied = __import__("copy").deepcopy(ScalingConfig)
        shown = repr(Logger)
    """)
    assert constructs(result) == ["ray.train.ScalingConfig", "ray.tune.logger.Logger"]
    namespace: dict = {}
    exec(compile(result.ported, "ported.py", "exec"), namespace)
    assert "not ported" in namespace["shown"]
    with pytest.raises(NotImplementedError, match=r"Logger is not in dasktune.*LoggerCallback"):
        exec("class Mine(Logger):\n    pass", namespace)
    with pytest.raises(NotImplementedError, match=r"ScalingConfig is not in dasktune"):
        exec("ScalingConfig.from_dict({})", namespace)


def test_the_xgboost_and_lightgbm_callbacks_are_ported():
    result = port("""
        import ray
        from ray.tune.integration.xgboost import TuneReportCheckpointCallback
        from ray.tune.integration.lightgbm import TuneReportCallback  # Ray 1.x's
        import ray.tune.integration.lightgbm as lgb_tune
        from ray.train.xgboost import RayTrainReportCallback

        callbacks = [
            TuneReportCheckpointCallback({"loss": "eval-logloss"}, frequency=5),
            TuneReportCallback("eval-binary_logloss"),
            lgb_tune.TuneReportCheckpointCallback(),
            RayTrainReportCallback(),
            ray.tune.integration.xgboost.TuneReportCallback(),
        ]
    """)
    assert result.problems == []
    assert changed_lines(result) == (
        [
            "import ray",
            "from ray.tune.integration.xgboost import TuneReportCheckpointCallback",
            "from ray.tune.integration.lightgbm import TuneReportCallback  # Ray 1.x's",
            "import ray.tune.integration.lightgbm as lgb_tune",
            "from ray.train.xgboost import RayTrainReportCallback",
            "    ray.tune.integration.xgboost.TuneReportCallback(),",
        ],
        [
            "import dasktune.integration.xgboost",
            "from dasktune.integration.xgboost import TuneReportCheckpointCallback",
            "from dasktune.integration.lightgbm import TuneReportCallback  # Ray 1.x's",
            "import dasktune.integration.lightgbm as lgb_tune",
            "from dasktune.integration.xgboost import TuneReportCheckpointCallback as "
            "RayTrainReportCallback",
            "    dasktune.integration.xgboost.TuneReportCallback(),",
        ],
    )
    pytest.importorskip("xgboost")
    pytest.importorskip("lightgbm")
    namespace: dict = {}
    exec(compile(result.ported, "ported", "exec"), namespace)
    assert [f"{type(c).__module__}.{type(c).__name__}" for c in namespace["callbacks"]] == [
        "dasktune.integration.xgboost.TuneReportCheckpointCallback",
        "dasktune.integration.lightgbm.TuneReportCallback",
        "dasktune.integration.lightgbm.TuneReportCheckpointCallback",
        "dasktune.integration.xgboost.TuneReportCheckpointCallback",
        "dasktune.integration.xgboost.TuneReportCallback",
    ]


def test_the_other_names_of_ray_s_boosting_integrations_are_reported():
    result = port("""
        from ray.tune.integration.xgboost import TuneCallback
        from ray.tune.integration.keras import TuneReportCallback
        from ray.train.lightgbm import LightGBMTrainer
        callbacks = [TuneCallback(), TuneReportCallback(), LightGBMTrainer]
    """)
    assert constructs(result) == [
        "ray.tune.integration.xgboost.TuneCallback",
        "ray.tune.integration.keras.TuneReportCallback",
        "ray.train.lightgbm.LightGBMTrainer",
    ]
    reasons = [p.reason for p in result.problems]
    assert reasons[0] == "dasktune has no ray.tune.integration.xgboost.TuneCallback."
    assert "dasktune.integration.xgboost, .lightgbm" in reasons[1]
    assert "Ray Train's distributed trainers" in reasons[2]


# -- report's shapes -------------------------------------------------------------------------


def reports_of(trainable, tmp_path) -> list[tuple[dict, str | None]]:
    """Run a function trainable under a real dasktune session: what it reported."""
    from dasktune._protocol import ResultReported
    from dasktune.trainable.session import RunSpec, Session, TrialContext, set_session

    context = TrialContext("t1", "trial_1", str(tmp_path / "trial_1"), "exp", str(tmp_path))
    spec = RunSpec(
        run_id=f"port-{tmp_path.name}", context=context, config={}, topic="t", decision_points=()
    )
    messages: list = []
    set_session(Session(spec, messages.append))
    try:
        trainable({})
    finally:
        set_session(None)
    return [(m.result, m.checkpoint) for m in messages if isinstance(m, ResultReported)]


@pytest.mark.parametrize(
    "imports, call, ported_call",
    [
        ("from ray import train", 'train.report({"loss": 0.5})', 'tune.report({"loss": 0.5})'),
        (
            "from ray import train",
            'train.report(metrics={"loss": 0.5})',
            'tune.report(metrics={"loss": 0.5})',
        ),
        (
            "from ray import train",
            'train.report(metrics={"loss": 0.5}, checkpoint=checkpoint)',
            'tune.report(metrics={"loss": 0.5}, checkpoint=checkpoint)',
        ),
        (
            "from ray.air import session",
            'session.report(metrics={"loss": 0.5}, checkpoint=checkpoint)',
            'tune.report(metrics={"loss": 0.5}, checkpoint=checkpoint)',
        ),
        (
            "from ray import air",
            'air.session.report(checkpoint=checkpoint, metrics={"loss": 0.5})',
            'tune.report(checkpoint=checkpoint, metrics={"loss": 0.5})',
        ),
        ("from ray import tune", "tune.report(loss=0.5)", "tune.report({'loss': 0.5})"),
        (
            "from ray import tune",
            "tune.report(loss=0.5, checkpoint=checkpoint)",
            "tune.report({'loss': 0.5}, checkpoint=checkpoint)",
        ),
        (
            "from ray import tune",
            "tune.report(checkpoint=checkpoint, loss=0.5, acc=1)",
            "tune.report({'loss': 0.5, 'acc': 1}, checkpoint=checkpoint)",
        ),
        (  # checkpoint='s value is rewritten too
            "from ray import train, tune",
            "tune.report(loss=0.5, checkpoint=train.Checkpoint.from_directory(path), acc=1)",
            "tune.report({'loss': 0.5, 'acc': 1}, checkpoint=tune.Checkpoint.from_directory(path))",
        ),
    ],
)
def test_every_shape_of_report_reports_its_metrics_at_the_top(imports, call, ported_call, tmp_path):
    saved = tmp_path / "saved"
    saved.mkdir()
    (saved / "state.txt").write_text("1")
    source = (
        f"{imports}\n"
        "import dasktune\n\n"
        "def trainable(config):\n"
        f"    path = {str(saved)!r}\n"
        "    checkpoint = dasktune.Checkpoint.from_directory(path)\n"
        f"    {call}\n"
    )
    result = port_source(source)
    assert result.problems == []
    assert f"    {ported_call}\n" in result.ported
    namespace: dict = {}
    exec(compile(result.ported, "ported", "exec"), namespace)
    [(metrics, checkpoint)] = reports_of(namespace["trainable"], tmp_path)
    assert metrics["loss"] == 0.5 and "metrics" not in metrics
    assert (checkpoint is not None) == ("checkpoint=" in call)
    if checkpoint is not None:
        assert (tmp_path / checkpoint / "state.txt").read_text() == "1"


# -- what the port leaves alone ---------------------------------------------------------------


def test_ray_s_environment_settings_stay_with_a_note():
    source = """
        import os
        from os import environ
        from ray import tune

        os.environ["RAY_CHDIR_TO_TRIAL_DIR"] = "0"
        environ["RAY_DEDUP_LOGS"] = "0"
        os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
        os.environ["CUDA_VISIBLE_DEVICES"] = "0"
    """
    result = port(source)
    assert result.problems == []
    assert changed_lines(result) == (["from ray import tune"], ["import dasktune as tune"])
    assert result.notes == [
        (
            5,
            "RAY_CHDIR_TO_TRIAL_DIR: dasktune honours it as Ray does (so does "
            "TuneConfig(chdir_to_trial_dir=False))",
        ),
        (
            6,
            "RAY_DEDUP_LOGS is a setting of Ray's that dasktune does not read: setting it does "
            "nothing here",
        ),
        (
            7,
            "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS is a setting of Ray's that dasktune does not "
            "read: setting it does nothing here",
        ),
    ]


def test_the_ray_variables_the_port_says_dasktune_honours_are_those_it_reads():
    """The notes of the port say which of Ray's variables dasktune reads: check it."""
    from dasktune import porting

    package = pathlib.Path(porting.__file__).parent
    read = set()
    for path in package.rglob("*.py"):
        if path.name == "porting.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and ast.unparse(node.func).endswith(
                ("environ.get", "getenv")
            ):
                keys = node.args[:1]
            elif isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load):
                keys = [node.slice] if ast.unparse(node.value).endswith("environ") else []
            else:
                continue
            read.update(
                k.value
                for k in keys
                if isinstance(k, ast.Constant) and str(k.value).startswith(("RAY_", "TUNE_"))
            )
    assert read == set(porting._HONOURED_VARIABLES)


def test_result_log_dir_is_left_alone():
    """Ray 2.0-2.6's Result.log_dir: dasktune's Result has it too."""
    source = """
        from ray import tune

        result = tune.Tuner(f).fit().get_best_result()
        print(result.log_dir, result.path)
        with open(result.log_dir / "params.json") as params:
            pass
    """
    result = port(source)
    assert result.problems == []
    assert changed_lines(result) == (["from ray import tune"], ["import dasktune as tune"])
    assert hasattr(importlib.import_module("dasktune").Result, "log_dir")


def test_a_function_s_own_ray_import_and_the_module_s_are_both_ray_s():
    text = ported("""
        from ray import train

        def main():
            from ray import train
            train.report({"a": 1})

        def objective(config):
            train.report({"b": 2})
    """)
    assert text == (
        "import dasktune as tune\n\n"
        "def main():\n"
        '    tune.report({"a": 1})\n\n'
        "def objective(config):\n"
        '    tune.report({"b": 2})\n'
    )


def test_ray_1x_run_experiments_and_experiment_port_as_names_of_dasktune():
    result = port(
        """
        from ray import tune
        from ray.tune import Experiment, run_experiments

        def train(config):
            tune.report(score=config["x"])

        run_experiments({"a": {"run": train, "config": {"x": 1}}})
        tune.run_experiments(Experiment("b", train, config={"x": 2}))
        """
    )
    assert constructs(result) == []
    assert "from dasktune import Experiment, run_experiments" in result.ported
    assert "tune.run_experiments(Experiment(" in result.ported


def test_repeater_and_creation_by_name_port_from_ray_2_and_1():
    result = port(
        """
        from ray import tune
        from ray.tune.search import Repeater
        from ray.tune.suggest.repeater import TRIAL_INDEX
        from ray.tune.search.optuna import OptunaSearch

        search = Repeater(OptunaSearch(), repeat=3)
        scheduler = tune.create_scheduler("async_hyperband", max_t=10)
        other = tune.create_searcher("hyperopt")
        """
    )
    assert constructs(result) == []
    assert "from dasktune.search import Repeater" in result.ported
    assert "from dasktune.search import TRIAL_INDEX" in result.ported


def test_ray_0_8_track_log_becomes_report():
    result = port(
        """
        from ray import tune

        def train(config):
            tune.track.log(mean_accuracy=config["x"])
        """
    )
    assert constructs(result) == []
    assert "tune.report({'mean_accuracy': config[\"x\"]})" in result.ported


def test_ray_1x_dotted_result_columns_get_a_note_and_files_do_not():
    result = port(
        """
        from ray import tune

        df = tune.run(train, config={"lr": tune.uniform(0, 1)}).results_df
        best = df.sort_values("config.lr")
        wanted = [c for c in df.columns if c.startswith("config.")]
        settings = open("config.yaml")
        """
    )
    noted = [text for _, text in result.notes]
    assert any("'config.lr'" in n and "'config/lr'" in n for n in noted)
    assert any("'config.'" in n and "'config/'" in n for n in noted)
    assert not any("config.yaml" in n for n in noted)
    assert "config.lr" in result.ported, "the script's text is left to its author"
