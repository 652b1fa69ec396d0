"""Side-by-side latency of deployed models (and the PyTorch reference), interleaved in one run.

Each timed iteration runs every entry once, in turn, so machine noise hits them alike, and each
timed run starts once the cores have settled from the previous entry's (runtimes' worker threads
spin on after a run returns); ratios are to the first entry. Stages are timed apart: preprocess
(letterbox + normalise), inference (the backend or ``model.head_outputs``), postprocess (decode /
NMS / mapping to the source).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from retina_edge.preprocess import PreprocessConfig, boxes_to_source, preprocess_batch
from retina_edge.progress import Progress
from retina_edge.resources import let_cores_settle

STAGES = ("preprocess", "inference", "postprocess")
T = TypeVar("T")


@dataclass
class BenchEntry:
    """One thing to time: ``run(images) -> {stage: seconds}``; ``rss_mb``: memory its model added, if
    measured; ``cost``: its model's (MACs per image, parameters), if known."""

    name: str
    run: Callable[[list[np.ndarray]], dict[str, float]]
    rss_mb: float | None = None
    cost: tuple[int, int] | None = None
    samples: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in (*STAGES, "total")})


def process_rss_mb() -> float:
    """Resident memory of this process in MiB (Linux /proc; 0 elsewhere)."""
    try:
        with open(f"/proc/{os.getpid()}/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):
        return 0.0


def measure_load(load: Callable[..., T], *args: Any, **kwargs: Any) -> tuple[T, float]:
    """``load(*args, **kwargs)`` and the resident memory (MiB) it added: what a model costs to hold."""
    before = process_rss_mb()
    loaded = load(*args, **kwargs)
    return loaded, process_rss_mb() - before


def model_cost_of(config, input_size: tuple[int, int]) -> tuple[int, int] | None:  # noqa: ANN001 (ModelConfig)
    """(MACs per image at ``input_size``, parameters) of the model ``config`` describes (a pruned
    one's widths included); None without torch (a runtime-only install cannot count them)."""
    try:
        from retina_edge.model.widths import model_cost
    except ModuleNotFoundError:
        return None
    cost = model_cost(config, input_size)
    return cost.macs, cost.params


def detector_entry(name: str, detector, *, rss_mb: float | None = None) -> BenchEntry:  # noqa: ANN001
    def run(images: list[np.ndarray]) -> dict[str, float]:
        t0 = time.perf_counter()
        batch, infos = detector.preprocess(images)
        t1 = time.perf_counter()
        outputs = detector.infer(batch)
        t2 = time.perf_counter()
        detector.postprocess(outputs, infos)
        t3 = time.perf_counter()
        return {"preprocess": t1 - t0, "inference": t2 - t1, "postprocess": t3 - t2}

    metadata = detector.metadata
    return BenchEntry(name, run, rss_mb, model_cost_of(metadata.model, metadata.input_size))


def backend_entry(name: str, backend, batch: np.ndarray) -> BenchEntry:  # noqa: ANN001
    """Time ``backend.run(batch)`` alone, a fixed preprocessed batch (no pre/post stages): for
    comparing runtimes on graphs without a deployment contract (one conv, another quantizer's IR)."""
    def run(images: list[np.ndarray]) -> dict[str, float]:
        start = time.perf_counter()
        backend.run(batch)
        return {"preprocess": 0.0, "inference": time.perf_counter() - start, "postprocess": 0.0}

    return BenchEntry(name, run)


def pytorch_entry(name: str, model, preprocess: PreprocessConfig, *,  # noqa: ANN001
                  rss_mb: float | None = None) -> BenchEntry:
    import torch

    def run(images: list[np.ndarray]) -> dict[str, float]:
        t0 = time.perf_counter()
        batch, infos = preprocess_batch(images, preprocess)
        tensor = torch.from_numpy(batch)
        t1 = time.perf_counter()
        with torch.no_grad():
            outputs, feature_shapes = model.head_outputs(tensor)
        t2 = time.perf_counter()
        size = (preprocess.height, preprocess.width)
        anchors = model.anchors(size, feature_shapes)
        with torch.no_grad():
            detections = model.postprocess(outputs, anchors, [size] * len(images))
        for det, info in zip(detections, infos):
            boxes_to_source(det["boxes"].numpy(), info)
        t3 = time.perf_counter()
        return {"preprocess": t1 - t0, "inference": t2 - t1, "postprocess": t3 - t2}

    return BenchEntry(name, run, rss_mb, model_cost_of(model.config, (preprocess.height, preprocess.width)))


def run_bench(entries: list[BenchEntry], images: list[np.ndarray], *, batch: int, iterations: int, warmup: int) -> list[dict]:
    """Time every entry ``iterations`` times on batches of ``batch`` images; returns one summary each."""
    chunks = [[images[(i * batch + k) % len(images)] for k in range(batch)] for i in range(warmup + iterations)]  # full batches
    progress = Progress(len(chunks), f"bench batch {batch}")
    for step, chunk in enumerate(chunks):
        for entry in entries:
            if len(entries) > 1 and step >= warmup:
                let_cores_settle()  # the previous entry's spinning workers would be timed too
            times = entry.run(chunk)
            if step >= warmup:
                for stage in STAGES:
                    entry.samples[stage].append(times[stage])
                entry.samples["total"].append(sum(times.values()))
        progress.update(step + 1)
    summaries = []
    base = np.median(entries[0].samples["total"])
    for entry in entries:
        total = np.asarray(entry.samples["total"])
        summaries.append({
            "name": entry.name, "batch": batch,
            "p50_ms": 1e3 * float(np.median(total)), "p90_ms": 1e3 * float(np.percentile(total, 90)),
            "p99_ms": 1e3 * float(np.percentile(total, 99)),
            **{f"{stage}_ms": 1e3 * float(np.median(entry.samples[stage])) for stage in STAGES},
            "images_per_s": batch / float(np.median(total)), "ratio_to_first": float(np.median(total) / base),
            "rss_mb": entry.rss_mb,
            "gmacs": None if entry.cost is None else entry.cost[0] / 1e9,
            "mparams": None if entry.cost is None else entry.cost[1] / 1e6,
        })
    return summaries


def format_table(summaries: list[dict]) -> str:
    """The summaries as a text table; the model column is as wide as the longest name (a cut name
    hid which backend ``auto`` picked, or which of two long paths a row was)."""
    width = max([len("model"), *(len(s["name"]) for s in summaries)])
    head = (f"{'model':<{width}} {'batch':>5} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'pre':>6} {'infer':>8} {'post':>6} "
            f"{'img/s':>7} {'ratio':>6} {'+RSS MB':>7} {'GMACs':>7} {'Mparams':>7}")
    rows = [head]
    for s in summaries:
        rows.append(f"{s['name']:<{width}} {s['batch']:>5} {s['p50_ms']:>8.1f} {s['p90_ms']:>8.1f} {s['p99_ms']:>8.1f} "
                    f"{s['preprocess_ms']:>6.1f} {s['inference_ms']:>8.1f} {s['postprocess_ms']:>6.1f} "
                    f"{s['images_per_s']:>7.2f} {s['ratio_to_first']:>6.2f} {_cell(s['rss_mb'], '.0f'):>7} "
                    f"{_cell(s.get('gmacs'), '.3f'):>7} {_cell(s.get('mparams'), '.2f'):>7}")
    return "\n".join(rows)


def _cell(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def plot(summaries: list[dict], path: str) -> None:
    """Stacked bars of the median stage times per model and batch size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{s['name']} b{s['batch']}" for s in summaries]
    fig, ax = plt.subplots(figsize=(max(5, len(labels) * 1.2), 3.5))
    bottom = np.zeros(len(summaries))
    for stage in STAGES:
        values = np.asarray([s[f"{stage}_ms"] / s["batch"] for s in summaries])
        ax.bar(labels, values, bottom=bottom, label=stage)
        bottom += values
    ax.set_ylabel("ms per image (median)")
    ax.legend()
    plt.setp(ax.get_xticklabels(), rotation=30, ha="right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
