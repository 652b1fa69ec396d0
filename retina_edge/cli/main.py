"""Entry point of ``retina-edge``: builds the sub-command parsers and turns errors into exit codes.

Each command module defines ``NAME``, ``HELP``, ``EXAMPLE``, ``add_arguments(parser)`` and
``run(args) -> int``, and imports heavy packages (torch, onnx, ...) only inside ``run``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from retina_edge._version import __version__
from retina_edge.errors import RetinaEdgeError

COMMAND_MODULES = ("archs", "inspect", "synth", "train", "eval", "export", "build", "detect", "verify", "bench", "demo")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="retina-edge",
        description="RetinaNet from PyTorch to the edge: export, quantise, deploy and verify.",
    )
    parser.add_argument("--version", action="version", version=f"retina-edge {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in COMMAND_MODULES:
        module = importlib.import_module(f"retina_edge.cli.{module_name}")
        sub = subparsers.add_parser(
            module.NAME, help=module.HELP, description=module.HELP,
            epilog=f"example:\n  {module.EXAMPLE}", formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(sub)
        sub.set_defaults(handler=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except RetinaEdgeError as error:
        print(f"retina-edge {args.command}: error: {error}", file=sys.stderr)
        return 2
    except (FileNotFoundError, IsADirectoryError, PermissionError) as error:
        print(f"retina-edge {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"retina-edge {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
