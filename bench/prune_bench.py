"""Structured pruning's trade-off: MACs, parameters, ONNX Runtime latency (FP32 and INT8 for CPUs)
as ratios to the unpruned model in one interleaved run, and the AP cost on images no model saw.

    python bench/prune_bench.py --folder runs/prune-bench [--amount 0.5 --steps 3] [--iters 40]
    python bench/prune_bench.py --folder runs/prune-bench --r50   # ResNet-50-FPN 512x512, latency only

Preset part: ``retina-edge prune --amount 0.5 --steps 3`` of ``preset:synth`` (other settings the
defaults): each step's fine-tuned model (amounts 1/6, 1/3, 1/2) is measured; fine-tuned on the
preset's own training images (``synth --seed 0``, its val split for the steps' reports); AP and
the paired 95% interval of the difference to the unpruned preset on the val split of
``synth --seed 1`` (images none of them trained on). ``--r50``: ResNet-50-FPN (v1,
torchvision's layout, seeded random weights, 512x512) pruned at the same amounts without
fine-tuning (latency does not depend on the weights). INT8: ``build --int8 --target cpu``
(calibrated on 64 training images; on 2 synthetic ones for ResNet-50, whose latency alone is
measured). Everything is kept in ``--folder``, so a re-run resumes.

``--control RUN``: a ``retina-edge prune --amount 0`` run with the pruned run's steps and
iterations (the unpruned model fine-tuned on the same schedule). Fine-tuning alone can move AP (a
model trained on few iterations gains from more), so each pruned step's AP is also compared,
paired, with the control's step of the same number: the part of the difference pruning causes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

CLI = [sys.executable, "-m", "retina_edge.cli.main"]


def cli(*args: str) -> None:
    subprocess.run([*CLI, *args], check=True)


def prepare_data(folder: Path) -> tuple[Path, Path]:
    """(the preset's training data, unseen test data) under ``folder``."""
    train, unseen = folder / "data" / "synth", folder / "data" / "unseen"
    if not (train / "annotations" / "instances_val.json").is_file():
        cli("synth", "--out", str(train), "--images", "1000", "--seed", "0", "--sides", "176", "224", "--max-object", "200")
    if not (unseen / "annotations" / "instances_val.json").is_file():
        cli("synth", "--out", str(unseen), "--images", "560", "--seed", "1", "--val-fraction", "0.95", "--sides", "176",
            "224", "--max-object", "200")
    return train, unseen


def pruned_presets(folder: Path, train: Path, amount: float, steps: int, runs: list[Path]) -> dict[str, str]:
    """name -> checkpoint: the preset and its pruned, fine-tuned versions: the steps of one
    ``retina-edge prune --amount AMOUNT --steps STEPS`` run (its other settings the defaults), or
    of the prune runs in ``runs`` (their report.json)."""
    if not runs:
        out = folder / f"prune-{amount:g}"
        if not (out / "pruned.pth").is_file():
            resume = ["--resume"] if (out / "prune.json").is_file() else []
            cli("prune", "--weights", "preset:synth", "--data", str(train), "--amount", f"{amount:g}", "--steps",
                str(steps), "--out", str(out), *resume)
        runs = [out]
    weights = {"unpruned": "preset:synth"}
    for run in runs:
        for row in step_rows(run):
            weights[f"pruned {row['amount']:g}"] = row["checkpoint"]
    return weights


def step_rows(run: Path) -> list[dict]:
    """The pruned steps' rows of a prune run's report (step 0, the unpruned model, left out)."""
    return json.loads((run / "report.json").read_text())["steps"][1:]


def control_steps(run: Path) -> dict[str, str]:
    """"control N" -> the checkpoint of step N of an ``--amount 0`` prune run."""
    return {f"control {row['step']}": row["checkpoint"] for row in step_rows(run)}


def accuracy(weights: dict[str, str], unseen: Path, controls: dict[str, str]) -> dict[str, dict]:
    """AP (points) of each model and its paired difference to the unpruned one, on the unseen images;
    a pruned model of step N is also compared with ``control N`` where there is one."""
    from retina_edge.data.coco_dataset import load_coco_index, resolve_split
    from retina_edge.metrics.bootstrap import paired_bootstrap
    from retina_edge.metrics.evaluate import coco_evaluate, predict_coco
    from retina_edge.model.checkpoints import load_model
    from retina_edge.model.reference import reference_detector

    ann_file, image_dir = resolve_split(str(unseen), "val")
    index = load_coco_index(ann_file, image_dir)
    tables, results = {}, {}
    for name, spec in {**weights, **controls}.items():
        model = load_model(spec)
        detections = predict_coco(reference_detector(model), index, category_ids=model.config.category_ids)
        metrics = coco_evaluate(ann_file, detections, image_ids=[img.image_id for img in index.images])
        tables[name] = metrics.matches
        results[name] = {"AP": 100 * metrics.summary["AP"], "images": len(index.images)}
    for name, table in tables.items():
        if name != "unpruned":
            delta = paired_bootstrap(tables["unpruned"], table).delta["AP"]
            results[name]["delta_AP"] = [delta.point, delta.low, delta.high]
    for step, name in enumerate([n for n in weights if n != "unpruned"], start=1):
        if f"control {step}" in tables:
            delta = paired_bootstrap(tables[f"control {step}"], tables[name]).delta["AP"]
            results[name]["delta_AP_vs_control"] = [delta.point, delta.low, delta.high]
    return results


def graphs(weights: dict[str, str], folder: Path, calib: Path, imgsz: int, count: int) -> dict[str, dict[str, Path]]:
    """name -> {"fp32": graph, "int8": graph for CPUs}, exported and built (kept for re-runs)."""
    out = {}
    for name, spec in weights.items():
        stem = name.replace(" ", "-")  # "pruned-0.1667": with_suffix would cut at its dot
        fp32, int8 = folder / "graphs" / f"{stem}.fp32.onnx", folder / "graphs" / f"{stem}.int8-cpu.onnx"
        fp32.parent.mkdir(parents=True, exist_ok=True)
        size = ["--imgsz", str(imgsz), str(imgsz), "--batch", "1", "1", "1"]
        if not fp32.is_file():
            cli("export", "--weights", spec, *size, "-o", str(fp32))
        if not int8.is_file():
            cli("build", "--int8", "--target", "cpu", "--weights", spec, *size, "--calib", str(calib), "--calib-count", str(count),
                "-o", str(int8))
        out[name] = {"fp32": fp32, "int8": int8}
    return out


def latency(models: dict[str, dict[str, Path]], iters: int, threads: int) -> dict[str, dict[str, float]]:
    """Per precision, one interleaved run of every model on ONNX Runtime; ratio to the unpruned model."""
    from retina_edge.data.synth import SynthConfig, render_image
    from retina_edge.quality.bench import detector_entry, format_table, run_bench
    from retina_edge.runtime import Detector
    from retina_edge.runtime.backends import BackendOptions

    images = [render_image(SynthConfig(seed=123), i)[0] for i in range(16)]
    ratios: dict[str, dict[str, float]] = {name: {} for name in models}
    for precision in ("fp32", "int8"):
        entries = [detector_entry(f"{name} {precision}", Detector(paths[precision], backend="onnxruntime",
                                                                   options=BackendOptions(threads=threads)))
                   for name, paths in models.items()]
        summaries = run_bench(entries, images, batch=1, iterations=iters, warmup=3)
        print(format_table(summaries))
        for name, summary in zip(models, summaries):
            ratios[name][precision] = summary["ratio_to_first"]
            ratios[name][f"{precision}_inference_ms"] = summary["inference_ms"]
    return ratios


def costs(weights: dict[str, str]) -> dict[str, dict[str, float]]:
    from retina_edge.model.checkpoints import load_model
    from retina_edge.model.measure import model_cost

    values = {name: model_cost(load_model(spec).config) for name, spec in weights.items()}
    base = values["unpruned"]
    return {name: {"GMACs": cost.macs / 1e9, "MACs": cost.macs / base.macs, "Mparams": cost.params / 1e6,
                   "params": cost.params / base.params} for name, cost in values.items()}


def r50_models(folder: Path, amounts: list[float], imgsz: int) -> tuple[dict[str, str], Path]:
    """ResNet-50-FPN (seeded random weights) at ``imgsz`` and its pruned copies (no fine-tuning)."""
    import torch

    from retina_edge.data.synth import SynthConfig, render_image
    from retina_edge.imageio import write_image_rgb
    from retina_edge.model.retinanet import build_model
    from retina_edge.model.checkpoints import save_checkpoint
    from retina_edge.model.pruning import PruneOptions, prune_model

    r50 = folder / "r50"
    calib = r50 / "calib"
    if not calib.is_dir():
        for index in range(2):
            write_image_rgb(calib / f"{index:04d}.jpg", render_image(SynthConfig(seed=6, min_side=imgsz, max_side=imgsz), index)[0])
    weights = {"unpruned": str(r50 / "unpruned.pth")}
    for amount in amounts:
        weights[f"pruned {amount:g}"] = str(r50 / f"pruned-{amount:g}.pth")
    if not all(Path(p).is_file() for p in weights.values()):
        torch.manual_seed(0)
        model = build_model("resnet50_fpn", num_classes=91, min_size=imgsz, max_size=imgsz).eval()
        save_checkpoint(weights["unpruned"], model)
        for amount in amounts:
            pruned = build_model("resnet50_fpn", num_classes=91, min_size=imgsz, max_size=imgsz).eval()
            pruned.load_state_dict(model.state_dict())
            prune_model(pruned, PruneOptions(amount))
            save_checkpoint(weights[f"pruned {amount:g}"], pruned)
    return weights, calib


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folder", type=Path, required=True, help="work folder (kept: a re-run resumes)")
    parser.add_argument("--amount", type=float, default=0.5, help="the last step's amount")
    parser.add_argument("--steps", type=int, default=3, help="pruning steps, each a model to measure")
    parser.add_argument("--iters", type=int, default=40, help="timed runs per model and precision")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--r50", action="store_true", help="ResNet-50-FPN at 512x512, latency only")
    parser.add_argument("--runs", type=Path, nargs="+", default=[], help="measure the steps of these prune runs instead")
    parser.add_argument("--control", type=Path, help="an --amount 0 prune run on the same schedule, compared step by step")
    parser.add_argument("--no-accuracy", action="store_true", help="costs and latency only (preset part)")
    args = parser.parse_args()
    args.folder.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("RETINA_EDGE_CACHE", str(args.folder / "cache"))
    if args.r50:
        amounts = [round(args.amount * (k + 1) / args.steps, 4) for k in range(args.steps)]
        weights, calib = r50_models(args.folder, amounts, 512)
        report = {"costs": costs(weights), "latency": latency(graphs(weights, args.folder / "r50", calib, 512, 2), args.iters,
                                                              args.threads)}
    else:
        train, unseen = prepare_data(args.folder)
        weights = pruned_presets(args.folder, train, args.amount, args.steps, args.runs)
        controls = control_steps(args.control) if args.control else {}
        report = {"costs": costs(weights), "accuracy": {} if args.no_accuracy else accuracy(weights, unseen, controls),
                  "latency": latency(graphs(weights, args.folder, train / "train", 192, 64), args.iters, args.threads)}
    name = "r50.json" if args.r50 else "preset-latency.json" if args.no_accuracy else "preset.json"
    (args.folder / name).write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
