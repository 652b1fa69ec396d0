"""Resources checked before long work (no torch): output locations a command will write, and the
memory an export at a given input size needs. A command that would calibrate or train for minutes
and then fail to write its result, or grow until the kernel kills it, says so at once instead.
Also the process's share of the machine: its usable cores, its C library's memory calls, and the
pause that lets cores settle between interleaved timings of different runtimes."""

from __future__ import annotations

import functools
import os
import tempfile
import time
from pathlib import Path

from retina_edge.errors import RetinaEdgeError


def check_writable(path: str | os.PathLike, *, folder: bool = False) -> None:
    """Raise unless ``path`` (a file, or a folder when ``folder``) can be written: an existing one
    must be of that kind and writable, a new one needs its nearest existing parent to be a
    writable folder (folders in between are created by the writers)."""
    target = Path(path).expanduser().absolute()
    if target.exists() and folder != target.is_dir():
        raise RetinaEdgeError(f"{path} is {'a file' if folder else 'a folder'}; a {'folder' if folder else 'file'} "
                              "is needed there")
    if target.is_file() and not os.access(target, os.W_OK):
        raise RetinaEdgeError(f"cannot write {path}: not writable (read-only file system or no permission)")
    # Writers put a temporary file beside the target and rename it: try exactly that (access()
    # says yes to root on a read-only mount or a pseudo file system).
    folder_path = target if folder and target.is_dir() else target.parent
    while not folder_path.exists():
        folder_path = folder_path.parent
    try:
        with tempfile.TemporaryFile(dir=folder_path):
            pass
    except OSError as error:
        raise RetinaEdgeError(f"cannot write {path}: {folder_path} does not take new files "
                              f"({error.strerror or error})") from None


#: Export memory, measured on ResNet-50-FPN (width 64): about 1.3 GB fixed and 330 bytes per input
#: pixel per example image (1.6 GB at 1024x1024, 2.6 GB at 2048x2048); rounded up here.
EXPORT_FIXED_BYTES = 1.5e9
EXPORT_BYTES_PER_PIXEL = 400


def available_memory_bytes() -> float | None:
    """``MemAvailable`` of /proc/meminfo (Linux), None where unknown."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def check_export_memory(height: int, width: int, batch: int = 1) -> None:
    """Refuse an export whose estimated memory is more than this machine has available."""
    needed = EXPORT_FIXED_BYTES + EXPORT_BYTES_PER_PIXEL * height * width * batch
    available = available_memory_bytes()
    if available is not None and needed > available:
        raise RetinaEdgeError(f"an input of {height}x{width} (batch {batch}) needs about {needed / 2**30:.0f} GiB to "
                              f"export, and {available / 2**30:.1f} GiB is available: choose a smaller input size "
                              "(the network's input; images of any size are resized to it)", option="input_size")


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask, which containers and taskset narrow)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def bound_threads(requested: int) -> tuple[int, str | None]:
    """(``requested`` worker threads bounded by the usable cores, the note saying so or None). More
    threads than cores only contend: 2000 on 2 cores took 40 s for a 0.3 s run, 100000 exhausted the
    machine's process slots."""
    cores = usable_cores()
    if requested <= cores:
        return requested, None
    return cores, f"{requested} threads asked for, and this process may run on {cores} cores: using {cores}"


#: Seconds a runtime's worker threads may keep the cores busy after its run returned (ONNX Runtime's
#: intra-op workers spin for new work before they sleep), so whatever runs next shares the cores with
#: them; twice the pause after which the slowdown was gone (bench/RESULTS.md, interleaved timings).
SETTLE_SECONDS = 0.1


def let_cores_settle() -> None:
    """Wait until the previous run's spinning worker threads have gone to sleep. Called before a
    timed run that follows another runtime's (interleaved comparisons), so the run timed is not
    also paying for the one before it."""
    time.sleep(SETTLE_SECONDS)


@functools.cache
def c_library():  # noqa: ANN201 (ctypes.CDLL | None)
    """This process's C library (the symbols it already has loaded), None where none can be opened
    that way (Windows). Callers look up the function they need with ``getattr(lib, name, None)``:
    glibc-only ones (``malloc_trim``) are missing on musl and macOS."""
    import ctypes

    try:
        return ctypes.CDLL(None, use_errno=True)
    except (OSError, TypeError):  # Windows: CDLL needs a name
        return None


def release_freed_memory() -> None:
    """Hand memory freed by the process back to the system (glibc's ``malloc_trim``; a no-op elsewhere).

    glibc keeps the heap pages of freed allocations for reuse, so after a large transient (the
    exporter's trace, a serialized copy of the graph) the resident set stays at its peak, and the
    next stage's peak adds to it: ``build --int8`` on ResNet-50 at 512x512 held 1.3 GB after the
    export it no longer needed. Called between stages whose transients are large."""
    trim = getattr(c_library(), "malloc_trim", None)
    if trim is not None:
        trim(0)
