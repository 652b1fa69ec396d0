"""The optional packages a command's flags need, checked before any work (no torch).

A command module's ``OPTION_PACKAGES`` maps an argument's dest to the module the flag needs, or to a
function of the parsed arguments giving it (None: nothing). Each flag given whose package is missing
is refused with its install line before the model loads and ``backend="auto"`` probes the backends
(seconds), not after them, nor after a whole run (``bench --plot`` without matplotlib).
"""

from __future__ import annotations

import argparse
import importlib.util

from retina_edge.errors import MissingDependencyError
from retina_edge.optional import install_hint


def check_packages(args: argparse.Namespace) -> None:
    for dest, needs in getattr(args.module, "OPTION_PACKAGES", {}).items():
        value = getattr(args, dest, None)
        if value is None or value is False or value == []:
            continue
        module = needs(args) if callable(needs) else needs
        top = module.split(".")[0] if module else None
        if top and importlib.util.find_spec(top) is None:
            raise MissingDependencyError(top, f"--{dest.replace('_', '-')}", install_hint(top) or f"pip install {top}")
