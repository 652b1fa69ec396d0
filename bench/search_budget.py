"""The INT8 AP-budget search on held-out data: does a budget it calls met hold on unseen images?

Per seed, one synthetic dataset of ``2 * --images`` images (the preset's distribution, a seed the
preset never saw): its train split is the search's validation set, its val split the unseen
images. The search runs (``build --int8 --max-ap-drop``), then ``verify`` measures the written
model's drop on the unseen images with its standard error. A budget the search calls met should
hold there within the budget plus two standard errors (of the unseen drop).

    python bench/search_budget.py --calib data/synth/train --images 300 --budget 1.0 --seeds 11 12 13 --out out/search
    python bench/search_budget.py --calib data/synth/train --images 60 --budget 0.05 --seeds 11 --out out/search-tight
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import time
from pathlib import Path

from retina_edge.cli.main import main as cli


def run_seed(seed: int, args: argparse.Namespace, out: Path) -> dict:
    data = out / f"data-{seed}"
    model = out / f"m-{seed}.onnx"
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        if not (data / "annotations" / "instances_val.json").is_file():
            assert cli(["synth", "--out", str(data), "--images", str(2 * args.images), "--seed", str(seed), "--sides", "176",
                        "224", "--max-object", "200", "--val-fraction", "0.5"]) == 0
    build = ["build", "--int8", "--target", args.target, "--weights", "preset:synth", "--calib", args.calib,
             "--calib-count", str(args.calib_count), "--calib-method", args.calib_method, "--max-ap-drop", str(args.budget),
             "--val", str(data / "annotations" / "instances_train.json"), "-o", str(model)]
    code = cli(build)
    record = json.loads(model.with_suffix(".search.json").read_text())
    written = model if record["budget_met"] else model.with_name(f"{model.stem}.best.onnx")
    row = {"seed": seed, "val_images": record["val_images"], "budget": args.budget, "verdict": record["verdict"],
           "build_exit": code, "kept_high": len(record["layers_kept_high"]), "layers": record["layers_total"],
           "search_drop": record["ap_drop"], "search_drop_ci95": record["ap_drop_ci95"],
           "images_needed": record["images_needed"], "int8_drop_se": record["int8_drop_se"]}
    report = out / f"unseen-{seed}.json"
    with contextlib.redirect_stdout(io.StringIO()):
        cli(["verify", "--model", str(written), "--weights", "preset:synth", "--images", str(data / "val"),
             "--ann", str(data / "annotations" / "instances_val.json"), "--count", str(args.images), "--json", str(report),
             "--max-delta-ap", str(max(args.budget, 1e-6))])
    coco = json.loads(report.read_text())["coco"]
    row.update(unseen_images=args.images, unseen_drop=-coco["delta_points"]["AP"], unseen_se=coco["delta_points_se"]["AP"],
               seconds=time.perf_counter() - start)
    row["holds"] = row["unseen_drop"] <= args.budget + 2 * row["unseen_se"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calib", required=True, help="calibration images (fixed across seeds)")
    parser.add_argument("--calib-count", type=int, default=128)
    parser.add_argument("--calib-method", default="max")
    parser.add_argument("--target", default="cpu")
    parser.add_argument("--images", type=int, default=300, help="search images, and as many unseen ones")
    parser.add_argument("--budget", type=float, default=1.0)
    parser.add_argument("--seeds", type=int, nargs="+", default=[11, 12, 13])
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for seed in args.seeds:
        row = run_seed(seed, args, out)
        rows.append(row)
        low, high = row["search_drop_ci95"]
        print(f"seed {seed}: {row['val_images']} search images, budget {args.budget}: {row['verdict']} (images needed "
              f"{row['images_needed']}), {row['kept_high']} of {row['layers']} layers kept high, search drop "
              f"{row['search_drop']:.2f} [{low:.2f}, {high:.2f}]; unseen {row['unseen_images']} images: drop "
              f"{row['unseen_drop']:.2f} (SE {row['unseen_se']:.2f}), within budget + 2 SE: {row['holds']}; "
              f"{row['seconds']:.0f} s", flush=True)
        (out / "results.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
