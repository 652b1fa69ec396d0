"""Calls checked against the real pybind11 signatures of a loaded ``tensorrt`` module.

pybind11 writes each overload's signature in the first line(s) of a method's ``__doc__``
(``name(self: tensorrt.X, a: int, b: str = 'x') -> bool``) and a property's getter and setter
signatures on ``fget``/``fset``. :func:`bind` matches a call against those overloads the way
pybind11 does (positional then keyword, defaults, each argument's type) and raises ``TypeError``
with pybind11's wording when none matches; :func:`check_value` is the per-argument type test.
"""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass

import numpy as np


class NotModelled(AssertionError):
    """The real API has this, but the stand-in does not model it: extend the model, do not guess."""


@dataclass(frozen=True)
class Parameter:
    name: str
    annotation: str
    has_default: bool


@dataclass(frozen=True)
class Overload:
    parameters: tuple[Parameter, ...]  # without self
    returns: str
    text: str


def _split_top_level(text: str) -> list[str]:
    parts, depth, quote, current = [], 0, None, ""
    for char in text:
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "[(<":
            depth += 1
        elif char in "])>":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(current.strip())
            current = ""
            continue
        current += char
    return [part for part in [*parts, current.strip()] if part]


def overloads(function, name: str) -> list[Overload]:  # noqa: ANN001
    """The overloads in ``function.__doc__`` (a pybind11 method called ``name``; ``""`` for a
    property's getter or setter, whose signatures carry no name)."""
    found = []
    pattern = rf"^(?:\d+\. )?{re.escape(name)}\((.*?)\) -> (\S+)" if name else r"^\((.*?)\) -> (\S+)"
    for match in re.finditer(pattern, function.__doc__ or "", re.MULTILINE):
        if match.group(1) == "*args, **kwargs":
            continue
        parameters = []
        for part in _split_top_level(match.group(1))[1:]:  # the first is self
            head, _, default = part.partition(" = ")
            pname, _, annotation = head.partition(": ")
            parameters.append(Parameter(pname.strip(), annotation.strip(), bool(default)))
        found.append(Overload(tuple(parameters), match.group(2), match.group(0).strip()))
    return found


def _strip_module(annotation: str) -> str:
    return re.sub(r"\btensorrt(?:_bindings)?\.tensorrt\.|\btyping\.", "", annotation)


def check_value(annotation: str, value, real) -> bool:  # noqa: ANN001, C901
    """Whether pybind11 would accept ``value`` for a parameter annotated ``annotation``."""
    annotation = _strip_module(annotation)
    generic = re.fullmatch(r"(\w+)\[(.*)\]", annotation)
    if generic:
        outer, inner = generic.group(1), _split_top_level(generic.group(2))
        if outer == "Optional":
            return value is None or check_value(inner[0], value, real)
        if outer == "Union":
            return any(check_value(option, value, real) for option in inner)
        if outer in ("List", "list", "Sequence"):
            return isinstance(value, (list, tuple)) and all(check_value(inner[0], item, real) for item in value)
        raise NotModelled(f"annotation {annotation}")
    if annotation in ("int", "SupportsInt"):
        if isinstance(value, float):
            return False  # pybind11 refuses floats for ints (a float address is a bug)
        try:
            operator.index(value)  # ints, enums and handles with __index__ (cuda-python's stream objects)
        except TypeError:
            return False
        return True
    if annotation in ("float", "SupportsFloat"):
        return isinstance(value, (int, float, np.floating)) and not isinstance(value, bool)
    if annotation == "bool":
        return isinstance(value, (bool, np.bool_))
    if annotation == "str":
        return isinstance(value, str)
    if annotation in ("buffer", "typing_extensions.Buffer", "collections.abc.Buffer"):
        try:
            memoryview(value)
        except TypeError:
            return False
        return True
    if annotation in ("tuple", "list"):
        return isinstance(value, {"tuple": tuple, "list": list}[annotation])
    if annotation == "object":
        return True
    if re.fullmatch(r"Dims\d*|Dims64|Dims32", annotation):
        return isinstance(value, real.Dims) or (isinstance(value, (list, tuple)) and all(
            isinstance(item, int) for item in value))
    expected = getattr(real, annotation, None)
    if isinstance(expected, type):
        if isinstance(value, expected):
            return True
        if value is None:  # a null pointer for objects; enums are passed by value
            return not hasattr(expected, "__members__")
            return True
        modelled = getattr(type(value), "real_class", None)  # a stand-in object of that real class
        return modelled is not None and issubclass(modelled, expected)
    raise NotModelled(f"annotation {annotation}")


def bind(candidates: list[Overload], name: str, args: tuple, kwargs: dict, real) -> tuple[Overload, dict]:  # noqa: ANN001
    """(overload, arguments by name) for the first overload that accepts the call, as pybind11."""
    for overload in candidates:
        arguments = _bind_one(overload, args, kwargs, real)
        if arguments is not None:
            return overload, arguments
    supported = "\n    ".join(overload.text for overload in candidates)
    given = ", ".join([*(type(a).__name__ for a in args), *(f"{k}={type(v).__name__}" for k, v in kwargs.items())])
    raise TypeError(f"{name}(): incompatible function arguments. The following argument types are supported:\n    "
                    f"{supported}\nInvoked with: {given}")


def _bind_one(overload: Overload, args: tuple, kwargs: dict, real) -> dict | None:  # noqa: ANN001
    parameters = overload.parameters
    if len(args) > len(parameters) or set(kwargs) - {p.name for p in parameters}:
        return None
    arguments = dict(zip((p.name for p in parameters), args))
    if set(arguments) & set(kwargs):
        return None
    arguments.update(kwargs)
    for parameter in parameters:
        if parameter.name not in arguments:
            if not parameter.has_default:
                return None
            continue
        if not check_value(parameter.annotation, arguments[parameter.name], real):
            return None
    return arguments
