"""Issue 39, measured: PTQ against QAT on the preset, per calibration method and INT8 recipe.

For ``max`` and ``entropy`` calibration and each target (``tensorrt``, ``cpu``): ``retina-edge qat``
with its defaults (which writes the PTQ graph it starts from, ``build --int8``'s), its wall time and
peak memory (its own process); then COCO AP of the FP32 graph, each PTQ and each QAT graph on
images the preset never saw (synthetic seed 1), through ONNX Runtime, with paired 95% bootstrap
intervals: PTQ - FP32, QAT - FP32 and QAT - PTQ; the Q/DQ positions of each QAT graph against its
PTQ graph; and ONNX Runtime latency of each PTQ/QAT pair, interleaved in one process.

    python bench/qat_bench.py --out out/qat-bench          # makes its data (seed 0 train, seed 1 val)

Each step skips what an earlier run of the same ``--out`` already wrote; ``results.json`` has it all.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

PRESET = "preset:synth"


def ensure_data(out: Path, val_images: int) -> tuple[Path, Path]:
    """The preset's training data (seed 0) and unseen images (seed 1), made once."""
    from retina_edge.cli.main import main as cli

    train, val = out / "data-train", out / "data-val"
    if not (train / "annotations" / "instances_train.json").is_file():
        assert cli(["synth", "--out", str(train), "--images", "1000", "--seed", "0", "--sides", "176", "224",
                    "--max-object", "200"]) == 0
    if not (val / "annotations" / "instances_val.json").is_file():
        images = int(val_images / 0.9) + 1
        assert cli(["synth", "--out", str(val), "--images", str(images), "--seed", "1", "--val-fraction", "0.9",
                    "--sides", "176", "224", "--max-object", "200"]) == 0
    return train, val


def run_qat(out: Path, train: Path, method: str, target: str, extra: list[str]) -> dict:
    """One ``retina-edge qat`` in its own process: its wall time and peak resident memory."""
    model, run_dir, record = out / f"qat-{method}-{target}.onnx", out / f"run-{method}-{target}", out / f"qat-{method}-{target}.json"
    if record.is_file() and model.is_file():
        return json.loads(record.read_text())
    argv = ["qat", "--weights", PRESET, "--data", str(train), "--target", target, "--calib-method", method,
            "-o", str(model), "--out", str(run_dir), *extra]
    code = ("import resource, sys\nfrom retina_edge.cli.main import main\nrc = main(sys.argv[1:])\n"
            "print('PEAK_RSS_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\nsys.exit(rc)")
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True)  # run the bench niced
    seconds = time.perf_counter() - start
    (out / f"qat-{method}-{target}.log").write_text(done.stdout + done.stderr)
    if done.returncode:
        raise SystemExit(f"qat {method} {target} failed:\n{done.stderr[-3000:]}")
    peak = next(int(line.split()[1]) for line in done.stdout.splitlines() if line.startswith("PEAK_RSS_KB"))
    result = {"method": method, "target": target, "qat_wall_s": seconds, "peak_rss_mb": peak / 1024,
              "ptq": str(run_dir / "ptq.onnx"), "qat": str(model), "argv": argv}
    record.write_text(json.dumps(result, indent=1))
    return result


def qdq_positions(path: str) -> set[tuple]:
    """(consumer node, input index, quantized source, per-channel?) of every Q/DQ pair a node reads."""
    import onnx

    graph = onnx.load(path, load_external_data=False).graph
    producer = {output: node for node in graph.node for output in node.output}
    positions = set()
    for node in graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        for index, name in enumerate(node.input):
            dequantize = producer.get(name)
            if dequantize is not None and dequantize.op_type == "DequantizeLinear":
                quantize = producer.get(dequantize.input[0])
                source = quantize.input[0] if quantize is not None and quantize.op_type == "QuantizeLinear" else "stored"
                positions.add((node.name, index, source if not source.startswith(("onnx::", "model.")) else "weight"))
    return positions


def accuracy(val: Path, graphs: dict[str, str], pairs: list[tuple[str, str]]) -> dict:
    """AP of every graph on ``val`` and the paired intervals of each (deployed, reference) pair."""
    from retina_edge.calib.search import ValidationSet
    from retina_edge.metrics.bootstrap import bootstrap_intervals, paired_bootstrap
    from retina_edge.runtime.core.model_file import read_deployment

    validation = ValidationSet(str(val / "annotations" / "instances_val.json"))
    tables = {name: validation.matches(path, read_deployment(path)) for name, path in graphs.items()}
    result = {"images": len(validation.image_ids),
              "AP": {name: str(bootstrap_intervals(table)["AP"]) for name, table in tables.items()}}
    for deployed, reference in pairs:
        delta = paired_bootstrap(tables[reference], tables[deployed], resamples=2000).delta["AP"]
        result[f"{deployed} - {reference}"] = {"points": delta.point, "ci95": delta.pair(), "se": delta.se,
                                               "resolved": not delta.low <= 0 <= delta.high}
    return result


def latency(pairs: dict[str, tuple[str, str]], rounds: int) -> dict:
    """ONNX Runtime (2 threads, batch 1) latency of each (PTQ, QAT) pair, runs interleaved ABAB."""
    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    result = {}
    for name, (ptq, qat) in pairs.items():
        sessions = [ort.InferenceSession(path, options, providers=["CPUExecutionProvider"]) for path in (ptq, qat)]
        shape = [d if isinstance(d, int) else 1 for d in sessions[0].get_inputs()[0].shape]
        batch = {"images": np.random.default_rng(0).random(shape, np.float32)}
        times = [[], []]
        for round_ in range(rounds + 5):
            for which in ((0, 1) if round_ % 2 else (1, 0)):
                start = time.perf_counter()
                sessions[which].run(None, batch)
                if round_ >= 5:
                    times[which].append(1000 * (time.perf_counter() - start))
        ptq_ms, qat_ms = (np.array(t) for t in times)
        ratios = qat_ms / ptq_ms
        result[name] = {"ptq_ms_median": float(np.median(ptq_ms)), "qat_ms_median": float(np.median(qat_ms)),
                        "ratio_median": float(np.median(ratios)),
                        "ratio_iqr": [float(np.percentile(ratios, 25)), float(np.percentile(ratios, 75))],
                        "rounds": rounds}
    return result


def backends(ptq: str, train: Path, rounds: int) -> dict:
    """Seconds of one training step's forward and backward (batch 8) of the preset with fake
    quantization at ``ptq``'s sites, by ModelOpt's TensorQuantizer and by PyTorch's own, interleaved."""
    import numpy as np
    import torch

    from retina_edge.calib.qat import attach_fake_quant
    from retina_edge.calib.qat_sites import read_quant_sites
    from retina_edge.data.coco_dataset import load_coco_index, resolve_split
    from retina_edge.data.detection_data import DetectionDataset, collate
    from retina_edge.model.checkpoints import load_model
    from retina_edge.training.train import freeze_bn_statistics

    model, sites = load_model(PRESET), read_quant_sites(ptq)
    dataset = DetectionDataset(load_coco_index(*resolve_split(str(train), "train")), hflip_prob=0.0)
    images, targets = collate([dataset[i] for i in range(8)])
    times: dict[str, list[float]] = {"none": [], "modelopt": [], "torch": []}
    for round_ in range(rounds + 1):
        for backend in times:
            fake = attach_fake_quant(model, sites, backend, torch.zeros(1, 3, 192, 192)) if backend != "none" else None
            model.train()
            freeze_bn_statistics(model)
            start = time.perf_counter()
            sum(model(images, targets).values()).backward()
            if round_:
                times[backend].append(time.perf_counter() - start)
            model.zero_grad(set_to_none=True)
            if fake is not None:
                fake.remove()
    return {backend: {"step_s_median": float(np.median(t)), "rounds": rounds} for backend, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out/qat-bench")
    parser.add_argument("--runs", nargs="+", metavar="METHOD-TARGET",
                        default=["max-tensorrt", "max-cpu", "entropy-tensorrt", "entropy-cpu"],
                        help="QAT runs: calibration method and target")
    parser.add_argument("--val-images", type=int, default=540)
    parser.add_argument("--rounds", type=int, default=200, help="latency rounds per graph")
    parser.add_argument("--qat-args", default="", help="extra arguments for retina-edge qat (e.g. '--iterations 300')")
    parser.add_argument("--backend-rounds", type=int, default=5, help="interleaved steps per fake-quant backend")
    parser.add_argument("--ptq-only", nargs="*", default=[], metavar="METHOD-TARGET",
                        help="also PTQ graphs without a QAT run (build --int8, the same calibration), e.g. max-cpu")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    train, val = ensure_data(out, args.val_images)
    from retina_edge.cli.main import main as cli

    if not (out / "fp32.onnx").is_file():
        assert cli(["export", "--weights", PRESET, "-o", str(out / "fp32.onnx")]) == 0
    runs = [run_qat(out, train, *tag.split("-"), args.qat_args.split()) for tag in args.runs]
    graphs, pairs, timing = {"fp32": str(out / "fp32.onnx")}, [], {}
    for run in runs:
        tag = f"{run['method']}-{run['target']}"
        graphs[f"ptq-{tag}"], graphs[f"qat-{tag}"] = run["ptq"], run["qat"]
        pairs += [(f"ptq-{tag}", "fp32"), (f"qat-{tag}", "fp32"), (f"qat-{tag}", f"ptq-{tag}")]
        timing[tag] = (run["ptq"], run["qat"])
        run["same_qdq_positions"] = qdq_positions(run["ptq"]) == qdq_positions(run["qat"])
        run["qdq_positions"] = len(qdq_positions(run["qat"]))
    for tag in args.ptq_only:
        method, target = tag.split("-")
        path = out / f"ptq-{tag}.onnx"
        if not path.is_file():
            assert cli(["build", "--int8", "--target", target, "--weights", PRESET, "--calib", str(train / "train"),
                        "--calib-method", method, "-o", str(path)]) == 0
        graphs[f"ptq-{tag}"] = str(path)
        pairs.append((f"ptq-{tag}", "fp32"))
    results = {"runs": runs, "accuracy": accuracy(val, graphs, pairs), "latency": latency(timing, args.rounds),
               "backends": backends(runs[0]["ptq"], train, args.backend_rounds) if args.backend_rounds else {}}
    (out / "results.json").write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
