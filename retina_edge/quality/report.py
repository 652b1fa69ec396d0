"""Verify reports: terminal table, JSON, Markdown with plots (matplotlib, imported only here)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from retina_edge.atomic import write_text_atomic
from retina_edge.imageio import write_image_rgb
from retina_edge.runtime.results import Detections
from retina_edge.quality.verify import VerifyReport, matched_scores


def terminal_table(report: VerifyReport) -> str:
    target = f" for {report.target}" if report.target != "any" else ""
    lines = [f"precision {report.precision}{target}, {report.images} images: {'PASS' if report.passed else 'FAIL'}"]
    for t in report.tensors:
        lines.append(f"  tensor {t.name:<16} max|d| {t.max_abs:.3g}  mean|d| {t.mean_abs:.3g}  cos {t.cosine:.6f}  paired {t.paired:.3f}")
    pr = report.precision_recall
    lines.append(f"  detections vs reference: P/R@0.5 {pr['precision@0.5']:.3f}/{pr['recall@0.5']:.3f}  "
                 f"P/R@0.9 {pr['precision@0.9']:.3f}/{pr['recall@0.9']:.3f}  AP vs reference {report.ap_vs_reference:.4f}")
    lines.append(f"  matched score error: mean {report.score_error['mean']:.2e}  max {report.score_error['max']:.2e} "
                 f"({report.score_error['pairs']} pairs)")
    if report.coco:
        ref, dep, delta = report.coco["reference"], report.coco["deployed"], report.coco["delta_points"]
        lines.append(f"  COCO AP reference {100 * ref['AP']:.2f}, deployed {100 * dep['AP']:.2f} "
                     f"(delta {delta['AP']:+.2f} points; AP50 {delta['AP50']:+.2f}, AP75 {delta['AP75']:+.2f})")
    lines.extend(f"  FAIL: {reason}" for reason in report.failures)
    lines.extend(f"  note: {note}" for note in report.notes)
    return "\n".join(lines)


def _plots(report: VerifyReport, reference: list[Detections], deployed: list[Detections], out: Path) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    names = []
    if report.per_class:
        classes = list(report.per_class["reference"])
        x = np.arange(len(classes))
        fig, ax = plt.subplots(figsize=(max(5, len(classes) * 0.6), 3.2))
        ax.bar(x - 0.2, [report.per_class["reference"][c] for c in classes], 0.4, label="reference")
        ax.bar(x + 0.2, [report.per_class["deployed"][c] for c in classes], 0.4, label=f"deployed ({report.precision})")
        ax.set_xticks(x, classes, rotation=45, ha="right")
        ax.set_ylabel("AP")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "per_class_ap.png", dpi=110)
        plt.close(fig)
        names.append("per_class_ap.png")
    values = matched_scores(reference, deployed)
    if len(values):
        fig, ax = plt.subplots(figsize=(3.6, 3.6))
        ax.scatter(values[:, 0], values[:, 1], s=4, alpha=0.5)
        ax.plot([0, 1], [0, 1], "k--", linewidth=0.8)
        ax.set_xlabel("reference score")
        ax.set_ylabel("deployed score")
        fig.tight_layout()
        fig.savefig(out / "score_scatter.png", dpi=110)
        plt.close(fig)
        names.append("score_scatter.png")
    return names


def search_summary(search: dict) -> str:
    """One Markdown line about an accuracy search (``M.search.json``)."""
    return (f"INT8 accuracy search: {len(search['layers_kept_high'])} of {search['layers_total']} layers kept in "
            f"{search['high_precision']}, AP {search['ap_deployed']:.2f} vs FP32 {search['ap_reference']:.2f} on its "
            f"validation set (budget {search['max_ap_drop']} points, {'met' if search['budget_met'] else 'NOT met'}), "
            f"{len(search['trajectory'])} steps in {search['seconds']:.0f} s.")


def _search_plot(search: dict, out: Path) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    points = sorted((step["layers_kept_high"], step["ap"]) for step in search["trajectory"])
    fig, ax = plt.subplots(figsize=(4.8, 3.2))
    ax.plot([p[0] for p in points], [p[1] for p in points], "o-", label="INT8, layers kept high")
    ax.axhline(search["ap_reference"], color="k", linewidth=0.8, label="FP32")
    ax.axhline(search["ap_reference"] - search["max_ap_drop"], color="r", linestyle="--", linewidth=0.8, label="budget")
    ax.set_xlabel(f"layers kept in {search['high_precision']} (of {search['layers_total']})")
    ax.set_ylabel("COCO AP (points)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "search.png", dpi=110)
    plt.close(fig)
    return ["search.png"]


def _overlay(image: np.ndarray, reference: Detections, deployed: Detections, score_thresh: float) -> np.ndarray:
    import cv2

    canvas = image.copy()
    for dets, colour, width in ((reference, (0, 200, 0), 3), (deployed, (255, 40, 40), 1)):
        for det in dets.filter(score_thresh=score_thresh):
            x1, y1, x2, y2 = (int(round(v)) for v in det.box)
            cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, width, cv2.LINE_AA)
    return canvas


def write_report(report: VerifyReport, reference: list[Detections], deployed: list[Detections], images: list[np.ndarray],
                 out_dir: str | Path, *, title: str, samples: int = 4, score_thresh: float = 0.3,
                 search: dict | None = None) -> Path:
    """Write ``report.json``, ``report.md``, plots and sample overlays into ``out_dir``; ``search``:
    the model's ``M.search.json`` (AP against layers kept high is plotted)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "report.json", json.dumps(report.to_dict(), indent=2))
    figures = _plots(report, reference, deployed, out) + (_search_plot(search, out) if search else [])
    sample_names = []
    for index in range(min(samples, len(images))):
        name = f"sample_{index}.jpg"
        write_image_rgb(out / name, _overlay(images[index], reference[index], deployed[index], score_thresh))
        sample_names.append(name)
    lines = [f"# {title}", "", f"**{'PASS' if report.passed else 'FAIL'}** — precision `{report.precision}`, {report.images} images.", ""]
    lines += [f"- {reason}" for reason in report.failures] + ([""] if report.failures else [])
    lines += [f"- note: {note}" for note in report.notes] + ([""] if report.notes else [])
    lines += [search_summary(search), ""] if search else []
    lines += ["## Tensors (deployed graph vs the same graph in PyTorch; candidate lists paired first)", "",
              "| output | max abs err | mean abs err | cosine | paired |", "|---|---|---|---|---|"]
    lines += [f"| {t.name} | {t.max_abs:.3g} | {t.mean_abs:.3g} | {t.cosine:.6f} | {t.paired:.3f} |" for t in report.tensors]
    lines += ["", "## Detections (reference as ground truth)", "", "| metric | value |", "|---|---|"]
    lines += [f"| {k} | {v:.4f} |" for k, v in report.precision_recall.items()]
    lines += [f"| AP vs reference | {report.ap_vs_reference:.4f} |",
              f"| matched score error mean / max | {report.score_error['mean']:.2e} / {report.score_error['max']:.2e} |"]
    if report.coco:
        lines += ["", "## COCO AP against the annotations", "", "| | AP | AP50 | AP75 |", "|---|---|---|---|"]
        for name in ("reference", "deployed"):
            m = report.coco[name]
            lines.append(f"| {name} | {100 * m['AP']:.2f} | {100 * m['AP50']:.2f} | {100 * m['AP75']:.2f} |")
        d = report.coco["delta_points"]
        lines.append(f"| delta (points) | {d['AP']:+.2f} | {d['AP50']:+.2f} | {d['AP75']:+.2f} |")
    lines += ["", *[f"![{f}]({f})" for f in figures], "", "Samples: reference boxes thick green, deployed thin red.", ""]
    lines += [f"![{s}]({s})" for s in sample_names]
    write_text_atomic(out / "report.md", "\n".join(lines) + "\n")
    return out / "report.md"
