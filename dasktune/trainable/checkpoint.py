"""Checkpoints: directories on a filesystem that every worker and the driver can reach."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator


class Checkpoint:
    """A directory holding a trial's saved state.

    A trainable makes one with :meth:`from_directory` and passes it to
    ``tune.report``; dasktune copies it into the experiment's storage at once
    (the trainable's temporary directory is usually gone right after), and the
    stored copy is what :func:`dasktune.get_checkpoint` and ``Result.checkpoint``
    return.
    """

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
