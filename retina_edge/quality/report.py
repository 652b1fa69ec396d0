"""Verify reports: terminal table, JSON, Markdown with plots (matplotlib, imported only here)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from retina_edge.atomic import write_text_atomic
from retina_edge.imageio import write_image_rgb
from retina_edge.progress import plural
from retina_edge.runtime.core.results import Detections
from retina_edge.quality.verify import VerifyReport, matched_scores


def terminal_table(report: VerifyReport) -> str:
    target = f" for {report.target}" if report.target != "any" else ""
    lines = [f"precision {report.precision}{target}, {report.images} images: {'PASS' if report.passed else 'FAIL'}"]
    for t in report.tensors:
        lines.append(f"  tensor {t.name:<16} " + (
            f"max|d| {t.max_abs:.3g}  mean|d| {t.mean_abs:.3g}  cos {t.cosine:.6f}  paired {t.paired:.3f}" if t.compared
            else f"nothing compared: none of {t.candidates} candidates paired" if t.candidates
            else "nothing compared: no candidate above the score threshold on either side"))
    pr = report.precision_recall
    lines.append(f"  detections vs reference: P/R@0.5 {pr['precision@0.5']:.3f}/{pr['recall@0.5']:.3f}  "
                 f"P/R@0.9 {pr['precision@0.9']:.3f}/{pr['recall@0.9']:.3f}  AP vs reference {report.ap_vs_reference:.4f}")
    lines.append(f"  matched score error: mean {report.score_error['mean']:.2e}  max {report.score_error['max']:.2e} "
                 f"({report.score_error['pairs']} pairs)")
    if report.coco:
        lines.append("  " + coco_line(report.coco))
    lines.extend(f"  FAIL: {reason}" for reason in report.failures)
    lines.extend(f"  note: {note}" for note in report.notes)
    return "\n".join(lines)


def _ci(values: list[float], *, signed: bool = True) -> str:
    return f"[{values[0]:+.2f}, {values[1]:+.2f}]" if signed else f"[{values[0]:.2f}, {values[1]:.2f}]"


def coco_line(coco: dict) -> str:
    """COCO AP of both models and their difference, each with its 95% interval (points)."""
    ref, dep, delta = coco["reference"], coco["deployed"], coco["delta_points"]
    line = f"COCO AP reference {100 * ref['AP']:.2f}, deployed {100 * dep['AP']:.2f}"
    if "delta_points_ci95" not in coco:
        return line + f" (delta {delta['AP']:+.2f} points; AP50 {delta['AP50']:+.2f}, AP75 {delta['AP75']:+.2f})"
    ci = coco["delta_points_ci95"]
    low_r, high_r = coco["reference_points_ci95"]["AP"]
    low_d, high_d = coco["deployed_points_ci95"]["AP"]
    return (f"COCO AP reference {100 * ref['AP']:.2f} [{low_r:.2f}, {high_r:.2f}], deployed {100 * dep['AP']:.2f} "
            f"[{low_d:.2f}, {high_d:.2f}]; delta {delta['AP']:+.2f} {_ci(ci['AP'])} points (AP50 {delta['AP50']:+.2f} "
            f"{_ci(ci['AP50'])}, AP75 {delta['AP75']:+.2f} {_ci(ci['AP75'])}; 95% paired bootstrap over "
            f"{coco['bootstrap']['images']} images)")


def junit_xml(report: VerifyReport, *, name: str) -> str:
    """The report as JUnit XML: one testcase per check, a failure element where it failed."""
    from xml.etree import ElementTree

    suite = ElementTree.Element("testsuite", name=f"retina-edge verify {name}", tests=str(len(report.checks)),
                                failures=str(sum(not c["passed"] for c in report.checks)), errors="0", skipped="0")
    for check in report.checks:
        case = ElementTree.SubElement(suite, "testcase", classname=f"verify.{report.precision}.{report.target}",
                                      name=check["name"])
        if check["passed"]:
            ElementTree.SubElement(case, "system-out").text = check["detail"]
        else:
            ElementTree.SubElement(case, "failure", message=check["detail"], type="threshold")
    if report.notes:
        ElementTree.SubElement(suite, "system-out").text = "\n".join(report.notes)
    suites = ElementTree.Element("testsuites")
    suites.append(suite)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ElementTree.tostring(suites, encoding="unicode") + "\n"


def _plots(report: VerifyReport, reference: list[Detections], deployed: list[Detections], out: Path) -> list[str]:
    plt = _pyplot()
    if plt is None:
        return []
    names = []
    if report.per_class:
        fig = per_class_figure(report, plt)
        fig.savefig(out / "per_class_ap.png", dpi=110)
        plt.close(fig)
        names.append("per_class_ap.png")
    if "delta_points_ci95" in report.coco:
        names.append(_ap_interval_plot(report.coco, report.precision, out, plt))
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


def per_class_figure(report: VerifyReport, plt):  # noqa: ANN001, ANN201 (matplotlib's pyplot and Figure)
    """Both models' AP per class as bars, the legend above the axes: inside them it covered the bars
    of classes with high AP (where every class scores high there is no free corner)."""
    classes = list(report.per_class["reference"])
    x = np.arange(len(classes))
    fig, ax = plt.subplots(figsize=(max(5, len(classes) * 0.6), 3.4))
    ax.bar(x - 0.2, [report.per_class["reference"][c] for c in classes], 0.4, label="reference")
    ax.bar(x + 0.2, [report.per_class["deployed"][c] for c in classes], 0.4, label=f"deployed ({report.precision})")
    ax.set_xticks(x, classes, rotation=45, ha="right")
    ax.set_ylabel("AP")
    ax.set_ylim(0, 1)
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, frameon=False, fontsize=8)
    fig.tight_layout()
    return fig


def _ap_interval_plot(coco: dict, precision: str, out: Path, plt) -> str:  # noqa: ANN001
    """AP, AP50, AP75 of both models and their difference, with 95% interval error bars."""
    metrics = ("AP", "AP50", "AP75")
    fig, (left, right) = plt.subplots(1, 2, figsize=(7.2, 3.0))
    x = np.arange(len(metrics))
    for offset, name in ((-0.15, "reference"), (0.15, "deployed")):
        values = np.array([100 * coco[name][m] for m in metrics])
        bounds = np.array([coco[f"{name}_points_ci95"][m] for m in metrics])
        left.errorbar(x + offset, values, yerr=[values - bounds[:, 0], bounds[:, 1] - values], fmt="o", capsize=3,
                      label=name if name == "reference" else f"deployed ({precision})")
    left.set_xticks(x, metrics)
    left.set_ylabel("COCO AP (points)")
    left.legend(fontsize=7)
    delta = np.array([coco["delta_points"][m] for m in metrics])
    bounds = np.array([coco["delta_points_ci95"][m] for m in metrics])
    right.errorbar(x, delta, yerr=[delta - bounds[:, 0], bounds[:, 1] - delta], fmt="o", capsize=3, color="C3")
    right.axhline(0, color="k", linewidth=0.8)
    right.set_xticks(x, metrics)
    right.set_ylabel("deployed - reference (points)")
    right.set_title(f"95% paired intervals, {coco['bootstrap']['images']} images", fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "ap_intervals.png", dpi=110)
    plt.close(fig)
    return "ap_intervals.png"


def search_summary(search: dict) -> str:
    """One Markdown line about an accuracy search (``M.search.json``)."""
    line = (f"INT8 accuracy search: {len(search['layers_kept_high'])} of {search['layers_total']} layers kept in "
            f"{search['high_precision']}, AP {search['ap_deployed']:.2f} vs FP32 {search['ap_reference']:.2f} on its "
            f"validation set")
    if "ap_drop_ci95" not in search:  # a record from before intervals
        return (line + f" (budget {search['max_ap_drop']} points, {'met' if search['budget_met'] else 'NOT met'}), "
                f"{plural(len(search['trajectory']), 'step')} in {search['seconds']:.0f} s.")
    low, high = search["ap_drop_ci95"]
    line += (f" of {search['val_images']} images: drop {search['ap_drop']:.2f} points, 95% interval {low:.2f} to "
             f"{high:.2f}; budget {search['max_ap_drop']} on the upper bound: **{search['verdict']}**")
    if search["verdict"] == "unresolved":
        needed = f"about {search['images_needed']}" if search["images_needed"] else "no number of"
        line += (f" (these images cannot resolve it: plain INT8's drop has a standard error of "
                 f"{search['int8_drop_se']:.2f} points; {needed} images would)")
    return line + f"; {plural(len(search['trajectory']), 'step')} in {search['seconds']:.0f} s."


def _pyplot():  # noqa: ANN202
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def _search_plot(search: dict, out: Path) -> list[str]:
    plt = _pyplot()
    if plt is None:
        return []
    fig, ax = plt.subplots(figsize=(4.8, 3.2))
    _trajectory_axes(ax, search["trajectory"], search["max_ap_drop"], search["high_precision"], search["layers_total"])
    fig.tight_layout()
    fig.savefig(out / "search.png", dpi=110)
    plt.close(fig)
    return ["search.png"] + ([sensitivity_plot(search["sensitivity"], search["trajectory"], out / "sensitivity.png",
                                               budget=search["max_ap_drop"], high=search["high_precision"]).name]
                             if search.get("sensitivity") else [])


def _trajectory_axes(ax, trajectory: list[dict], budget: float, high: str, total: int | None = None) -> None:  # noqa: ANN001
    """The AP drop (with its 95% interval where recorded) against layers kept high, and the budget."""
    steps = sorted(trajectory, key=lambda step: step["layers_kept_high"])
    x = [step["layers_kept_high"] for step in steps]
    drop = np.array([step.get("drop", 0.0) for step in steps])
    if all("drop_ci95" in step for step in steps):
        bounds = np.array([step["drop_ci95"] for step in steps]).reshape(-1, 2)
        ax.errorbar(x, drop, yerr=[drop - bounds[:, 0], bounds[:, 1] - drop], fmt="o-", capsize=3,
                    label="INT8 drop, 95% interval")
    else:
        ax.plot(x, drop, "o-", label="INT8 drop")
    ax.axhline(0, color="k", linewidth=0.8)
    ax.axhline(budget, color="r", linestyle="--", linewidth=0.8, label="budget (upper bound must be below)")
    ax.set_xlabel(f"layers kept in {high}" + (f" (of {total})" if total else ""))
    ax.set_ylabel("AP drop vs FP32 (points)")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))  # layer counts: one step showed -0.04 .. 0.04
    ax.set_xlim(min(x) - 0.5, max(x) + 0.5)
    ax.legend(fontsize=7)


def sensitivity_plot(sensitivity: list[dict], trajectory: list[dict], path: str | Path, *, budget: float,
                     high: str) -> Path | None:
    """Each quantized layer's sensitivity (most sensitive first; kept-high ones marked) above the AP
    drop with its interval along the search; None without matplotlib or sensitivity scores."""
    plt = _pyplot()
    if plt is None or not sensitivity:
        return None
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(max(6.0, len(sensitivity) * 0.09), 6.0))
    scores = np.array([max(entry["score"], 1e-12) for entry in sensitivity])
    colours = ["C3" if entry["kept_high"] else "C0" for entry in sensitivity]
    top.bar(np.arange(len(scores)), scores, color=colours, width=0.8)
    top.set_yscale("log")
    top.set_xlabel(f"quantized layers, most sensitive first (red: kept in {high})")
    top.set_ylabel("output error alone in INT8")
    _trajectory_axes(bottom, trajectory, budget, high, len(sensitivity))
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


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
    if search and search.get("sensitivity"):
        lines += ["## Per-layer sensitivity (the search's proxy: head-output error with the layer alone in INT8)", "",
                  "| rank | layer | score | kept high |", "|---|---|---|---|"]
        lines += [f"| {rank} | `{entry['layer']}` | {entry['score']:.3g} | {'yes' if entry['kept_high'] else ''} |"
                  for rank, entry in enumerate(search["sensitivity"][:15], start=1)]
        lines += [f"| ... | {len(search['sensitivity']) - 15} more in the model's .search.json | | |"] * (len(search["sensitivity"]) > 15)
        lines += [""]
    lines += ["## Tensors (deployed graph vs the same graph in PyTorch; candidate lists paired first)", "",
              "| output | max abs err | mean abs err | cosine | paired |", "|---|---|---|---|---|"]
    lines += [f"| {t.name} | {t.max_abs:.3g} | {t.mean_abs:.3g} | {t.cosine:.6f} | {t.paired:.3f} |" if t.compared
              else f"| {t.name} | - | - | - | nothing compared ({t.candidates} candidates) |" for t in report.tensors]
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
        if "delta_points_ci95" in report.coco:
            for name in ("reference", "deployed", "delta"):
                ci = report.coco[f"{name}_points_ci95"]
                signed = name == "delta"
                lines.append(f"| {name} 95% interval | " + " | ".join(_ci(ci[m], signed=signed) for m in ("AP", "AP50", "AP75")) + " |")
            lines += ["", f"Intervals: 95% percentile, paired bootstrap over the {report.coco['bootstrap']['images']} "
                      f"images ({report.coco['bootstrap']['resamples']} resamples, seed {report.coco['bootstrap']['seed']}); "
                      f"AP gate: the {report.thresholds.get('gate', 'lower')} bound of the drop must be within "
                      f"{report.thresholds.get('max_delta_ap')} points."]
    lines += ["", *[f"![{f}]({f})" for f in figures], "", "Samples: reference boxes thick green, deployed thin red.", ""]
    lines += [f"![{s}]({s})" for s in sample_names]
    write_text_atomic(out / "report.md", "\n".join(lines) + "\n")
    return out / "report.md"
