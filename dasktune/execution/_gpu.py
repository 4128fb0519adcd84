"""GPUs: counting them on the driver, and freeing a finished trial's GPU memory on a worker.

Nothing here imports torch, dask-cuda or NVML at module level: ``import
dask_cuda`` works on a machine without a GPU, but NVML, which counts the GPUs,
fails there, and torch is only looked at where a trial has imported it already.
"""

from __future__ import annotations

import gc
import importlib.util
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class GpuProbe:
    """What the driver's machine offers a CUDA cluster.

    Attributes:
        count: GPUs visible to this process (``CUDA_VISIBLE_DEVICES`` honoured).
        dask_cuda: Whether dask-cuda is installed (it is not imported).
        reason: Why ``count`` is 0, for error messages; empty otherwise.
    """

    count: int
    dask_cuda: bool
    reason: str = ""


def probe_gpus() -> GpuProbe:
    """Count the NVIDIA GPUs this process may use, through NVML, without creating a CUDA context.

    NVML (the ``pynvml`` module of ``nvidia-ml-py``, which dask-cuda installs) reads the
    driver's device list; unlike ``torch.cuda.device_count()`` it loads no CUDA runtime into
    the driver, which would make forking worker processes from it unsafe.
    """
    dask_cuda = importlib.util.find_spec("dask_cuda") is not None
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return GpuProbe(0, dask_cuda, f"CUDA_VISIBLE_DEVICES is {visible!r}, which hides every GPU")
    if not dask_cuda:  # no CUDA cluster either way: leave NVML unloaded (forking stays safe)
        return GpuProbe(0, False, "dask-cuda is not installed, so GPUs were not looked for")
    try:
        import pynvml
    except ImportError:
        return GpuProbe(
            0,
            dask_cuda,
            "NVML's Python module (pynvml, from nvidia-ml-py) is not "
            "installed, so no GPU can be found",
        )
    try:
        pynvml.nvmlInit()
        try:
            count = int(pynvml.nvmlDeviceGetCount())
        finally:
            pynvml.nvmlShutdown()
    except pynvml.NVMLError as exc:
        return GpuProbe(0, dask_cuda, f"NVML found no NVIDIA driver ({exc})")
    if count == 0:
        return GpuProbe(0, dask_cuda, "NVML reports no GPU")
    if visible:
        count = min(count, len(visible.split(",")))
    return GpuProbe(count, dask_cuda)


def release_gpu_memory(modules: Mapping[str, Any] = sys.modules) -> bool:
    """Give the GPU memory that a finished trial run left cached back to the device.

    A worker process runs trial after trial.  Tensors of a run that ended (a trial
    stopped by a scheduler, paused, finished or failed) are garbage once its frames
    are, but frames held by a traceback or a reference cycle need a collection, and
    torch's caching allocator keeps freed blocks reserved for this process: the next
    trial on the same GPU, in this process or another one, would find the memory
    taken.  So, where torch is imported and has initialised CUDA, collect garbage and
    empty torch's cache.  Anywhere else this does nothing (and imports nothing).

    Args:
        modules: Where to look for an imported torch (``sys.modules``).

    Returns:
        Whether the cache was emptied.
    """
    torch = modules.get("torch")
    if torch is None or not _cuda_initialized(torch):
        return False
    gc.collect()
    torch.cuda.empty_cache()
    return True


def _cuda_initialized(torch: Any) -> bool:
    cuda = getattr(torch, "cuda", None)
    try:
        return bool(cuda is not None and cuda.is_initialized())
    except Exception:  # a partly imported or unusual torch: leave it alone
        return False
