"""Atomic file writes: a crash mid-write never leaves a broken file in place of a good one (no torch)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


class StagedFile:
    """A file written beside ``path`` under a temporary name (``.<name>.*<suffix>``, with the umask's
    mode) and put in place by :meth:`commit`, fsynced and renamed onto ``path``; :meth:`discard`
    drops it, ``path`` untouched. For outputs written over a whole run (a video, JSON lines): a
    process killed outright leaves the earlier ``path`` as it was. ``suffix``: the temporary's
    ending, for writers that choose the format by it (``.tmp.mp4``)."""

    def __init__(self, path: str | os.PathLike, *, suffix: str = ".tmp") -> None:
        self.target = Path(path)
        self.target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{self.target.name}.", suffix=suffix, dir=self.target.parent)
        os.close(fd)
        # mkstemp makes the file private (0600); artifacts get the usual umask-based mode.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_name, 0o666 & ~umask)
        self.path = Path(tmp_name)

    def commit(self) -> None:
        """fsync the temporary and rename it onto the target; an error (a full disk) names the target
        and drops the temporary."""
        try:
            with open(self.path, "rb+") as handle:
                os.fsync(handle.fileno())
            os.replace(self.path, self.target)
        except OSError as error:
            self.discard()
            raise OSError(error.errno, error.strerror or str(error), str(self.target)) from error

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is fsynced and renamed onto ``path``.

    If the body raises (or the process dies), ``path`` keeps its previous content and the
    temporary file is removed (or left as ``.<name>.*.tmp``, never under the real name).
    """
    staged = StagedFile(path)
    try:
        yield staged.path
        staged.commit()
    except OSError as error:  # a full disk, say: name the file the user asked for, not our temporary one
        raise OSError(error.errno, error.strerror or str(error), str(staged.target)) from error
    finally:
        staged.discard()


@contextlib.contextmanager
def atomic_paths(*paths: str | os.PathLike) -> Iterator[list[Path]]:
    """:func:`atomic_path` for files that belong together (a model and its calibration cache):
    every one is written and fsynced before any is renamed into place, so a full disk or an
    interrupt while writing keeps all the previous files. An error names the first path."""
    with contextlib.ExitStack() as stack:
        temporaries = [stack.enter_context(_staged(path)) for path in paths]
        try:
            yield temporaries
            for tmp in temporaries:
                with open(tmp, "rb+") as handle:
                    os.fsync(handle.fileno())
            for tmp, path in zip(temporaries, paths):
                os.replace(tmp, path)
        except OSError as error:
            raise OSError(error.errno, error.strerror or str(error), str(paths[0])) from error


@contextlib.contextmanager
def _staged(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary file beside ``path`` (a :class:`StagedFile`'s), removed unless renamed."""
    staged = StagedFile(path)
    try:
        yield staged.path
    finally:
        staged.discard()


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    write_bytes_atomic(path, text.encode("utf-8"))


def staging_folder(target: str | os.PathLike) -> Path:
    """A new empty folder beside ``target``, to fill and then rename onto it (a folder swapped in
    whole), with the mode ``mkdir`` gives under the umask: ``mkdtemp`` makes it private (0700),
    and renamed into place it kept that, so a server running as another user (a container started
    with ``--user``) could not read it."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(folder, 0o777 & ~umask)
    return folder
