"""GPUs on the driver (counting them, choosing the cluster kind) and on a worker (freeing memory).

This machine may have no GPU: the decisions are tested with the probe's result
written out, the probe itself for what it finds here.
"""

from __future__ import annotations

import subprocess
import sys
import types

import pytest

from dasktune.execution._gpu import GpuProbe, probe_gpus, release_gpu_memory
from dasktune.execution.cluster import ClusterKind, select_kind

NO_GPU = GpuProbe(
    0, dask_cuda=True, reason="NVML found no NVIDIA driver (NVML Shared Library Not Found)"
)
ONE_GPU = GpuProbe(1, dask_cuda=True)


@pytest.mark.parametrize(
    ("setting", "probe", "kind"),
    [
        ("auto", NO_GPU, ClusterKind.CPU),
        ("auto", GpuProbe(0, dask_cuda=False, reason="no pynvml"), ClusterKind.CPU),
        ("auto", GpuProbe(2, dask_cuda=False), ClusterKind.CPU),  # GPUs, but no dasktune[cuda]
        ("auto", ONE_GPU, ClusterKind.CUDA),
        ("cpu", ONE_GPU, ClusterKind.CPU),
        ("cuda", ONE_GPU, ClusterKind.CUDA),
    ],
)
def test_the_cluster_kind_follows_the_setting_and_the_machine(setting, probe, kind) -> None:
    assert select_kind(setting, probe) is kind


def test_cuda_without_dask_cuda_names_the_extra() -> None:
    with pytest.raises(
        ImportError,
        match=r"kind is 'cuda'.*dask-cuda is not installed.*"
        r"pip install 'dasktune\[cuda\]'",
    ):
        select_kind("cuda", GpuProbe(1, dask_cuda=False))


def test_cuda_without_a_gpu_says_why_and_what_to_set() -> None:
    with pytest.raises(
        RuntimeError,
        match=r"kind is 'cuda', but this machine has no GPU for it: "
        r"NVML found no NVIDIA driver.*'auto'.*'cpu'",
    ):
        select_kind("cuda", NO_GPU)


def test_an_unknown_kind_names_the_setting_and_the_choices() -> None:
    with pytest.raises(
        ValueError,
        match=r"dasktune.cluster.kind is 'gpu', but it must be "
        r"'auto', 'cpu' or 'cuda'",
    ):
        select_kind("gpu", ONE_GPU)


def test_the_probe_finds_no_gpu_here_and_says_why(monkeypatch) -> None:
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    probe = probe_gpus()
    assert probe.count == 0 and probe.reason
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert "CUDA_VISIBLE_DEVICES is ''" in probe_gpus().reason


# -- freeing a finished trial's GPU memory ----------------------------------------------


class FakeCuda:
    """torch.cuda's two functions that the release looks at, counting empty_cache calls."""

    def __init__(self, initialized: bool) -> None:
        self.initialized, self.emptied = initialized, 0

    def is_initialized(self) -> bool:
        return self.initialized

    def empty_cache(self) -> None:
        self.emptied += 1


def test_release_empties_torch_s_cache_only_where_cuda_was_initialised() -> None:
    used = types.SimpleNamespace(cuda=FakeCuda(initialized=True))
    assert release_gpu_memory({"torch": used}) is True
    assert used.cuda.emptied == 1
    unused = types.SimpleNamespace(cuda=FakeCuda(initialized=False))
    assert release_gpu_memory({"torch": unused}) is False
    assert unused.cuda.emptied == 0


def test_release_collects_garbage_first_so_that_cycles_free_their_tensors() -> None:
    import gc
    import weakref

    class Tensor:  # stands for a CUDA tensor held by a reference cycle (a traceback's frame)
        pass

    holder: dict = {}
    holder["self"] = holder
    holder["tensor"] = Tensor()
    alive = weakref.ref(holder["tensor"])
    del holder
    gc.disable()  # as if no automatic collection happened to run in between
    try:
        assert alive() is not None
        release_gpu_memory({"torch": types.SimpleNamespace(cuda=FakeCuda(initialized=True))})
        assert alive() is None
    finally:
        gc.enable()


def test_release_with_real_torch_and_no_cuda_does_nothing() -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_initialized():
        pytest.skip("CUDA is initialised in this process")
    assert release_gpu_memory() is False
    assert not torch.cuda.is_initialized(), "the check must not initialise CUDA"


def test_release_without_torch_imports_nothing() -> None:
    code = (
        "import sys; from dasktune.execution._gpu import release_gpu_memory; "
        "print(release_gpu_memory(), 'torch' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.split() == ["False", "False"]
