"""Entry point of ``retina-edge``: builds the sub-command parsers and turns errors into exit codes.

Each command module defines ``NAME``, ``HELP``, ``EXAMPLE``, ``add_arguments(parser)`` and
``run(args) -> int``, and imports heavy packages (torch, onnx, ...) only inside ``run``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import shutil
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from retina_edge.cli.args import OneLineParser
from retina_edge.cli.packages import check_packages
from retina_edge._version import __version__
from retina_edge.errors import RetinaEdgeError
from retina_edge.optional import install_hint
from retina_edge.registry import load_plugins
from retina_edge.resources import check_writable
from retina_edge.runtime.backends.registry import backend_install_hint

COMMAND_MODULES = ("archs", "inspect", "synth", "train", "prune", "eval", "export", "build", "qat", "detect", "verify", "bench", "demo",
                   "triton", "serve", "deepstream")

#: Library parameter -> argument dest, where every command spells it the same way.
COMMON_OPTION_DESTS = {"precision_hint": "ov_precision", "input_size": "imgsz", "legacy_precision": "legacy"}


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
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
        sub.set_defaults(handler=module.run, module=module, parser=sub)
    return parser


def configure_logging(command: str) -> None:
    """Library modules log under ``retina_edge``; the CLI shows INFO and up on stderr, warnings
    prefixed with the command, in a terminal and in a log file alike."""
    handler = _StderrHandler()
    handler.setFormatter(_Formatter(command))
    root = logging.getLogger("retina_edge")
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    root.propagate = False


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a record is emitted (it may be replaced later)."""

    @property
    def stream(self):  # noqa: ANN201
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # noqa: ANN001
        pass


class _Formatter(logging.Formatter):
    def __init__(self, command: str) -> None:
        super().__init__()
        self.command = command

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        return f"retina-edge {self.command}: {record.levelname.lower()}: {message}" if record.levelno >= logging.WARNING else message


def main(argv: Sequence[str] | None = None) -> int:
    load_plugins()  # before the parser: a plugin's architectures, recipes, backends, tails and trackers are choices too
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as done:  # --help, --version, or a usage error already printed on one line
        return int(done.code or 0)
    configure_logging(args.command)
    previous = _handle_stop_signals() if threading.current_thread() is threading.main_thread() else {}
    try:
        check_outputs(args)
        check_packages(args)
        return int(args.handler(args) or 0)
    except RetinaEdgeError as error:
        return _fail(args.command, with_flags(str(error), error.options, args.parser),
                     code=getattr(error, "exit_code", 2))
    except ModuleNotFoundError as error:
        hint = install_hint(error.name or "") or backend_install_hint(error.name or "")
        if hint is None:
            raise
        return _fail(args.command, f"this needs the '{error.name.split('.')[0]}' package, which is not installed; "
                                   f"install it with: {hint}")
    except OSError as error:  # a full disk, a vanished folder: the path and the reason, not a traceback
        return _fail(args.command, _os_error_line(error))
    except KeyboardInterrupt as interrupt:
        print(f"retina-edge {args.command}: interrupted{' (SIGTERM)' if _terminated.is_set() else ''}"
              f"{f': {interrupt}' if str(interrupt) else ''}", file=sys.stderr)
        return 130  # for SIGTERM too, as train and stream have always answered a stop by signal
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        _terminated.clear()


_terminated = threading.Event()


def _handle_stop_signals() -> dict[int, object]:
    """Install :func:`_interrupt` for SIGINT and SIGTERM; returns the handlers to give back. SIGINT
    too, because a process started in the background of a non-interactive shell (``cmd &`` in a
    script, CI runners, ``kill -INT $!``) inherits it *ignored*, and Python then leaves it ignored:
    a build stopped that way went on and replaced its output. Commands that stop on a signal in
    their own way (detect, train, serve) install their handlers over these and give them back."""
    return {signum: signal.signal(signum, _interrupt) for signum in (signal.SIGINT, signal.SIGTERM)}


def _interrupt(signum: int, frame: object) -> None:
    """SIGINT, and SIGTERM (systemd, Kubernetes, docker stop) as Ctrl-C: every writer's cleanup
    runs (temporary folders, half-written files), a folder run writes what it has, train saves its
    last checkpoint; the exit code is 130 (train's DataLoader workers ignore SIGTERM and are ended
    by the main process)."""
    if signum == signal.SIGTERM:
        _terminated.set()
    raise KeyboardInterrupt


def check_outputs(args: argparse.Namespace) -> None:
    """Every output a command declares (``OUTPUT_FILES``/``OUTPUT_FOLDERS``: argument names; and the
    files it names itself, from its ``planned_outputs(args)``: ``(flag, path, is_folder)`` each) must
    be writable before the command starts work, have one of the suffixes ``OUTPUT_SUFFIXES`` gives
    it, and not land where another output does."""
    for name, suffixes in getattr(args.module, "OUTPUT_SUFFIXES", {}).items():
        value = getattr(args, name, None)
        if value and not str(value).lower().endswith(suffixes):  # an ONNX graph written as model.txt or model.pth
            raise RetinaEdgeError(f"--{name.replace('_', '-')} {value}: this writes {' or '.join(suffixes)} files; "
                                  f"name it {Path(value).with_suffix(suffixes[0]).name}")
    outputs = [(f"--{name.replace('_', '-')}", getattr(args, name), folder)
               for folder, names in ((False, getattr(args.module, "OUTPUT_FILES", ())),
                                     (True, getattr(args.module, "OUTPUT_FOLDERS", ())))
               for name in names if getattr(args, name, None)]
    planned = getattr(args.module, "planned_outputs", None)
    outputs += planned(args) if planned else []
    for _, path, folder in outputs:
        check_writable(path, folder=folder)
    check_distinct(outputs)


def check_distinct(outputs: list[tuple[str, str, bool]]) -> None:
    """Refuse two outputs on one path (one would silently replace the other; two folders may share
    one), and a file where another output needs a folder (``--json out`` and ``--save out/a.mp4``).
    ``outputs``: ``(flag, path, is_folder)``."""
    places = [(f"{flag} {path}", folder, Path(path).expanduser().resolve()) for flag, path, folder in outputs]
    for index, (name, folder, place) in enumerate(places):
        for other_name, other_folder, other in places[index + 1:]:
            if place == other and not (folder and other_folder):
                raise RetinaEdgeError(f"{name} and {other_name} are one path: one output would replace the other; "
                                      "give each its own")
    for name, folder, place in places:
        for other_name, _, other in places:
            if not folder and place in other.parents:
                raise RetinaEdgeError(f"{name} is a file, and {other_name} would be inside it; give each its own path")


def with_flags(message: str, options: tuple[str, ...], parser: argparse.ArgumentParser) -> str:
    """``message`` (in the library's terms) with the command's flags for the library ``options`` it
    names: a command module's ``OPTION_DESTS`` maps a library parameter to its argument's dest where
    the names differ (``calibration`` -> ``calib``); otherwise the names are the same."""
    dests = {**COMMON_OPTION_DESTS, **getattr(parser.get_default("module"), "OPTION_DESTS", {})}
    flags = []
    for option in options:
        dest = dests.get(option, option)
        flags += [max(action.option_strings, key=len) for action in parser._actions
                  if action.dest == dest and action.option_strings][:1]
    return f"{message} (see {', '.join(flags)})" if flags else message


def _os_error_line(error: OSError) -> str:
    """The reason and the path; shutil's copytree collects (source, target, reason) per file into one
    error whose text was a Python list: its first file stands for the rest."""
    if isinstance(error, shutil.Error) and error.args and isinstance(error.args[0], list) and error.args[0]:
        _, target, reason = error.args[0][0]
        more = len(error.args[0]) - 1
        return f"{reason}: {target}" + (f" (and {more} more files)" if more else "")
    return f"{error.strerror or error}" + (f": {error.filename}" if error.filename else "")


def _fail(command: str, message: str, *, code: int = 2) -> int:
    print(f"retina-edge {command}: error: {message}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
