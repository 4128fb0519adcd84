"""Checkpoints: directories on a filesystem that every worker and the driver can reach."""

from __future__ import annotations

import contextlib
import os
import pickle
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

import cloudpickle

#: The file holding a dict checkpoint's data, in its directory.
DICT_FILE = "dict_checkpoint.pkl"


class Checkpoint:
    """A directory holding a trial's saved state.

    A trainable makes one with :meth:`from_directory` and passes it to
    ``tune.report``; dasktune copies it into the experiment's storage at once
    (the trainable's temporary directory is usually gone right after), and the
    stored copy is what :func:`dasktune.get_checkpoint` and ``Result.checkpoint``
    return.
    """

    #: Made by from_dict in a directory of its own, which is removed once stored.
    _temporary = False

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)

    @classmethod
    def from_directory(cls, path: str | os.PathLike[str]) -> Checkpoint:
        """A checkpoint of the files in ``path``."""
        path = os.fspath(path)
        if not os.path.isdir(path):
            raise ValueError(
                f"Checkpoint.from_directory(path={path!r}): no such directory. "
                "Save the trainable's state into a directory first, then pass that directory."
            )
        return cls(path)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Checkpoint:
        """A checkpoint of ``data`` (Ray AIR's dict checkpoints, Ray 2.0 to 2.6).

        The dict is pickled into a new temporary directory, which ``tune.report``
        moves into the experiment's storage; :meth:`to_dict` gives it back.

        Example:
            >>> checkpoint = Checkpoint.from_dict({"epoch": 3})
            >>> checkpoint.to_dict()
            {'epoch': 3}
        """
        if not isinstance(data, dict):
            raise TypeError(
                f"Checkpoint.from_dict(data={data!r}): data must be a dict, such as "
                "{'epoch': 3, 'model': model.state_dict()}."
            )
        directory = tempfile.mkdtemp(prefix="dasktune-dict-ckpt-")
        with open(os.path.join(directory, DICT_FILE), "wb") as f:
            cloudpickle.dump(data, f)
        checkpoint = cls(directory)
        checkpoint._temporary = True
        return checkpoint

    def to_dict(self) -> dict[str, Any]:
        """The dict a checkpoint made with :meth:`from_dict` holds."""
        path = os.path.join(self.path, DICT_FILE)
        if not os.path.isfile(path):
            raise ValueError(
                f"{self!r}.to_dict(): this checkpoint holds files, not a dict (it was not made "
                "with Checkpoint.from_dict). Read its files under checkpoint.path, or in "
                "`with checkpoint.as_directory() as path:`."
            )
        with open(path, "rb") as f:
            data: dict[str, Any] = pickle.load(f)
        return data

    @contextlib.contextmanager
    def as_directory(self) -> Iterator[str]:
        """Yield a local directory with the checkpoint's files (read them, don't change them)."""
        yield self.path

    def to_directory(self, path: str | os.PathLike[str] | None = None) -> str:
        """Copy the checkpoint to ``path`` (a new temporary directory if None); return it."""
        target = os.fspath(path) if path is not None else tempfile.mkdtemp(prefix="dasktune-ckpt-")
        shutil.copytree(self.path, target, dirs_exist_ok=True)
        return target

    def __fspath__(self) -> str:
        return self.path

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Checkpoint) and os.path.abspath(other.path) == os.path.abspath(
            self.path
        )

    def __hash__(self) -> int:
        return hash(os.path.abspath(self.path))

    def __repr__(self) -> str:
        return f"Checkpoint(path={self.path!r})"
