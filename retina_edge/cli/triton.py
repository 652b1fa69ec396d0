"""``retina-edge triton``: write a Triton Inference Server model repository for a deployed model."""

from __future__ import annotations

import argparse

from retina_edge.cli.args import non_negative_int, positive_int

NAME = "triton"
HELP = "write a Triton Inference Server model repository serving a deployed model (JPEG/PNG bytes in, detections out)"
EXAMPLE = "retina-edge triton --model synth-fp16.engine -o model_repository --max-batch 8 --instances 2"
OUTPUT_FOLDERS = ("output",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="deployed model: .onnx, or .engine/.plan built by retina-edge")
    parser.add_argument("-o", "--output", required=True, help="model repository folder (created; the model folders "
                                                              "of the same names in it are replaced)")
    parser.add_argument("--name", default="retina_edge", help="model name clients ask for (default retina_edge)")
    parser.add_argument("--max-batch", type=positive_int, default=8, help="requests per runtime call (default 8)")
    parser.add_argument("--instances", type=positive_int, default=1, help="model copies per device (default 1)")
    parser.add_argument("--max-queue-delay-us", type=non_negative_int, default=2000,
                        help="how long the dynamic batcher may hold a request to fill a batch (default 2000)")
    parser.add_argument("--ensemble", action="store_true",
                        help="GPU fleets: the network as its own model (tensorrt_plan or onnxruntime_onnx) between "
                             "preprocessing and postprocessing Python models")
    parser.add_argument("--network-backend", choices=["auto", "tensorrt_plan", "onnxruntime_onnx", "python"],
                        default="auto", help="the network model's backend, for --ensemble or a frame graph (python: "
                                             "through the runtime, for Triton builds without the ONNX Runtime/TensorRT "
                                             "backends)")


def run(args: argparse.Namespace) -> int:
    from retina_edge.triton.repository import RepositoryOptions, write_repository

    options = RepositoryOptions(name=args.name, max_batch=args.max_batch, instances=args.instances,
                                max_queue_delay_us=args.max_queue_delay_us, ensemble=args.ensemble,
                                network_backend=args.network_backend)
    for folder in write_repository(args.model, args.output, options):
        print(f"wrote {folder}")
    print(f"serve it: retina-edge serve --repo {args.output}   (clients: triton://HOST:8001/{args.name})")
    return 0
