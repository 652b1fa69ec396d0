"""``backend="auto"`` for ONNX files: the installed CPU backend that runs *this* model fastest *here*.

Which of ONNX Runtime and OpenVINO is faster depends on the graph and the CPU's instructions (the
same INT8 graph ranks them differently on VNNI and AVX2-only CPUs: bench/RESULTS.md), so no fixed
order is right. With only one installed, that one runs. With both, a short probe loads
both, runs the model on one synthetic preprocessed image interleaved (one warm-up, then
``PROBE_RUNS`` timed runs each, each after the cores have settled from the other runtime's run)
and keeps the lower median; OpenVINO must win by
``MARGIN`` to replace ONNX Runtime, so noise does not flip the choice from run to run. The
winner's loaded backend is handed on (nothing is loaded twice); the loser is closed.

The choice is cached in ``<cache>/backend-choice.json`` (see :mod:`retina_edge.cache`), keyed by
the model file (resolved path, size, modification time), the machine (CPU model, usable cores,
both runtimes' versions) and the settings (threads, streams, OpenVINO precision): the probe runs
once per model file and machine, and again whenever any of those change. Explicit backends and non-CPU devices
never probe.
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from retina_edge.atomic import write_text_atomic
from retina_edge.cache import cache_root
from retina_edge.contract import DeploymentMetadata
from retina_edge.errors import RetinaEdgeError
from retina_edge.preprocess import input_batch
from retina_edge.resources import let_cores_settle, usable_cores
from retina_edge.runtime.backends.registry import auto_candidates

logger = logging.getLogger("retina_edge.runtime")

PROBE_RUNS = 3
#: Another backend replaces the first candidate (ONNX Runtime) only when its median is at least this much lower.
MARGIN = 0.05
CACHE_NAME = "backend-choice.json"


def cpu_backends() -> tuple[str, ...]:
    """The candidates, in preference order: the backends registered with ``auto=True``."""
    return tuple(spec.name for spec in auto_candidates())


@dataclass(frozen=True)
class BackendChoice:
    """What ``auto`` picked and why. ``median_ms``: probe medians per backend (empty if not probed)."""

    backend: str
    reason: str
    median_ms: dict[str, float]

    def describe(self) -> str:
        timings = ", ".join(f"{name} {ms:.1f} ms" for name, ms in sorted(self.median_ms.items(), key=lambda kv: kv[1]))
        return f"{self.backend} ({self.reason}{': ' + timings if timings else ''})"


def installed_cpu_backends() -> tuple[str, ...]:
    return tuple(spec.name for spec in auto_candidates() if spec.installed())


def fixed_choice(device: str | None) -> BackendChoice | None:
    """The choice when nothing needs measuring: one backend installed, or a device only one has."""
    installed = installed_cpu_backends()
    if not installed:
        hints = "; ".join(f"{spec.name}: {spec.install_hint}" for spec in auto_candidates())
        raise RetinaEdgeError(f"no ONNX backend is installed ({hints})")
    if device is not None and device.upper() != "CPU":
        takers = [spec.name for spec in auto_candidates() if spec.takes_device(device)]
        if not takers:
            raise RetinaEdgeError(f"no backend takes device {device!r}; " + "; ".join(
                f"{spec.name}: {', '.join(spec.devices)}" for spec in auto_candidates()), option="device")
        return BackendChoice(takers[0], f"device {device} is a {takers[0]} device", {})
    if len(installed) == 1:
        return BackendChoice(installed[0], "the only ONNX backend installed", {})
    return None


def probe_key(path: Path, settings: dict) -> str:
    """Identity of (model file, machine, backend settings such as threads) for the cache."""
    stat = path.stat()
    versions = {spec.name: _version(spec.distributions) for spec in auto_candidates()}
    parts = [str(path.resolve()), stat.st_size, stat.st_mtime_ns, platform.machine(), _cpu_model(),
             usable_cores(), sorted(settings.items()), versions]
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:32]


def cached_choice(key: str) -> BackendChoice | None:
    entry = cached_entry(key)
    if entry.get("backend") not in cpu_backends():
        return None
    return BackendChoice(entry["backend"], "measured earlier on this machine", dict(entry.get("median_ms", {})))


def remember(key: str, choice: BackendChoice) -> None:
    remember_entry(key, {"backend": choice.backend, "median_ms": choice.median_ms})


def cached_entry(key: str) -> dict:
    """The cached measurement under ``key`` ({} if none); shared with :mod:`.streams_choice`."""
    entry = _read_cache().get(key)
    return entry if isinstance(entry, dict) else {}


def remember_entry(key: str, entry: dict) -> None:
    """Cache ``entry`` (plus when it was measured) under ``key``; a read-only cache only logs."""
    entries = _read_cache()
    entries[key] = {**entry, "measured": time.strftime("%Y-%m-%d %H:%M:%S")}
    try:
        write_text_atomic(cache_root() / CACHE_NAME, json.dumps(entries, indent=1))
    except OSError as error:  # a read-only cache costs a probe next time, nothing else
        logger.warning("cannot cache a measured choice in %s: %s", cache_root(), error)


def probe(backends: dict[str, object], metadata: DeploymentMetadata) -> BackendChoice:
    """Time ``backends`` (name -> loaded backend) on one synthetic image, interleaved; pick the fastest."""
    batch = probe_batch(metadata)
    samples: dict[str, list[float]] = {name: [] for name in backends}
    for run in range(PROBE_RUNS + 1):
        for name, backend in backends.items():
            if run:  # ONNX Runtime's spinning workers slowed the OpenVINO run after them by 9%
                let_cores_settle()
            start = time.perf_counter()
            backend.run(batch)
            if run:  # the first run of each is the warm-up
                samples[name].append(1e3 * (time.perf_counter() - start))
    median_ms = {name: round(float(np.median(times)), 2) for name, times in samples.items()}
    return BackendChoice(pick(median_ms), "probe", median_ms)


def pick(median_ms: dict[str, float]) -> str:
    """The fastest; another must beat the first candidate (ONNX Runtime) by ``MARGIN`` (a tie keeps it)."""
    first = next((name for name in cpu_backends() if name in median_ms), None)
    fastest = min(median_ms, key=median_ms.get)
    if first is None or median_ms[fastest] < (1 - MARGIN) * median_ms[first]:
        return fastest
    return first


def probe_image(metadata: DeploymentMetadata) -> np.ndarray:
    """An ``(H, W, 3)`` uint8 image of the model's input size (a frame graph's frame size): a smooth
    ramp with noise, so that score-dependent tails (top-k, NMS) do about the work they do on photographs."""
    height, width = metadata.frame.size if metadata.frame is not None else metadata.input_size
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
    return np.clip(ramp + rng.normal(0, 40, (height, width, 3)), 0, 255).astype(np.uint8)


def probe_batch(metadata: DeploymentMetadata) -> np.ndarray:
    """:func:`probe_image` as the graph's input, a batch of the model's smallest batch size."""
    return input_batch([probe_image(metadata)] * max(1, metadata.batch[0]), metadata.preprocess, metadata.frame)[0]


def choose_and_load(path: Path, metadata: DeploymentMetadata, load: Callable[[str], object], *, device: str | None,
                    settings: dict) -> tuple[BackendChoice, object]:
    """The choice for ``path`` and its loaded backend (``load(name)`` loads one with ``settings``,
    the backend options that change speed: threads, streams, OpenVINO precision)."""
    choice, backend = fixed_choice(device), None
    if choice is None:
        key = probe_key(path, settings)
        choice = cached_choice(key)
        if choice is None:
            choice, backend = probe_and_keep({name: load(name) for name in installed_cpu_backends()}, metadata)
            remember(key, choice)
    logger.info("backend auto for %s: %s", path.name, choice.describe())
    return choice, backend or load(choice.backend)


def probe_and_keep(loaded: dict[str, object], metadata: DeploymentMetadata) -> tuple[BackendChoice, object]:
    """:func:`probe` the loaded backends; close all but the winner, which is returned (all on error)."""
    choice = None
    try:
        choice = probe(loaded, metadata)
    finally:
        for name, backend in loaded.items():
            if choice is None or name != choice.backend:
                backend.close()
    return choice, loaded[choice.backend]


def _read_cache() -> dict:
    try:
        entries = json.loads((cache_root() / CACHE_NAME).read_text())
    except (OSError, ValueError):  # missing or damaged: probe again and rewrite it
        return {}
    return entries if isinstance(entries, dict) else {}


def _version(distributions: tuple[str, ...]) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    for distribution in distributions:
        try:
            return f"{distribution} {version(distribution)}"
        except PackageNotFoundError:
            continue
    return None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith(("model name", "Model", "Hardware")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()
