"""Atomic file writes: a crash mid-write never leaves a broken file in place of a good one (no torch)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is fsynced and renamed onto ``path``.

    If the body raises (or the process dies), ``path`` keeps its previous content and the
    temporary file is removed (or left as ``.<name>.*.tmp``, never under the real name).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    # mkstemp makes the file private (0600); artifacts get the usual umask-based mode.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_name, 0o666 & ~umask)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except OSError as error:  # a full disk, say: name the file the user asked for, not our temporary one
        raise OSError(error.errno, error.strerror or str(error), str(target)) from error
    finally:
        tmp.unlink(missing_ok=True)


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
    """A temporary file beside ``path`` (made as atomic_path makes it), removed unless renamed."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_name, 0o666 & ~umask)
    try:
        yield Path(tmp_name)
    finally:
        Path(tmp_name).unlink(missing_ok=True)


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
