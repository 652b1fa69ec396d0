"""Argument types and the parser shared by every command: numbers checked where they are parsed,
usage errors on one line (no torch)."""

from __future__ import annotations

import argparse
import math
import sys


class OneLineParser(argparse.ArgumentParser):
    """Usage errors as one line (``retina-edge CMD: error: ...``) and exit code 2, like every other
    error the CLI reports; ``--help`` still shows the usage."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        raise SystemExit(2)


def add_backend_argument(parser: argparse.ArgumentParser, *, help_prefix: str = "") -> None:
    """``--backend``: auto or any registered backend (built-in or plugin), with their devices in the help."""
    from retina_edge.runtime.backends.registry import backend_choices, backends_help

    parser.add_argument("--backend", choices=backend_choices(), default="auto", help=help_prefix + backends_help())


def device_help() -> str:
    from retina_edge.runtime.backends.registry import backend_specs

    return "; ".join(f"{spec.name}: {'|'.join(spec.devices)}" for spec in backend_specs() if spec.devices)


def add_backend_options_arguments(parser: argparse.ArgumentParser) -> None:
    """The :class:`~retina_edge.runtime.backends.BackendOptions` fields a command lets users set (not streams)."""
    parser.add_argument("--threads", type=thread_count, help="CPU threads for the backend (at most the usable cores)")
    parser.add_argument("--ov-precision", choices=["f32", "bf16", "f16"], default="f32",
                        help="OpenVINO inference precision (f32 matches the reference; bf16 is faster where supported)")
    parser.add_argument("--cuda-graph", action="store_true",
                        help="TensorRT: replay copies and inference as one captured CUDA graph per batch size")


def backend_name(args: argparse.Namespace) -> str:
    """``--backend``, where ``auto`` on an ONNX model with an OpenVINO precision other than f32
    (``--ov-precision bf16``) means OpenVINO: auto measured ONNX Runtime too and, picking it, ran
    without the precision asked for (said on stderr)."""
    precision = getattr(args, "ov_precision", "f32")
    if args.backend == "auto" and precision != "f32" and str(getattr(args, "model", "")).lower().endswith(".onnx"):
        sys.stderr.write(f"retina-edge: --ov-precision {precision} is OpenVINO's: running on OpenVINO\n")
        return "openvino"
    return args.backend


def backend_options(args: argparse.Namespace, **changes: object):  # noqa: ANN201 (BackendOptions; runtime imported lazily)
    """The :class:`~retina_edge.runtime.backends.BackendOptions` the parsed flags ask for."""
    from retina_edge.runtime.backends.base import BackendOptions

    fields = {"device": getattr(args, "device", None), "threads": getattr(args, "threads", None),
              "precision_hint": getattr(args, "ov_precision", "f32"), "cuda_graph": getattr(args, "cuda_graph", False),
              "streams": getattr(args, "streams", 1)}
    return BackendOptions(**{**fields, **changes})


def positive_int(text: str) -> int:
    value = _number(text, int)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {text}")
    return value


def thread_count(text: str) -> int:
    """--threads: a whole number of at least 1; :class:`~retina_edge.runtime.backends.BackendOptions`
    bounds it by the cores this process may use (and says so), for the CLI and Python callers alike."""
    return positive_int(text)


def port_number(text: str) -> int:
    value = _number(text, int)
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError(f"must be a port number from 1 to 65535, got {text}")
    return value


def positive_int_or_auto(text: str) -> int | str:
    return "auto" if text == "auto" else positive_int(text)


def non_negative_int(text: str) -> int:
    value = _number(text, int)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 0, got {text}")
    return value


def non_negative_float(text: str) -> float:
    value = _number(text, float)
    if not value >= 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"must be a number of at least 0, got {text}")
    return value


def unit_interval(text: str) -> float:
    value = _number(text, float)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a number from 0 to 1, got {text}")
    return value


def positive_float(text: str) -> float:
    value = _number(text, float)
    if not value > 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"must be a number above 0, got {text}")
    return value


def _number(text: str, kind: type):  # noqa: ANN202
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a {'whole ' if kind is int else ''}number, got {text!r}") from None
