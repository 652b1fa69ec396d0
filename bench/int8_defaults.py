"""README's INT8 flow, measured: calibrate on the train split, verify on the val split, per method
and placement, each AP drop with its 95% paired bootstrap interval (what chose the default method).

    retina-edge synth --out data/synth --images 1000
    python bench/int8_defaults.py --data data/synth --calib-count 128 --val-count 200 --out out/int8-defaults

Prints one line per (method, target) and writes ``results.json`` into ``--out``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import time
from pathlib import Path

from retina_edge.cli.main import main as cli


def measure(data: Path, out: Path, method: str, target: str, args: argparse.Namespace) -> dict:
    model = out / f"{method}-{target}.onnx"
    report = out / f"{method}-{target}.json"
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        assert cli(["build", "--int8", "--target", target, "--weights", args.weights, "--calib", str(data / "train"),
                    "--calib-count", str(args.calib_count), "--calib-method", method, "-o", str(model)]) == 0
        built = time.perf_counter() - start
        code = cli(["verify", "--model", str(model), "--weights", args.weights, "--images", str(data / "val"),
                    "--ann", str(data / "annotations" / "instances_val.json"), "--count", str(args.val_count),
                    "--json", str(report)])
    coco = json.loads(report.read_text())["coco"]
    low, high = coco["delta_points_ci95"]["AP"]
    return {"method": method, "target": target, "calib_images": args.calib_count, "val_images": args.val_count,
            "delta_AP": coco["delta_points"]["AP"], "delta_AP_ci95": [low, high], "delta_AP_se": coco["delta_points_se"]["AP"],
            "reference_AP": 100 * coco["reference"]["AP"], "verify_exit": code, "build_s": built,
            "total_s": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="a synth dataset folder (train and val splits)")
    parser.add_argument("--weights", default="preset:synth")
    parser.add_argument("--calib-count", type=int, default=128)
    parser.add_argument("--val-count", type=int, default=200)
    parser.add_argument("--methods", nargs="+", default=["entropy", "max"])
    parser.add_argument("--targets", nargs="+", default=["tensorrt", "cpu"])
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for method in args.methods:
        for target in args.targets:
            row = measure(Path(args.data), out, method, target, args)
            rows.append(row)
            print(f"{method:8} {target:9} calib {row['calib_images']} train images, verify {row['val_images']} val images: "
                  f"delta AP {row['delta_AP']:+.2f} [{row['delta_AP_ci95'][0]:+.2f}, {row['delta_AP_ci95'][1]:+.2f}] points "
                  f"(FP32 reference {row['reference_AP']:.2f}); verify exit {row['verify_exit']}; {row['total_s']:.0f} s",
                  flush=True)
            (out / "results.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
